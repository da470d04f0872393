//! The registry's own rules, against the in-memory storage: naming, lineage, delete semantics,
//! job states, crash recovery, the lock. (The CLI's tests cover the same lifecycle on disk.)
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::Utc;
use loraforge_progress::NoProgress;
use loraforge_registry::{
    BaseAddOptions, DeployOptions, EntryKind, Job, JobKind, JobProgress, JobState, MemoryStorage,
    Registry, RegistryError, RegistryOptions, Storage,
};

struct Fixture {
    _dir: tempfile::TempDir,
    demo: loraforge_demo::DemoFiles,
    storage: MemoryStorage,
    registry: Registry,
}

fn options() -> RegistryOptions {
    RegistryOptions {
        lock_timeout: Duration::from_millis(200),
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let demo = loraforge_demo::generate(
        &dir.path().join("files"),
        &loraforge_demo::DemoSpec::default(),
    )
    .unwrap();
    let storage = MemoryStorage::new().unwrap();
    let registry = Registry::with_storage(storage.clone(), options()).unwrap();
    Fixture {
        _dir: dir,
        demo,
        storage,
        registry,
    }
}

impl Fixture {
    fn add_base(&self) {
        self.registry
            .add_base(
                &self.demo.base_dir,
                "tiny",
                &BaseAddOptions {
                    copy: true,
                    template: Some(self.demo.template.clone()),
                },
            )
            .unwrap();
    }

    fn add_trained(&self) -> String {
        self.registry
            .add_trained(&self.demo.trainer_dir, "tiny", "Demo Run", None)
            .unwrap()
            .name
            .to_string()
    }

    fn save(&self, trained: &str) -> String {
        let job = self.registry.queue_save(trained, "auto").unwrap();
        let job = self.registry.run_job(&job.id, &NoProgress).unwrap();
        assert_eq!(job.state, JobState::Succeeded);
        job.result.unwrap()
    }
}

/// A pid that certainly belongs to no live process.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn queued_job(trained: &str, saved: &str) -> Job {
    Job {
        id: uuid::Uuid::new_v4().to_string(),
        kind: JobKind::Save {
            trained: trained.parse().unwrap(),
            saved: saved.parse().unwrap(),
            saving_uuid: uuid::Uuid::new_v4(),
            dtype: "auto".into(),
        },
        state: JobState::Queued,
        created: Utc::now(),
        started: None,
        finished: None,
        pid: None,
        pid_start: None,
        owner_pid: Some(std::process::id()),
        owner_start: None,
        progress: JobProgress::default(),
        error: None,
        result: None,
    }
}

#[test]
fn names_follow_the_rules_and_collisions_are_refused() {
    let f = fixture();
    f.add_base();
    let err = f
        .registry
        .add_base(&f.demo.base_dir, "tiny", &BaseAddOptions::default())
        .unwrap_err();
    assert!(matches!(err, RegistryError::AlreadyExists { .. }), "{err}");
    let err = f
        .registry
        .add_base(&f.demo.base_dir, "Not A Name", &BaseAddOptions::default())
        .unwrap_err();
    assert!(matches!(err, RegistryError::InvalidName(_)), "{err}");
    assert!(err.is_user_error());

    let trained = f
        .registry
        .add_trained(&f.demo.trainer_dir, "tiny", "Demo Run", None)
        .unwrap();
    let name = trained.name.to_string();
    let prefix = &trained.uuid.simple().to_string()[..4];
    assert_eq!(
        name,
        format!(
            "tiny_{}_{}_{prefix}",
            trained.train_name,
            trained.date.format("%Y%m%d")
        )
    );
    assert_eq!(trained.train_name.as_str(), "demo-run");
    // The demo trainer output has checkpoints and a final adapter at the root.
    assert_eq!(trained.checkpoint, None);
    let older = f
        .registry
        .add_trained(&f.demo.trainer_dir, "tiny", "demo run", Some(10))
        .unwrap();
    assert_eq!(older.checkpoint, Some(10));
    assert_ne!(
        older.name.uuid_prefix(),
        trained.name.uuid_prefix(),
        "two trained models never share a UUID prefix"
    );
    let err = f
        .registry
        .add_trained(&f.demo.trainer_dir, "tiny", "x", Some(99))
        .unwrap_err();
    assert!(err.to_string().contains("available checkpoints"), "{err}");
    assert!(err.is_user_error());
    let err = f
        .registry
        .add_trained(&f.demo.trainer_dir, "nobase", "x", None)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::NotFound { kind: "base", .. }),
        "{err}"
    );
}

