//! The [`Registry`]: every lifecycle operation on the store.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use loraforge_model_card::{CARD_FILE, README_FILE};
use loraforge_progress::Reporter;

use crate::cards;
use crate::error::{RegistryError, Result};
use crate::jobs::{
    self, job_process_alive, process_start_time, Job, JobKind, JobProgress, JobReporter, JobState,
    JobStore,
};
use crate::lock::{lock_timeout_from_env, StoreLock};
use crate::records::{BaseRecord, FileRecord, SavedRecord, TrainedRecord};
use crate::storage::{copy_tree, write_atomic, EntryKind, FsStorage, Storage};

/// Environment variable naming the store root.
pub const HOME_ENV: &str = "LORAFORGE_HOME";

/// The record file of every entry.
pub(crate) const ENTRY_FILE: &str = "entry.json";
/// A base model's deployment template.
pub(crate) const TEMPLATE_FILE: &str = "template.Modelfile";

/// Files of an adapter folder that a trained entry keeps.
const ADAPTER_FILES: &[&str] = &[
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "README.md",
];

/// Trainer files a trained entry keeps for its card.
const TRAINING_FILES: &[&str] = &[
    "trainer_state.json",
    "training_args.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
];

/// How a base model is registered.
#[derive(Debug, Clone, Default)]
pub struct BaseAddOptions {
    /// Copy the folder into the store (else reference it where it is).
    pub copy: bool,
    /// An Ollama Modelfile fragment used when deploying models of this base.
    pub template: Option<PathBuf>,
}

/// The store: base, trained, saved and deployed models, and jobs.
///
/// ```
/// # fn main() -> Result<(), loraforge_registry::RegistryError> {
/// let home = std::env::temp_dir().join(format!("loraforge-doc-{}", std::process::id()));
/// let registry = loraforge_registry::Registry::open(&home)?;
/// assert!(registry.bases()?.is_empty());
/// # std::fs::remove_dir_all(&home).ok();
/// # Ok(()) }
/// ```
pub struct Registry {
    home: PathBuf,
    storage: Box<dyn Storage>,
    jobs: JobStore,
    lock_timeout: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("home", &self.home)
            .finish()
    }
}

/// A tag for staging folders and graves: `<prefix>-<pid>-<start>-<uuid>`, so recovery can tell
/// whether the process that made it is still alive.
pub(crate) fn owner_tag(prefix: &str) -> String {
    let pid = std::process::id();
    let start = process_start_time(pid).unwrap_or(0);
    format!("{prefix}-{pid}-{start}-{}", uuid::Uuid::new_v4().simple())
}