#[test]
fn lineage_runs_from_base_to_saved_with_each_uuid() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let saved = f.save(&trained);
    let record = f.registry.saved(&saved).unwrap();
    assert_eq!(record.trained.to_string(), trained);
    assert_eq!(
        saved,
        format!("{trained}_s_{}", &record.uuid.simple().to_string()[..4])
    );
    let card: serde_json::Value =
        serde_json::from_str(&f.registry.card_json(EntryKind::Saved, &saved).unwrap()).unwrap();
    let steps: Vec<(&str, &str)> = card["lineage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stage"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("base", "tiny"),
            ("trained", trained.as_str()),
            ("saved", saved.as_str())
        ]
    );
    assert_eq!(
        card["lineage"][2]["uuid"].as_str().unwrap(),
        record.uuid.to_string()
    );
    // Every weight file is recorded with its checksum, and the local copy matches it.
    let model_dir = f.registry.saved_model_dir(&saved).unwrap();
    for file in &record.files {
        assert_eq!(
            loraforge_model_card::sha256_file(&model_dir.join(&file.path)).unwrap(),
            file.sha256
        );
    }
}

#[test]
fn deleting_a_trained_model_removes_only_its_adapter() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let saved = f.save(&trained);
    let before = f
        .storage
        .read(EntryKind::Saved, &saved, "card.json")
        .unwrap();

    let record = f.registry.remove_trained(&trained).unwrap();
    assert!(!record.adapter_present);
    // The record and card stay, marked; the adapter files are gone.
    assert!(!f.registry.trained(&trained).unwrap().adapter_present);
    assert!(f
        .storage
        .read(
            EntryKind::Trained,
            &trained,
            "adapter/adapter_model.safetensors"
        )
        .is_err());
    assert!(f
        .storage
        .read(EntryKind::Trained, &trained, "card.json")
        .is_ok());
    // Saved models made from it are untouched.
    assert_eq!(
        f.storage
            .read(EntryKind::Saved, &saved, "card.json")
            .unwrap(),
        before
    );
    assert_eq!(f.registry.saved_models().unwrap().len(), 1);
    let err = f.registry.queue_save(&trained, "auto").unwrap_err();
    assert!(matches!(err, RegistryError::AdapterRemoved { .. }), "{err}");

    // The base cannot go while a trained model uses it, unless forced.
    let err = f.registry.remove_base("tiny", false).unwrap_err();
    assert!(matches!(err, RegistryError::BaseInUse { .. }), "{err}");
    f.registry.purge_trained(&trained).unwrap();
    assert!(f.registry.trained_models().unwrap().is_empty());
    f.registry.remove_base("tiny", false).unwrap();
    assert_eq!(f.registry.saved_models().unwrap().len(), 1);
}

#[test]
fn deleting_a_saved_model_keeps_its_deployments() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let saved = f.save(&trained);
    let fake = ollama_fake::FakeOllama::spawn().unwrap();
    let options = DeployOptions {
        host: loraforge_ollama_client::OllamaHost::parse(&fake.url()),
        ..Default::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deployed = runtime
        .block_on(f.registry.deploy(
            &saved,
            loraforge_naming::QuantType::Quantized(loraforge_naming::FileType::Q8_0),
            &options,
            &NoProgress,
        ))
        .unwrap();
    assert_eq!(deployed.saved.to_string(), saved);
    assert!(deployed.name.to_string().ends_with("_q8_0"));
    assert_eq!(fake.model_names().len(), 1);

    f.registry.remove_saved(&saved).unwrap();
    assert!(f.registry.saved_models().unwrap().is_empty());
    let still = f.registry.deployed_models().unwrap();
    assert_eq!(still.as_slice(), std::slice::from_ref(&deployed));
    // Its card keeps the whole lineage although the saved entry is gone.
    let card = f
        .registry
        .card_json(EntryKind::Deployed, &deployed.name.to_string())
        .unwrap();
    assert!(card.contains(&saved));
}

#[test]
fn job_states_move_one_way() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let job = f.registry.queue_save(&trained, "auto").unwrap();
    assert_eq!(job.state, JobState::Queued);
    let JobKind::Save { saved, .. } = &job.kind else {
        panic!("a save job: {:?}", job.kind)
    };
    assert!(saved.to_string().starts_with(&format!("{trained}_s_")));

    // A second queued save reserves a different name.
    let other = f.registry.queue_save(&trained, "auto").unwrap();
    let JobKind::Save {
        saved: other_saved, ..
    } = &other.kind
    else {
        panic!("a save job: {:?}", other.kind)
    };
    assert_ne!(saved, other_saved);

    let cancelled = f.registry.cancel_job(&other.id).unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    // A cancelled job never runs; cancelling again changes nothing.
    let again = f.registry.run_job(&other.id, &NoProgress).unwrap();
    assert_eq!(again.state, JobState::Cancelled);
    assert_eq!(f.registry.cancel_job(&other.id).unwrap(), again);

    let done = f.registry.run_job(&job.id[..8], &NoProgress).unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result.as_deref(), Some(saved.to_string().as_str()));
    assert!(done.progress.done > 0);
    assert_eq!(f.registry.fail_job(&job.id, "late").unwrap(), done);

    let failed = f
        .registry
        .fail_job(
            &f.registry.queue_save(&trained, "auto").unwrap().id,
            "no worker",
        )
        .unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(f.registry.jobs().unwrap().len(), 3);
    assert!(matches!(
        f.registry.job("ffff").unwrap_err(),
        RegistryError::JobNotFound { .. }
    ));
    // Nothing is left staged.
    assert!(f.storage.staged_owners().unwrap().is_empty());
}

#[test]
fn a_failed_merge_publishes_nothing_and_records_why() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let job = f.registry.queue_save(&trained, "f64").unwrap();
    let err = f.registry.run_job(&job.id, &NoProgress).unwrap_err();
    assert!(matches!(err, RegistryError::JobFailed { .. }), "{err}");
    let job = f.registry.job(&job.id).unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.error.unwrap().contains("f64"));
    assert!(f.registry.saved_models().unwrap().is_empty());
    assert!(f.storage.staged_owners().unwrap().is_empty());
}

#[test]
fn opening_the_store_reconciles_work_whose_process_died() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let saved = format!("{trained}_s_0123");

    // A job whose worker died mid-merge, with its staging folder.
    let mut crashed = queued_job(&trained, &saved);
    crashed.state = JobState::Running;
    crashed.pid = Some(dead_pid());
    f.storage
        .write_job(&crashed.id, &serde_json::to_vec(&crashed).unwrap())
        .unwrap();
    let crashed_staging = f.storage.stage(&crashed.staging_owner()).unwrap();
    std::fs::write(crashed_staging.join("partial"), b"x").unwrap();
    // A queued job keeps its (empty) staging folder; a dead process's own staging goes.
    let queued = queued_job(&trained, &format!("{trained}_s_4567"));
    f.storage
        .write_job(&queued.id, &serde_json::to_vec(&queued).unwrap())
        .unwrap();
    f.storage.stage(&queued.staging_owner()).unwrap();
    f.storage
        .stage(&format!("add-{}-12345-abc", dead_pid()))
        .unwrap();

    let reopened = Registry::with_storage(f.storage.clone(), options()).unwrap();
    let job = reopened.job(&crashed.id).unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.error.unwrap().contains("died"));
    assert!(job.finished.is_some());
    assert_eq!(f.storage.staged_owners().unwrap(), [queued.staging_owner()]);
    assert_eq!(reopened.job(&queued.id).unwrap().state, JobState::Queued);
    assert!(reopened.saved_models().unwrap().is_empty());
    // Recovery is idempotent.
    assert!(reopened.recover().unwrap().is_empty());
}

#[test]
fn a_held_lock_fails_changes_clearly_and_changes_nothing() {
    let f = fixture();
    f.add_base();
    let held = f.storage.lock(Duration::from_secs(1)).unwrap();
    let err = f.registry.remove_base("tiny", true).unwrap_err();
    assert!(matches!(err, RegistryError::Locked { .. }), "{err}");
    assert!(err.hint().unwrap().contains("LORAFORGE_LOCK_TIMEOUT"));
    // Reads do not take the lock.
    assert_eq!(f.registry.bases().unwrap().len(), 1);
    drop(held);
    f.registry.remove_base("tiny", true).unwrap();
    assert!(f.registry.bases().unwrap().is_empty());
}