fn owner_alive(tag: &str) -> bool {
    let mut parts = tag.splitn(4, '-');
    let _prefix = parts.next();
    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
    let start = parts.next().and_then(|s| s.parse::<u64>().ok());
    match (pid, start) {
        (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
        _ => false,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| RegistryError::CorruptRecord {
        path: path.to_path_buf(),
        source,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain records cannot fail.
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

impl Registry {
    /// The store root from `LORAFORGE_HOME`, else the platform data folder (`~/.local/share/loraforge`).
    pub fn default_home() -> Option<PathBuf> {
        match std::env::var_os(HOME_ENV) {
            Some(home) if !home.is_empty() => Some(PathBuf::from(home)),
            _ => dirs::data_dir().map(|d| d.join("loraforge")),
        }
    }

    /// Open (creating if needed) the store at `home`, and clean up after crashed work.
    pub fn open(home: &Path) -> Result<Registry> {
        std::fs::create_dir_all(home).map_err(RegistryError::io("cannot create", home))?;
        let home = home
            .canonicalize()
            .map_err(RegistryError::io("cannot open", home))?;
        let storage = FsStorage::open(&home)?;
        let registry = Registry {
            jobs: JobStore::new(jobs::jobs_dir(&home)),
            storage: Box::new(storage),
            home,
            lock_timeout: lock_timeout_from_env(),
        };
        registry.recover()?;
        Ok(registry)
    }

    /// The store root.
    pub fn home(&self) -> &Path {
        &self.home
    }

    pub(crate) fn lock(&self) -> Result<StoreLock> {
        StoreLock::acquire(&self.home, self.lock_timeout)
    }

    /// Mark jobs whose process died as failed and remove staging folders nobody owns.
    /// Returns the ids of the jobs marked failed.
    pub fn recover(&self) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        let mut failed = Vec::new();
        let mut live_owners = Vec::new();
        for mut job in self.jobs.list()? {
            if job.state == JobState::Running && !job_process_alive(&job) {
                job.state = JobState::Failed;
                job.finished = Some(Utc::now());
                job.error = Some(format!(
                    "the worker process (pid {}) died before finishing; partial output removed",
                    job.pid.unwrap_or(0)
                ));
                self.jobs.save(&job)?;
                failed.push(job.id.clone());
            }
            if !job.state.is_final() {
                live_owners.push(format!("job-{}", job.id));
            }
        }
        for owner in self.storage.staged_owners()? {
            if !live_owners.contains(&owner) && !owner_alive(&owner) {
                self.storage.discard_staged(&owner)?;
            }
        }
        Ok(failed)
    }

    // ----- base models -------------------------------------------------------------------------

    /// Register a local Hugging Face model folder under a technical name.
    pub fn add_base(
        &self,
        path: &Path,
        name: &str,
        options: &BaseAddOptions,
    ) -> Result<BaseRecord> {
        let technical = loraforge_naming::TechnicalName::new(name)?;
        let source = path.canonicalize().map_err(|e| RegistryError::BadInput {
            path: path.to_path_buf(),
            problem: format!("cannot open the base model folder: {e}"),
        })?;
        // Opening validates config.json and every weight header before anything is stored.
        let model =
            loraforge_hf_model::HfModel::open(&source).map_err(|e| RegistryError::BadInput {
                path: source.clone(),
                problem: format!(
                    "not a usable Hugging Face model folder: {}",
                    error_chain(&e)
                ),
            })?;
        let template = match &options.template {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|e| RegistryError::BadInput {
                    path: file.clone(),
                    problem: format!("cannot read the deployment template: {e}"),
                })?;
                loraforge_ollama_client::Modelfile::parse(&text).map_err(|e| {
                    RegistryError::BadInput {
                        path: file.clone(),
                        problem: format!("the deployment template does not parse: {e}"),
                    }
                })?;
                Some(text)
            }
            None => None,
        };
        if self.storage.exists(EntryKind::Base, technical.as_str()) {
            return Err(RegistryError::AlreadyExists {
                kind: "base",
                name: technical.as_str().to_string(),
            });
        }
        let owner = owner_tag("add");
        let staged = self.storage.stage(&owner)?;
        let result = (|| {
            let final_dir = self
                .storage
                .local_dir(EntryKind::Base, technical.as_str())?;
            let model_dir = if options.copy {
                copy_tree(&source, &staged.join("model"))?;
                final_dir.join("model")
            } else {
                source.clone()
            };
            let config = model.config();
            let record = BaseRecord {
                technical_name: technical.as_str().to_string(),
                model_name: config
                    .get("_name_or_path")
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .or_else(|| source.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default(),
                model_dir,
                copied: options.copy,
                source: source.clone(),
                architecture: config
                    .get("architectures")
                    .and_then(|a| a.get(0))
                    .and_then(|a| a.as_str())
                    .map(str::to_string),
                has_template: template.is_some(),
                uuid: uuid::Uuid::new_v4(),
                added: Utc::now(),
            };
            if let Some(text) = &template {
                write_atomic(&staged.join(TEMPLATE_FILE), text.as_bytes())?;
            }
            let card = cards::base_card(&record, &source)?;
            card.write_to_dir(&staged)?;
            write_atomic(&staged.join(ENTRY_FILE), &to_json(&record))?;
            let _lock = self.lock()?;
            self.storage
                .publish(&staged, EntryKind::Base, technical.as_str())?;
            Ok(record)
        })();
        if result.is_err() {
            let _ = self.storage.discard_staged(&owner);
        }
        result
    }

    pub(crate) fn read_record<T: serde::de::DeserializeOwned>(
        &self,
        kind: EntryKind,
        name: &str,
    ) -> Result<T> {
        if !self.storage.exists(kind, name) {
            return Err(RegistryError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
            });
        }
        let bytes = self.storage.read(kind, name, ENTRY_FILE)?;
        let path = self.storage.local_dir(kind, name)?.join(ENTRY_FILE);
        read_json(&path, &bytes)
    }

    pub(crate) fn read_all<T: serde::de::DeserializeOwned>(
        &self,
        kind: EntryKind,
    ) -> Result<Vec<T>> {
        self.storage
            .list(kind)?
            .iter()
            .map(|name| self.read_record(kind, name))
            .collect()
    }

    /// All base models.
    pub fn bases(&self) -> Result<Vec<BaseRecord>> {
        self.read_all(EntryKind::Base)
    }

    /// One base model.
    pub fn base(&self, name: &str) -> Result<BaseRecord> {
        self.read_record(EntryKind::Base, name)
    }

    /// A base model's deployment template, if it has one.
    pub fn base_template(&self, name: &str) -> Result<Option<String>> {
        let record = self.base(name)?;
        if !record.has_template {
            return Ok(None);
        }
        let bytes = self.storage.read(EntryKind::Base, name, TEMPLATE_FILE)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Remove a base model; refused while trained models use it unless `force`.
    pub fn remove_base(&self, name: &str, force: bool) -> Result<BaseRecord> {
        let _lock = self.lock()?;
        let record = self.base(name)?;
        let users: Vec<String> = self
            .trained_models()?
            .into_iter()
            .filter(|t| t.base == name)
            .map(|t| t.name)
            .collect();
        if !users.is_empty() && !force {
            return Err(RegistryError::BaseInUse {
                name: name.to_string(),
                users: users.join(", "),
            });
        }
        self.storage.remove(EntryKind::Base, name)?;
        Ok(record)
    }

    // ----- trained models ----------------------------------------------------------------------

    /// Register a PEFT adapter folder, or a trainer output folder (`checkpoint-N/` subfolders),
    /// as a trained model of `base`.
    pub fn add_trained(
        &self,
        path: &Path,
        base: &str,
        train_name: &str,
        checkpoint: Option<u64>,
    ) -> Result<TrainedRecord> {
        let train = loraforge_naming::TrainName::new(train_name)?;
        let base_record = self.base(base)?;
        let source = path.canonicalize().map_err(|e| RegistryError::BadInput {
            path: path.to_path_buf(),
            problem: format!("cannot open the adapter folder: {e}"),
        })?;
        let selection = select_adapter(&source, checkpoint)?;
        // Parse the adapter config now so a broken adapter never enters the store.
        loraforge_adapter_merge::AdapterConfig::load(&selection.adapter_dir).map_err(|e| {
            RegistryError::BadInput {
                path: selection.adapter_dir.clone(),
                problem: error_chain(&e),
            }
        })?;
        let recorded = loraforge_model_card::TrainingDate::find(&selection.training_dir)?;
        let (date, date_source) = match recorded {
            Some(found) => (found.date, found.source),
            None => (Utc::now().date_naive(), "registration".to_string()),
        };
        let owner = owner_tag("add");
        let staged = self.storage.stage(&owner)?;
        let result = (|| {
            copy_listed(
                &selection.adapter_dir,
                &staged.join("adapter"),
                ADAPTER_FILES,
            )?;
            copy_listed(
                &selection.training_dir,
                &staged.join("training"),
                TRAINING_FILES,
            )?;
            let _lock = self.lock()?;
            let existing: Vec<uuid::Uuid> = self.trained_models()?.iter().map(|t| t.uuid).collect();
            let uuid = fresh_uuid(&existing)?;
            let name = loraforge_naming::TrainedName::new(
                loraforge_naming::TechnicalName::new(&base_record.technical_name)?,
                &train,
                date,
                loraforge_naming::UuidPrefix::of(&uuid),
            )?
            .to_string();
            let record = TrainedRecord {
                name: name.clone(),
                uuid,
                base: base_record.technical_name.clone(),
                train_name: train.as_str().to_string(),
                date,
                date_source: date_source.clone(),
                source: source.clone(),
                checkpoint: selection.checkpoint,
                adapter_present: true,
                added: Utc::now(),
            };
            let base_card_dir = self
                .storage
                .local_dir(EntryKind::Base, &base_record.technical_name)?;
            let card = cards::trained_card(&record, &base_record, &base_card_dir, &staged)?;
            card.write_to_dir(&staged)?;
            write_atomic(&staged.join(ENTRY_FILE), &to_json(&record))?;
            self.storage.publish(&staged, EntryKind::Trained, &name)?;
            Ok(record)
        })();
        if result.is_err() {
            let _ = self.storage.discard_staged(&owner);
        }
        result
    }

    /// All trained models.
    pub fn trained_models(&self) -> Result<Vec<TrainedRecord>> {
        self.read_all(EntryKind::Trained)
    }

    /// One trained model.
    pub fn trained(&self, name: &str) -> Result<TrainedRecord> {
        self.read_record(EntryKind::Trained, name)
    }

    /// Remove a trained model's adapter files. Its record and card stay (marked removed) so saved
    /// models made from it keep their lineage; those saved models are untouched.
    pub fn remove_trained(&self, name: &str) -> Result<TrainedRecord> {
        let _lock = self.lock()?;
        let mut record = self.trained(name)?;
        self.storage
            .remove_part(EntryKind::Trained, name, "adapter")?;
        record.adapter_present = false;
        self.storage
            .write(EntryKind::Trained, name, ENTRY_FILE, &to_json(&record))?;
        Ok(record)
    }

    /// Forget a trained model entirely (record and card too), after its adapter was removed or now.
    pub fn purge_trained(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        self.trained(name)?;
        self.storage.remove(EntryKind::Trained, name)
    }

    // ----- saving ------------------------------------------------------------------------------

    /// Record a save job for a trained model (the name of the saved model is reserved now).
    pub fn queue_save(&self, trained: &str, dtype: &str) -> Result<Job> {
        let _lock = self.lock()?;
        let record = self.trained(trained)?;
        if !record.adapter_present {
            return Err(RegistryError::AdapterRemoved {
                name: trained.to_string(),
            });
        }
        self.base(&record.base)
            .map_err(|_| RegistryError::BaseMissing {
                name: record.base.clone(),
                trained: trained.to_string(),
            })?;
        let mut existing: Vec<uuid::Uuid> = self.saved_models()?.iter().map(|s| s.uuid).collect();
        for job in self.jobs.list()? {
            let JobKind::Save { saving_uuid, .. } = &job.kind;
            if !job.state.is_final() {
                existing.push(*saving_uuid);
            }
        }
        let saving_uuid = fresh_uuid(&existing)?;
        let trained_name: loraforge_naming::TrainedName = record.name.parse()?;
        let saved = loraforge_naming::SavedName::new(
            trained_name,
            loraforge_naming::UuidPrefix::of(&saving_uuid),
        )
        .to_string();
        let job = Job {
            id: uuid::Uuid::new_v4().to_string(),
            kind: JobKind::Save {
                trained: trained.to_string(),
                saved,
                saving_uuid,
                dtype: dtype.to_string(),
            },
            state: JobState::Queued,
            created: Utc::now(),
            started: None,
            finished: None,
            pid: None,
            pid_start: None,
            progress: JobProgress::default(),
            error: None,
            result: None,
        };
        self.jobs.save(&job)?;
        Ok(job)
    }

    /// Run a queued job in this process. Progress goes to the job record and to `reporter`.
    pub fn run_job(&self, id: &str, reporter: &dyn Reporter) -> Result<Job> {
        let mut job = {
            let _lock = self.lock()?;
            let mut job = self.jobs.find(id)?;
            if job.state != JobState::Queued {
                return Ok(job);
            }
            let pid = std::process::id();
            job.state = JobState::Running;
            job.pid = Some(pid);
            job.pid_start = process_start_time(pid);
            job.started = Some(Utc::now());
            self.jobs.save(&job)?;
            job
        };
        let owner = format!("job-{}", job.id);
        let job_reporter = JobReporter::new(self.jobs.clone(), job.clone());
        let both = Tee(&job_reporter, reporter);
        let outcome = self.perform_save(&job, &owner, &both);
        let _lock = self.lock()?;
        let current = self.jobs.load(&job.id)?;
        job.progress = current.progress;
        job.finished = Some(Utc::now());
        match outcome {
            Ok(staged) if current.state == JobState::Running => {
                let JobKind::Save { saved, .. } = &job.kind;
                match self.storage.publish(&staged, EntryKind::Saved, saved) {
                    Ok(()) => {
                        job.state = JobState::Succeeded;
                        job.result = Some(saved.clone());
                    }
                    Err(e) => {
                        job.state = JobState::Failed;
                        job.error = Some(error_chain(&e));
                    }
                }
            }
            Ok(_) => job.state = current.state,
            Err(e) => {
                job.state = JobState::Failed;
                job.error = Some(error_chain(&e));
            }
        }
        if job.state != JobState::Succeeded {
            self.storage.discard_staged(&owner)?;
        }
        self.jobs.save(&job)?;
        match job.state {
            JobState::Failed => Err(RegistryError::JobFailed {
                id: job.id.clone(),
                message: job.error.clone().unwrap_or_default(),
            }),
            _ => Ok(job),
        }
    }

    fn perform_save(&self, job: &Job, owner: &str, reporter: &dyn Reporter) -> Result<PathBuf> {
        let JobKind::Save {
            trained,
            saved,
            saving_uuid,
            dtype,
        } = &job.kind;
        let trained_record = self.trained(trained)?;
        let base_record = self.base(&trained_record.base)?;
        let adapter_dir = self
            .storage
            .local_dir(EntryKind::Trained, trained)?
            .join("adapter");
        if !trained_record.adapter_present || !adapter_dir.is_dir() {
            return Err(RegistryError::AdapterRemoved {
                name: trained.clone(),
            });
        }
        if !base_record.model_dir.is_dir() {
            return Err(RegistryError::BadInput {
                path: base_record.model_dir.clone(),
                problem: format!(
                    "the folder of base model '{}' is gone; register it again (`loraforge base rm {0} --force` then `base add`)",
                    base_record.technical_name
                ),
            });
        }
        let staged = self.storage.stage(owner)?;
        let started = Instant::now();
        let options = loraforge_adapter_merge::MergeOptions {
            dtype: dtype.parse::<loraforge_adapter_merge::OutputDtype>()?,
            // the record keeps every file's SHA-256: exports check the files against it
            sha256: true,
            ..loraforge_adapter_merge::MergeOptions::new(
                &base_record.model_dir,
                &adapter_dir,
                staged.join("model"),
            )
        };
        let report = loraforge_adapter_merge::merge(&options, reporter)?;
        let merge_seconds = started.elapsed().as_secs_f64();
        let record = SavedRecord {
            name: saved.clone(),
            uuid: *saving_uuid,
            trained: trained.clone(),
            trained_uuid: trained_record.uuid,
            base: base_record.technical_name.clone(),
            dtype: report.dtype.safetensors_name().to_ascii_lowercase(),
            files: report
                .output_files
                .iter()
                .map(|(path, bytes, sha256)| FileRecord {
                    path: path.to_string_lossy().into_owned(),
                    bytes: *bytes,
                    sha256: sha256.clone().unwrap_or_default(),
                })
                .collect(),
            job: Some(job.id.clone()),
            merge_seconds,
            created: Utc::now(),
        };
        let trained_dir = self.storage.local_dir(EntryKind::Trained, trained)?;
        let card = cards::saved_card(&record, &trained_dir)?;
        // The card goes last: an entry folder with a card is complete.
        write_atomic(&staged.join(ENTRY_FILE), &to_json(&record))?;
        card.write_to_dir(&staged)?;
        Ok(staged)
    }

    /// All jobs, oldest first.
    pub fn jobs(&self) -> Result<Vec<Job>> {
        self.jobs.list()
    }

    /// One job, by id or unique id prefix.
    pub fn job(&self, id: &str) -> Result<Job> {
        self.jobs.find(id)
    }

    /// The log file of a job.
    pub fn job_log(&self, id: &str) -> Result<PathBuf> {
        let job = self.jobs.find(id)?;
        Ok(self.jobs.log_path(&job.id))
    }

    /// Record that starting a job's worker failed.
    pub fn fail_job(&self, id: &str, message: &str) -> Result<Job> {
        let _lock = self.lock()?;
        let mut job = self.jobs.find(id)?;
        if !job.state.is_final() {
            job.state = JobState::Failed;
            job.error = Some(message.to_string());
            job.finished = Some(Utc::now());
            self.jobs.save(&job)?;
        }
        Ok(job)
    }

    /// Stop a job: a queued job never starts; a running one is terminated and its partial output removed.
    pub fn cancel_job(&self, id: &str) -> Result<Job> {
        let _lock = self.lock()?;
        let mut job = self.jobs.find(id)?;
        if job.state.is_final() {
            return Ok(job);
        }
        if job.state == JobState::Running && job_process_alive(&job) {
            if let Some(pid) = job.pid {
                jobs::terminate(pid);
                let deadline = Instant::now() + Duration::from_secs(10);
                while job_process_alive(&job) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        job.state = JobState::Cancelled;
        job.finished = Some(Utc::now());
        self.storage.discard_staged(&format!("job-{}", job.id))?;
        self.jobs.save(&job)?;
        Ok(job)
    }

    /// Wait until a job reaches a final state (checking for a dead worker meanwhile).
    pub fn wait_job(
        &self,
        id: &str,
        timeout: Option<Duration>,
        on_poll: &mut dyn FnMut(&Job),
    ) -> Result<Job> {
        let start = Instant::now();
        loop {
            let job = self.jobs.find(id)?;
            on_poll(&job);
            if job.state.is_final() {
                return Ok(job);
            }
            if job.state == JobState::Running && !job_process_alive(&job) {
                self.recover()?;
                continue;
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Ok(job);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // ----- saved models ------------------------------------------------------------------------

    /// All saved models.
    pub fn saved_models(&self) -> Result<Vec<SavedRecord>> {
        self.read_all(EntryKind::Saved)
    }

    /// One saved model.
    pub fn saved(&self, name: &str) -> Result<SavedRecord> {
        self.read_record(EntryKind::Saved, name)
    }

    /// The folder holding a saved model's Hugging Face files.
    pub fn saved_model_dir(&self, name: &str) -> Result<PathBuf> {
        self.saved(name)?;
        Ok(self
            .storage
            .local_dir(EntryKind::Saved, name)?
            .join("model"))
    }

    /// Remove a saved model's folder. Deployments made from it stay.
    pub fn remove_saved(&self, name: &str) -> Result<SavedRecord> {
        let _lock = self.lock()?;
        let record = self.saved(name)?;
        self.storage.remove(EntryKind::Saved, name)?;
        Ok(record)
    }

    // ----- cards -------------------------------------------------------------------------------

    /// An entry's model card as JSON text.
    pub fn card_json(&self, kind: EntryKind, name: &str) -> Result<String> {
        self.read_record::<serde_json::Value>(kind, name)?;
        let bytes = self.storage.read(kind, name, CARD_FILE)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// An entry's model card as Markdown (the `README.md`).
    pub fn card_readme(&self, kind: EntryKind, name: &str) -> Result<String> {
        self.read_record::<serde_json::Value>(kind, name)?;
        let bytes = self.storage.read(kind, name, README_FILE)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The local folder of an entry (for `show`).
    pub fn entry_dir(&self, kind: EntryKind, name: &str) -> Result<PathBuf> {
        self.storage.local_dir(kind, name)
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }
}

/// A fresh UUID whose 4-hex prefix no entry of the same kind uses (the full UUIDs are in the
/// records), so two entries never differ only after their name's prefix.
pub(crate) fn fresh_uuid(existing: &[uuid::Uuid]) -> Result<uuid::Uuid> {
    Ok(loraforge_naming::draw_uuid_avoiding(
        existing,
        uuid::Uuid::new_v4,
        loraforge_naming::DEFAULT_DRAW_ATTEMPTS,
    )?)
}

struct AdapterSelection {
    adapter_dir: PathBuf,
    training_dir: PathBuf,
    checkpoint: Option<u64>,
}

fn select_adapter(source: &Path, checkpoint: Option<u64>) -> Result<AdapterSelection> {
    let has_config = |dir: &Path| dir.join("adapter_config.json").is_file();
    let available = loraforge_model_card::find_checkpoints(source)?;
    let (adapter_dir, picked) = match checkpoint {
        Some(step) => {
            let Some(found) = available.iter().find(|c| c.step == step) else {
                let list: Vec<String> = available.iter().map(|c| c.step.to_string()).collect();
                return Err(RegistryError::BadInput {
                    path: source.to_path_buf(),
                    problem: if list.is_empty() {
                        format!("--checkpoint {step} given but the folder has no checkpoint-N subfolders")
                    } else {
                        format!("no checkpoint-{step}; available checkpoints: {}", list.join(", "))
                    },
                });
            };
            (found.dir.clone(), Some(step))
        }
        None if has_config(source) => (source.to_path_buf(), None),
        None => match available.last() {
            Some(last) => (last.dir.clone(), Some(last.step)),
            None => {
                return Err(RegistryError::BadInput {
                    path: source.to_path_buf(),
                    problem: "neither a PEFT adapter folder (no adapter_config.json) nor a trainer output folder (no checkpoint-N/ subfolders)".into(),
                })
            }
        },
    };
    if !has_config(&adapter_dir) {
        return Err(RegistryError::BadInput {
            path: adapter_dir,
            problem: "no adapter_config.json: not a PEFT adapter folder".into(),
        });
    }
    if !adapter_dir.join("adapter_model.safetensors").is_file() {
        let hint = if adapter_dir.join("adapter_model.bin").is_file() {
            "only adapter_model.bin (a pickle) is present; convert it to safetensors first, e.g. `PeftModel.from_pretrained(base, dir).save_pretrained(dir, safe_serialization=True)`"
        } else {
            "no adapter_model.safetensors"
        };
        return Err(RegistryError::BadInput {
            path: adapter_dir,
            problem: hint.into(),
        });
    }
    // Trainer files: the root's describe the whole run; a checkpoint's describe the run up to it.
    let training_dir = match picked {
        Some(_) if source.join("trainer_state.json").is_file() && checkpoint.is_none() => {
            source.to_path_buf()
        }
        Some(_) => adapter_dir.clone(),
        None => source.to_path_buf(),
    };
    Ok(AdapterSelection {
        adapter_dir,
        training_dir,
        checkpoint: picked,
    })
}

fn copy_listed(from: &Path, to: &Path, names: &[&str]) -> Result<()> {
    std::fs::create_dir_all(to).map_err(RegistryError::io("cannot create", to))?;
    for name in names {
        let source = from.join(name);
        if source.is_file() {
            std::fs::copy(&source, to.join(name))
                .map_err(RegistryError::io("cannot copy", &source))?;
        }
    }
    Ok(())
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// Forward progress to two reporters.
pub(crate) struct Tee<'a>(pub &'a dyn Reporter, pub &'a dyn Reporter);

impl Reporter for Tee<'_> {
    fn begin(&self, phase: &str, total: Option<u64>) {
        self.0.begin(phase, total);
        self.1.begin(phase, total);
    }
    fn advance(&self, units: u64) {
        self.0.advance(units);
        self.1.advance(units);
    }
    fn message(&self, text: &str) {
        self.0.message(text);
        self.1.message(text);
    }
    fn finish(&self) {
        self.0.finish();
        self.1.finish();
    }
}