#[test]
fn records_hold_typed_names_and_corrupt_records_are_reported() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let bytes = f
        .storage
        .read(EntryKind::Trained, &trained, "entry.json")
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["name"], trained.as_str());
    assert_eq!(json["base"], "tiny");

    f.storage
        .write(
            EntryKind::Trained,
            &trained,
            "entry.json",
            br#"{"name": 1}"#,
        )
        .unwrap();
    let err = f.registry.trained(&trained).unwrap_err();
    assert!(matches!(err, RegistryError::CorruptRecord { .. }), "{err}");
    assert!(!err.is_user_error());
    // A name that is not a trained name is refused when read back.
    let mut bad = json.clone();
    bad["name"] = "not a name".into();
    f.storage
        .write(
            EntryKind::Trained,
            &trained,
            "entry.json",
            &serde_json::to_vec(&bad).unwrap(),
        )
        .unwrap();
    assert!(matches!(
        f.registry.trained(&trained).unwrap_err(),
        RegistryError::CorruptRecord { .. }
    ));
}

#[test]
fn a_registry_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Registry>();
    assert_send_sync::<MemoryStorage>();
}

/// Store a job record as a crashed process would have left it.
fn store_job(f: &Fixture, job: &Job) {
    f.storage
        .write_job(&job.id, &serde_json::to_vec(job).unwrap())
        .unwrap();
}

#[test]
fn a_queued_job_whose_owner_is_gone_fails_after_the_grace_and_wait_returns() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let old = Utc::now() - chrono::Duration::from_std(loraforge_registry::QUEUE_GRACE).unwrap();
    // Queued by a process that died before any worker recorded its pid.
    let mut orphan = queued_job(&trained, &format!("{trained}_s_0123"));
    orphan.owner_pid = Some(dead_pid());
    orphan.created = old - chrono::Duration::seconds(1);
    store_job(&f, &orphan);
    // The same, still inside the grace window (a worker may be about to record itself).
    let mut fresh = queued_job(&trained, &format!("{trained}_s_4567"));
    fresh.owner_pid = Some(dead_pid());
    store_job(&f, &fresh);
    // An old record without an owner (written before owners were recorded).
    let mut legacy = queued_job(&trained, &format!("{trained}_s_89ab"));
    legacy.owner_pid = None;
    legacy.created = old - chrono::Duration::seconds(1);
    store_job(&f, &legacy);
    // Queued long ago by a process that is alive (this one): it may still start it.
    let mut waiting = queued_job(&trained, &format!("{trained}_s_cdef"));
    waiting.created = old - chrono::Duration::seconds(1);
    store_job(&f, &waiting);

    // `jobs wait` does not hang on the orphan: it settles it.
    let started = std::time::Instant::now();
    let job = f
        .registry
        .wait_job(&orphan.id, Some(Duration::from_secs(20)), &mut |_| {})
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(job.state, JobState::Failed);
    let error = job.error.unwrap();
    assert!(error.contains("no worker ever started it"), "{error}");
    assert!(error.contains("is gone"), "{error}");

    let reopened = Registry::with_storage(f.storage.clone(), options()).unwrap();
    assert_eq!(reopened.job(&fresh.id).unwrap().state, JobState::Queued);
    assert_eq!(reopened.job(&legacy.id).unwrap().state, JobState::Failed);
    assert_eq!(reopened.job(&waiting.id).unwrap().state, JobState::Queued);
}

#[test]
fn a_job_that_died_after_publishing_its_result_succeeded() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    // Run a save, then rewrite its record as the kill -9 between publishing the saved model
    // and recording the outcome leaves it: running, worker dead.
    let queued = f.registry.queue_save(&trained, "auto").unwrap();
    let done = f.registry.run_job(&queued.id, &NoProgress).unwrap();
    let saved = done.result.clone().unwrap();
    let mut crashed = done.clone();
    crashed.state = JobState::Running;
    crashed.result = None;
    crashed.finished = None;
    crashed.pid = Some(dead_pid());
    store_job(&f, &crashed);

    let reopened = Registry::with_storage(f.storage.clone(), options()).unwrap();
    let job = reopened.job(&crashed.id).unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{:?}", job.error);
    assert_eq!(job.result.as_deref(), Some(saved.as_str()));
    assert!(job.error.is_none());
    assert_eq!(
        reopened.saved(&saved).unwrap().job.as_deref(),
        Some(&*job.id)
    );

    // A dead save job whose reserved name holds another job's model did not succeed.
    let mut other = crashed.clone();
    other.id = uuid::Uuid::new_v4().to_string();
    store_job(&f, &other);
    assert_eq!(reopened.recover().unwrap(), [other.id.clone()]);
    let job = reopened.job(&other.id).unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert!(job.error.unwrap().contains("died before finishing"));
}

#[test]
fn unreadable_records_are_skipped_and_reported_never_fatal() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let saved = f.save(&trained);
    // A corrupt job record, a stray JSON file and a record holding another id.
    f.storage.write_job("0123abcd", b"{ not json").unwrap();
    f.storage.write_job("notes", b"{}").unwrap();
    let job = f.registry.jobs().unwrap().remove(0);
    f.storage
        .write_job("abcd", &serde_json::to_vec(&job).unwrap())
        .unwrap();
    // A corrupt entry record.
    f.storage
        .write(EntryKind::Saved, &saved, "entry.json", b"[]")
        .unwrap();

    // Opening the store, lists and new work all go on.
    let reopened = Registry::with_storage(f.storage.clone(), options()).unwrap();
    assert_eq!(reopened.jobs().unwrap(), std::slice::from_ref(&job));
    assert!(reopened.saved_models().unwrap().is_empty());
    let again = f.save(&trained);
    assert_eq!(reopened.saved_models().unwrap().len(), 1);
    assert_ne!(again, saved);
    assert_eq!(reopened.job(&job.id[..8]).unwrap().id, job.id);

    let problems = reopened.doctor().unwrap();
    let files: Vec<String> = problems
        .iter()
        .map(|p| {
            let path = p.path.display().to_string();
            path.rsplit('/').take(2).collect::<Vec<_>>().join("<")
        })
        .collect();
    assert_eq!(
        files,
        [
            format!("entry.json<{saved}"),
            "0123abcd.json<jobs".to_string(),
            "abcd.json<jobs".to_string(),
            "notes.json<jobs".to_string(),
        ]
    );
    assert!(
        problems[2].reason.contains(&job.id),
        "{}",
        problems[2].reason
    );
    assert!(problems[3].reason.contains("not a job id"));
    assert_eq!(reopened.unreadable_jobs().unwrap().len(), 3);
}

#[test]
fn a_truncated_adapter_is_refused_at_add_naming_the_users_file() {
    let f = fixture();
    f.add_base();
    let weights = f.demo.trainer_dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() - 10]).unwrap();
    let err = f
        .registry
        .add_trained(&f.demo.trainer_dir, "tiny", "cut", None)
        .unwrap_err();
    match &err {
        RegistryError::BadAdapterWeights { path, .. } => {
            assert_eq!(path, &weights.canonicalize().unwrap());
        }
        other => panic!("expected BadAdapterWeights, got {other}"),
    }
    assert!(err.is_user_error());
    assert!(err.to_string().contains("adapter_model.safetensors"));
    assert!(f.registry.trained_models().unwrap().is_empty());
    assert!(f.storage.staged_owners().unwrap().is_empty());
}

#[test]
fn a_truncated_or_altered_cached_export_is_exported_again() {
    use loraforge_naming::QuantType;
    let f = fixture();
    let home = tempfile::tempdir().unwrap();
    let registry = Registry::open_with(home.path(), options()).unwrap();
    registry
        .add_base(&f.demo.base_dir, "tiny", &BaseAddOptions::default())
        .unwrap();
    let trained = registry
        .add_trained(&f.demo.trainer_dir, "tiny", "cache", None)
        .unwrap()
        .name
        .to_string();
    let job = registry.queue_save(&trained, "auto").unwrap();
    let saved = registry
        .run_job(&job.id, &NoProgress)
        .unwrap()
        .result
        .unwrap();
    let quant = QuantType::NoQuantization;

    let first = registry.export_gguf(&saved, quant, &NoProgress).unwrap();
    assert!(!first.reused);
    let good = std::fs::read(&first.path).unwrap();
    assert!(
        registry
            .export_gguf(&saved, quant, &NoProgress)
            .unwrap()
            .reused
    );

    // Truncated: the size gives it away.
    std::fs::write(&first.path, &good[..good.len() / 2]).unwrap();
    let again = registry.export_gguf(&saved, quant, &NoProgress).unwrap();
    assert!(!again.reused, "a truncated cache file must not be reused");
    assert_eq!(std::fs::read(&again.path).unwrap(), good);

    // Altered in place, same size: the digest gives it away.
    let mut altered = good.clone();
    let last = altered.len() - 1;
    altered[last] ^= 0x55;
    std::fs::write(&first.path, &altered).unwrap();
    let again = registry.export_gguf(&saved, quant, &NoProgress).unwrap();
    assert!(!again.reused, "an altered cache file must not be reused");
    assert_eq!(std::fs::read(&again.path).unwrap(), good);
    assert_eq!(again.sha256, first.sha256);
    assert!(
        registry
            .export_gguf(&saved, quant, &NoProgress)
            .unwrap()
            .reused
    );
}

/// The phases a run went through.
#[derive(Default)]
struct Phases(std::sync::Mutex<Vec<String>>);

impl loraforge_progress::Reporter for Phases {
    fn begin(&self, phase: &str, _total: Option<u64>) {
        self.0.lock().unwrap().push(phase.to_string());
    }
    fn advance(&self, _units: u64) {}
}

impl Phases {
    fn hashed(&self) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("verify"))
    }
}

#[test]
fn recorded_checksums_are_trusted_until_a_file_is_written_again() {
    use loraforge_naming::QuantType;
    let f = fixture();
    let home = tempfile::tempdir().unwrap();
    let registry = Registry::open_with(home.path(), options()).unwrap();
    registry
        .add_base(&f.demo.base_dir, "tiny", &BaseAddOptions::default())
        .unwrap();
    let trained = registry
        .add_trained(&f.demo.trainer_dir, "tiny", "stamps", None)
        .unwrap()
        .name
        .to_string();
    let job = registry.queue_save(&trained, "auto").unwrap();
    let saved = registry
        .run_job(&job.id, &NoProgress)
        .unwrap()
        .result
        .unwrap();
    let quant = QuantType::NoQuantization;

    // Saved files as the save left them and the cached GGUF as the export left it: no hashing.
    let fresh = Phases::default();
    let first = registry.export_gguf(&saved, quant, &fresh).unwrap();
    assert!(!first.reused);
    assert!(!fresh.hashed(), "phases: {:?}", fresh.0.lock().unwrap());
    let reuse = Phases::default();
    assert!(registry.export_gguf(&saved, quant, &reuse).unwrap().reused);
    assert!(!reuse.hashed(), "phases: {:?}", reuse.0.lock().unwrap());

    // Written again with the same bytes: hashed, found intact, still reused.
    let good = std::fs::read(&first.path).unwrap();
    std::fs::write(&first.path, &good).unwrap();
    let rewritten = Phases::default();
    assert!(
        registry
            .export_gguf(&saved, quant, &rewritten)
            .unwrap()
            .reused
    );
    assert!(rewritten.hashed());

    // A saved weight file altered in place, same size, right after: refused by its digest.
    let record = registry.saved(&saved).unwrap();
    let weights = record
        .files
        .iter()
        .find(|file| file.path.ends_with(".safetensors"))
        .unwrap();
    assert!(
        weights.modified_ns.is_some(),
        "the save stamps what it hashed"
    );
    let path = registry
        .saved_model_dir(&saved)
        .unwrap()
        .join(&weights.path);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = registry
        .export_gguf(&saved, quant, &NoProgress)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ChecksumMismatch { ref file, .. } if *file == weights.path),
        "{err}"
    );
}

#[test]
fn cancelling_a_job_that_runs_in_this_process_is_refused_not_fatal() {
    let f = fixture();
    f.add_base();
    let trained = f.add_trained();
    let mut job = queued_job(&trained, &format!("{trained}_s_0a1b"));
    job.state = JobState::Running;
    job.pid = Some(std::process::id());
    store_job(&f, &job);
    let err = f.registry.cancel_job(&job.id).unwrap_err();
    assert!(
        matches!(err, RegistryError::JobRunsInThisProcess { ref id, pid } if *id == job.id && pid == std::process::id()),
        "{err}"
    );
    assert!(err.is_user_error() && err.hint().is_some());
    // Still running, and this test process is alive to say so.
    assert_eq!(f.registry.job(&job.id).unwrap().state, JobState::Running);
}
