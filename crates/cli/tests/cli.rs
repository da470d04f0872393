//! The `loraforge` binary against temporary stores: every subcommand, delete semantics,
//! background jobs, a worker killed mid-job, concurrent saves, bad input, and deployment to an
//! in-process fake Ollama server.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

struct Env {
    _dir: tempfile::TempDir,
    home: PathBuf,
    demo: loraforge_demo::DemoFiles,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let demo = loraforge_demo::generate(
        &dir.path().join("files"),
        &loraforge_demo::DemoSpec::default(),
    )
    .unwrap();
    Env {
        home: dir.path().join("store"),
        demo,
        _dir: dir,
    }
}

impl Env {
    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("loraforge").unwrap();
        cmd.arg("--home")
            .arg(&self.home)
            .env_remove("OLLAMA_HOST")
            .env_remove("LORAFORGE_HOME");
        cmd
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.cmd().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "loraforge {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn fails(&self, args: &[&str]) -> Output {
        let output = self.cmd().args(args).output().unwrap();
        assert!(!output.status.success(), "loraforge {args:?} should fail");
        output
    }

    fn add_base(&self) {
        self.ok(&[
            "base",
            "add",
            self.demo.base_dir.to_str().unwrap(),
            "--name",
            "tiny",
            "--template",
            self.demo.template.to_str().unwrap(),
        ]);
    }

    fn add_trained(&self) -> String {
        let record = self.json(&[
            "trained",
            "add",
            self.demo.trainer_dir.to_str().unwrap(),
            "--base",
            "tiny",
            "--train-name",
            "My Run",
        ]);
        record["name"].as_str().unwrap().to_string()
    }

    fn save(&self, trained: &str) -> String {
        let job = self.json(&["trained", "save", trained]);
        assert_eq!(job["state"], "succeeded");
        job["result"].as_str().unwrap().to_string()
    }

    /// Everything visible in the store, to check a failed command changed nothing.
    fn snapshot(&self) -> Vec<String> {
        let mut out = Vec::new();
        for kind in ["base", "trained", "saved", "deployed"] {
            let dir = self.home.join(kind);
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                out.push(format!("{kind}/{}", entry.file_name().to_string_lossy()));
            }
        }
        out.sort();
        out
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn lifecycle_names_cards_and_listings() {
    let env = env();
    env.add_base();
    let bases = env.json(&["base", "list"]);
    assert_eq!(bases[0]["technical_name"], "tiny");
    assert_eq!(bases[0]["architecture"], "LlamaForCausalLM");
    assert_eq!(bases[0]["has_template"], true);

    let trained = env.add_trained();
    let parts: Vec<&str> = trained.split('_').collect();
    assert_eq!(parts[0], "tiny");
    assert_eq!(parts[1], "my-run", "train name normalized");
    assert_eq!(
        parts[2],
        chrono_today(),
        "no date recorded by the trainer files: registration date"
    );
    assert_eq!(parts[3].len(), 4);
    let record = &env.json(&["trained", "list"])[0];
    assert_eq!(
        record["checkpoint"],
        Value::Null,
        "final adapter by default"
    );
    assert!(record["uuid"].as_str().unwrap().starts_with(parts[3]));

    let card = env.json(&["trained", "show", &trained]);
    assert_eq!(card["schema"], "loraforge.model-card/1");
    assert_eq!(card["adapter"]["r"], 8);
    assert_eq!(card["evaluation"]["global_step"], 20);
    assert_eq!(card["lineage"].as_array().unwrap().len(), 2);

    let saved = env.save(&trained);
    assert!(saved.starts_with(&format!("{trained}_s_")), "{saved}");
    let saved_list = env.json(&["saved", "list"]);
    assert_eq!(names(&saved_list), vec![saved.clone()]);
    let model_dir = env.home.join("saved").join(&saved).join("model");
    for file in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(
            model_dir.join(file).is_file(),
            "{file} missing from the saved model"
        );
    }
    let saved_card = env.json(&["saved", "show", &saved]);
    let lineage = saved_card["lineage"].as_array().unwrap();
    assert_eq!(lineage.len(), 3);
    assert_eq!(lineage[2]["name"], saved.as_str());
    let readme = env.ok(&["saved", "show", &saved, "--readme"]);
    assert!(readme.starts_with("---\n"), "HF front matter");
    assert!(readme.contains(&saved));

    let jobs = env.json(&["jobs", "list"]);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["state"], "succeeded");
    let id = jobs[0]["id"].as_str().unwrap();
    assert_eq!(
        env.json(&["jobs", "show", &id[..8]])["id"],
        id,
        "unique prefix finds the job"
    );
    assert!(env.ok(&["--help"]).contains("Examples:"));
}

/// `saved deploy --help`: every GGUF type deploys through loraforge's quantizer, Ollama's own
/// four stay the `--server-quantize` choices; clap takes any of them, in any case.
#[test]
fn deploy_help_lists_every_type_and_ollamas_own_choices() {
    let env = env();
    let help = env.ok(&["saved", "deploy", "--help"]);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for ty in [
        "no_quantization",
        "q2_K",
        "q3_K_S",
        "q4_0",
        "q5_K_M",
        "q6_K",
        "q8_0",
    ] {
        assert!(help.contains(ty), "{ty} missing from:\n{help}");
    }
    assert!(help.contains("Ollama keeps its"), "{help}");
    assert!(help.contains("every GGUF type llama.cpp runs"), "{help}");
    // q3_k_m gets past argument parsing (the missing saved model is what fails).
    let out = env.fails(&["saved", "deploy", "nope", "--quant", "q3_k_m"]);
    assert!(!stderr(&out).contains("invalid value"), "{}", stderr(&out));
    let out = env.fails(&["saved", "deploy", "nope", "--quant", "iq2_xs"]);
    assert!(stderr(&out).contains("invalid value"), "{}", stderr(&out));
}

fn chrono_today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = now.div_euclid(86_400);
    // Civil-from-days (Howard Hinnant), to avoid a date dependency in the test.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

#[test]
fn checkpoint_selection_is_recorded() {
    let env = env();
    env.add_base();
    let record = env.json(&[
        "trained",
        "add",
        env.demo.trainer_dir.to_str().unwrap(),
        "--base",
        "tiny",
        "--train-name",
        "ckpt",
        "--checkpoint",
        "10",
    ]);
    assert_eq!(record["checkpoint"], 10);
    let card = env.json(&["trained", "show", record["name"].as_str().unwrap()]);
    assert_eq!(
        card["evaluation"]["global_step"], 10,
        "the checkpoint's own trainer_state"
    );
    let output = env.fails(&[
        "trained",
        "add",
        env.demo.trainer_dir.to_str().unwrap(),
        "--base",
        "tiny",
        "--train-name",
        "x",
        "--checkpoint",
        "15",
    ]);
    assert!(
        stderr(&output).contains("available checkpoints: 10, 20"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn delete_semantics() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let saved = env.save(&trained);

    // A base in use is kept unless forced.
    let output = env.fails(&["base", "rm", "tiny"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains(&trained), "{}", stderr(&output));

    // Removing the trained model removes its adapter files only; the saved model stays.
    env.ok(&["trained", "rm", &trained]);
    assert!(!env
        .home
        .join("trained")
        .join(&trained)
        .join("adapter")
        .exists());
    // Lists show live entries; `--all` shows the removed one too (its record stays for lineage).
    assert!(env
        .json(&["trained", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    let all = env.json(&["trained", "list", "--all"]);
    assert_eq!(names(&all), vec![trained.clone()]);
    assert_eq!(all[0]["adapter_present"], false);
    assert!(!env.ok(&["trained", "list"]).contains(&trained));
    assert!(env.ok(&["trained", "list", "--all"]).contains("removed"));
    assert_eq!(names(&env.json(&["saved", "list"])), vec![saved.clone()]);
    let output = env.fails(&["trained", "save", &trained]);
    assert!(
        stderr(&output).contains("no adapter files"),
        "{}",
        stderr(&output)
    );

    env.ok(&["saved", "rm", &saved]);
    assert!(env.json(&["saved", "list"]).as_array().unwrap().is_empty());
    assert!(!env.home.join("saved").join(&saved).exists());

    env.ok(&["base", "rm", "tiny", "--force"]);
    assert!(env.json(&["base", "list"]).as_array().unwrap().is_empty());
    assert!(
        env.demo.base_dir.join("model.safetensors").is_file(),
        "a referenced base folder is never deleted"
    );
    env.ok(&["trained", "rm", &trained, "--purge"]);
    assert!(env
        .json(&["trained", "list", "--all"])
        .as_array()
        .unwrap()
        .is_empty());
}

fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn job_record(home: &Path, id: &str) -> Value {
    serde_json::from_slice(&std::fs::read(home.join("jobs").join(format!("{id}.json"))).unwrap())
        .unwrap()
}

#[test]
fn background_save_then_wait() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let job = env.json(&["trained", "save", &trained, "--background"]);
    let id = job["id"].as_str().unwrap().to_string();
    let done = env.json(&["jobs", "wait", &id]);
    assert_eq!(done["state"], "succeeded", "{done}");
    let saved = done["result"].as_str().unwrap();
    assert_eq!(
        names(&env.json(&["saved", "list"])),
        vec![saved.to_string()]
    );
}

#[test]
fn a_worker_killed_mid_job_leaves_no_visible_entry() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let output = env
        .cmd()
        .args(["--json", "trained", "save", &trained, "--background"])
        .args(["--test-progress-delay-ms", "300"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let job: Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = job["id"].as_str().unwrap().to_string();
    wait_for(
        || {
            let record = job_record(&env.home, &id);
            record["state"] == "running" && record["progress"]["done"].as_u64().unwrap_or(0) > 0
        },
        "the worker to start merging",
    );
    let pid = job_record(&env.home, &id)["pid"].as_u64().unwrap();
    let staging = env.home.join("tmp").join(format!("job-{id}"));
    assert!(staging.exists(), "the worker stages its output");
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    wait_for(
        || {
            !Path::new(&format!("/proc/{pid}/stat")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z")
        },
        "the worker to die",
    );

    // The next registry operation notices, marks the job failed and removes the partial output.
    let jobs = env.json(&["jobs", "list"]);
    assert_eq!(jobs[0]["state"], "failed", "{jobs}");
    assert!(jobs[0]["error"].as_str().unwrap().contains("died"));
    assert!(env.json(&["saved", "list"]).as_array().unwrap().is_empty());
    assert!(!staging.exists(), "partial output removed");
    let output = env.fails(&["jobs", "wait", &id]);
    assert!(stderr(&output).contains("failed"));
    // The trained model can still be saved.
    env.save(&trained);
}

#[test]
fn cancel_stops_a_running_job() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let output = env
        .cmd()
        .args(["--json", "trained", "save", &trained, "--background"])
        .args(["--test-progress-delay-ms", "300"])
        .output()
        .unwrap();
    let id = serde_json::from_slice::<Value>(&output.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(
        || job_record(&env.home, &id)["state"] == "running",
        "the worker to start",
    );
    let cancelled = env.json(&["jobs", "cancel", &id]);
    assert_eq!(cancelled["state"], "cancelled");
    assert!(!env.home.join("tmp").join(format!("job-{id}")).exists());
    assert!(env.json(&["saved", "list"]).as_array().unwrap().is_empty());
}

#[test]
fn concurrent_saves_of_one_trained_model_both_succeed_with_distinct_names() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let spawn = || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("loraforge"))
            .arg("--home")
            .arg(&env.home)
            .args(["--json", "trained", "save", &trained])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let saved = names(&env.json(&["saved", "list"]));
    assert_eq!(saved.len(), 2);
    assert_ne!(saved[0], saved[1]);
}

#[test]
fn bad_input_gives_clear_errors_and_leaves_the_store_unchanged() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let before = env.snapshot();
    let base = env.demo.base_dir.to_str().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "base".into(),
                "add".into(),
                base.into(),
                "--name".into(),
                "../evil".into(),
            ],
            "technical name",
        ),
        (
            vec![
                "base".into(),
                "add".into(),
                base.into(),
                "--name".into(),
                "tiny".into(),
            ],
            "already exists",
        ),
        (
            vec![
                "base".into(),
                "add".into(),
                "/nonexistent/model".into(),
                "--name".into(),
                "gone".into(),
            ],
            "/nonexistent/model",
        ),
        (
            vec![
                "trained".into(),
                "add".into(),
                env.demo.trainer_dir.to_str().unwrap().into(),
                "--base".into(),
                "tiny".into(),
                "--train-name".into(),
                "../up".into(),
            ],
            "..",
        ),
        (
            vec![
                "trained".into(),
                "add".into(),
                env.demo.base_dir.to_str().unwrap().into(),
                "--base".into(),
                "tiny".into(),
                "--train-name".into(),
                "x".into(),
            ],
            "no checkpoint-N",
        ),
        (
            vec![
                "trained".into(),
                "add".into(),
                env.demo.trainer_dir.to_str().unwrap().into(),
                "--base".into(),
                "nobase".into(),
                "--train-name".into(),
                "x".into(),
            ],
            "no base model named 'nobase'",
        ),
        (
            vec!["saved".into(), "show".into(), "nope".into()],
            "no saved model named 'nope'",
        ),
        (vec!["jobs".into(), "show".into(), "ffff".into()], "no job"),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = env.fails(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: user errors exit 2: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: expected '{expected}' in: {}",
            stderr(&output)
        );
        assert_eq!(env.snapshot(), before, "{args:?} changed the store");
    }

    // An adapter folder without adapter_config.json.
    let work = tempfile::tempdir().unwrap();
    let adapter = work.path().join("adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    std::fs::copy(
        env.demo.trainer_dir.join("adapter_model.safetensors"),
        adapter.join("adapter_model.safetensors"),
    )
    .unwrap();
    std::fs::create_dir_all(adapter.join("checkpoint-5")).unwrap();
    let output = env.fails(&[
        "trained",
        "add",
        adapter.to_str().unwrap(),
        "--base",
        "tiny",
        "--train-name",
        "x",
    ]);
    assert!(
        stderr(&output).contains("adapter_config.json"),
        "{}",
        stderr(&output)
    );

    // A malformed trainer_state.json names the file.
    let broken = work.path().join("broken");
    copy_dir(&env.demo.trainer_dir, &broken);
    std::fs::write(broken.join("trainer_state.json"), "{\"log_history\": [").unwrap();
    let output = env.fails(&[
        "trained",
        "add",
        broken.to_str().unwrap(),
        "--base",
        "tiny",
        "--train-name",
        "x",
    ]);
    assert!(
        stderr(&output).contains("trainer_state.json"),
        "{}",
        stderr(&output)
    );
    assert_eq!(env.snapshot(), before);

    // A base whose folder vanished: saving fails clearly and nothing is published.
    let moved = work.path().join("moved");
    std::fs::rename(&env.demo.base_dir, &moved).unwrap();
    let output = env.fails(&["trained", "save", &trained]);
    assert!(stderr(&output).contains("is gone"), "{}", stderr(&output));
    std::fs::rename(&moved, &env.demo.base_dir).unwrap();
    assert!(env.json(&["saved", "list"]).as_array().unwrap().is_empty());
    assert!(
        std::fs::read_dir(env.home.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no staging left"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_held_store_lock_gives_a_clear_error() {
    let env = env();
    env.add_base();
    let before = env.snapshot();
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(env.home.join("lock"))
        .unwrap();
    lock.lock().unwrap();
    let output = env
        .cmd()
        .env("LORAFORGE_LOCK_TIMEOUT", "0.3")
        .args([
            "trained",
            "add",
            env.demo.trainer_dir.to_str().unwrap(),
            "--base",
            "tiny",
            "--train-name",
            "x",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("locked by another loraforge process"),
        "{}",
        stderr(&output)
    );
    assert_eq!(env.snapshot(), before);
    drop(lock);
}

#[test]
fn deploy_to_ollama_list_check_and_remove() {
    let fake = ollama_fake::FakeOllama::spawn().unwrap();
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let saved = env.save(&trained);
    let record = env.json(&[
        "saved",
        "deploy",
        &saved,
        "--quant",
        "q4_K_M",
        "--host",
        &fake.url(),
        "--smoke-test",
    ]);
    let name = record["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with(&format!("{saved}_d_")) && name.ends_with("_q4_K_M"),
        "{name}"
    );
    assert_eq!(
        fake.model_names().len(),
        1,
        "the model exists on the server"
    );
    let create = &fake.create_requests()[0];
    assert!(
        create["template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>"),
        "base template used"
    );
    let stops: Vec<&str> = create["parameters"]["stop"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        stops.contains(&"<|im_end|>"),
        "EOS added as a stop: {stops:?}"
    );
    let digest = record["digest"].as_str().unwrap();
    let blob = fake.blob(digest).unwrap();
    assert_eq!(&blob.head[..4], b"GGUF");

    // A second deploy reuses the exported GGUF and the uploaded blob.
    let uploads = fake.count("POST", &format!("/api/blobs/{digest}"));
    let second = env.json(&[
        "saved",
        "deploy",
        &saved,
        "--quant",
        "q4_K_M",
        "--host",
        &fake.url(),
    ]);
    assert_eq!(second["digest"], digest);
    assert_eq!(second["export_seconds"], 0.0, "export cache reused");
    assert_eq!(
        fake.count("POST", &format!("/api/blobs/{digest}")),
        uploads,
        "blob not uploaded again"
    );

    let listed = env.json(&["deployed", "list", "--check"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["status"] == "present"));
    let card = env.json(&["deployed", "show", &name]);
    assert_eq!(card["lineage"].as_array().unwrap().len(), 4);
    assert_eq!(card["lineage"][3]["quantization"], "q4_K_M");

    // --server-quantize uploads an F16 GGUF and asks Ollama to quantize it.
    let server = env.json(&[
        "saved",
        "deploy",
        &saved,
        "--quant",
        "q4_K_S",
        "--host",
        &fake.url(),
        "--server-quantize",
    ]);
    assert_eq!(server["server_quantize"], true);
    let create = fake.create_requests().last().unwrap().clone();
    assert_eq!(
        create["quantize"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("q4_k_s")
    );
    assert_ne!(server["digest"], digest, "a different (F16) blob");

    // Saved models can go; deployments stay.
    env.ok(&["saved", "rm", &saved]);
    assert_eq!(env.json(&["deployed", "list"]).as_array().unwrap().len(), 3);

    env.ok(&["deployed", "rm", &name]);
    assert!(!fake.model_names().contains(&name));
    assert_eq!(env.json(&["deployed", "list"]).as_array().unwrap().len(), 2);
}

#[test]
fn a_failed_smoke_test_deletes_the_model_and_records_nothing() {
    let fake = ollama_fake::FakeOllama::spawn().unwrap();
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let saved = env.save(&trained);
    fake.inject(ollama_fake::Fault::Status {
        method: "POST",
        path: "/api/generate",
        status: 500,
        message: "llama runner process has terminated: error loading model".into(),
        times: 1,
    });
    let output = env.fails(&[
        "saved",
        "deploy",
        &saved,
        "--quant",
        "q8_0",
        "--host",
        &fake.url(),
        "--smoke-test",
    ]);
    let err = stderr(&output);
    assert!(err.contains("smoke test"), "{err}");
    assert!(err.contains("deleted from the server again"), "{err}");
    assert!(err.contains("error loading model"), "{err}");
    assert_eq!(
        fake.count("POST", "/api/create"),
        1,
        "the model was created"
    );
    assert_eq!(fake.count("DELETE", "/api/delete"), 1);
    assert!(fake.model_names().is_empty(), "and deleted again");
    assert!(env
        .json(&["deployed", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn deploy_refuses_changed_files_and_unreachable_servers_record_nothing() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let saved = env.save(&trained);
    // Nothing listens on port 9 of localhost.
    let output = env.fails(&[
        "saved",
        "deploy",
        &saved,
        "--quant",
        "q8_0",
        "--host",
        "http://127.0.0.1:9",
    ]);
    assert!(
        stderr(&output).contains("ollama serve"),
        "{}",
        stderr(&output)
    );
    assert!(env
        .json(&["deployed", "list"])
        .as_array()
        .unwrap()
        .is_empty());

    let fake = ollama_fake::FakeOllama::spawn().unwrap();
    let config = env
        .home
        .join("saved")
        .join(&saved)
        .join("model")
        .join("config.json");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push(' ');
    std::fs::write(&config, text).unwrap();
    let output = env.fails(&[
        "saved",
        "deploy",
        &saved,
        "--quant",
        "q8_0",
        "--host",
        &fake.url(),
    ]);
    assert!(
        stderr(&output).contains("changed since it was saved"),
        "{}",
        stderr(&output)
    );
    assert!(fake.model_names().is_empty());
    assert!(env
        .json(&["deployed", "list"])
        .as_array()
        .unwrap()
        .is_empty());

    // deployed rm against an unreachable server keeps the record unless --forget.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().trim_end(),
    )
    .unwrap();
    let record = env.json(&[
        "saved",
        "deploy",
        &saved,
        "--quant",
        "q8_0",
        "--host",
        &fake.url(),
    ]);
    let name = record["name"].as_str().unwrap().to_string();
    drop(fake);
    let output = env.fails(&["deployed", "rm", &name]);
    assert!(
        stderr(&output).contains("ollama serve"),
        "{}",
        stderr(&output)
    );
    assert_eq!(names(&env.json(&["deployed", "list"])), vec![name.clone()]);
    env.ok(&["deployed", "rm", &name, "--forget"]);
    assert!(env
        .json(&["deployed", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn saved_verify_reads_every_file_even_one_whose_time_was_put_back() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let saved = env.save(&trained);
    let files = env.json(&["saved", "verify", &saved]);
    let files = files.as_array().unwrap();
    assert!(files
        .iter()
        .any(|f| f["path"].as_str().unwrap().ends_with(".safetensors")));

    // Altered in place with the same size, and its time set back to what the save stamped: a
    // deploy's quick check would take it as saved; the full check does not.
    let weights = files
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with(".safetensors"))
        .unwrap();
    let name = weights["path"].as_str().unwrap();
    let path = env.home.join("saved").join(&saved).join("model").join(name);
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let output = env.fails(&["saved", "verify", &saved]);
    let err = stderr(&output);
    assert!(err.contains(name), "{err}");
    assert!(err.contains("changed since it was saved"), "{err}");
}

#[test]
fn low_level_commands_merge_convert_quantize_inspect() {
    let env = env();
    let work = tempfile::tempdir().unwrap();
    let merged = work.path().join("merged");
    let out = env.json(&[
        "merge",
        "--base",
        env.demo.base_dir.to_str().unwrap(),
        "--adapter",
        env.demo.trainer_dir.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(out["tensors_changed"], 4, "q_proj and v_proj of 2 layers");
    // no hashing unless asked; with --sha256 every file's own digest
    let files = out["files"].as_array().unwrap();
    assert!(files.iter().all(|f| f["sha256"].is_null()), "{files:?}");
    let hashed_dir = work.path().join("merged-sha");
    let hashed = env.json(&[
        "merge",
        "--base",
        env.demo.base_dir.to_str().unwrap(),
        "--adapter",
        env.demo.trainer_dir.to_str().unwrap(),
        "--out",
        hashed_dir.to_str().unwrap(),
        "--sha256",
    ]);
    for f in hashed["files"].as_array().unwrap() {
        let bytes = std::fs::read(hashed_dir.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(
            f["sha256"].as_str(),
            Some(sha256_hex(&bytes).as_str()),
            "{f}"
        );
    }
    let output = env.fails(&[
        "merge",
        "--base",
        env.demo.base_dir.to_str().unwrap(),
        "--adapter",
        env.demo.trainer_dir.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(stderr(&output).contains("exists"), "{}", stderr(&output));

    // The demo model is bf16: `convert --outtype q4_K_S` quantizes from a lossless bf16 export.
    let f16 = work.path().join("m.bf16.gguf");
    env.ok(&[
        "convert",
        merged.to_str().unwrap(),
        f16.to_str().unwrap(),
        "--outtype",
        "bf16",
    ]);
    let q = work.path().join("m.q4_K_S.gguf");
    let report = env.json(&[
        "quantize",
        f16.to_str().unwrap(),
        q.to_str().unwrap(),
        "Q4_K_S",
    ]);
    assert_eq!(report["ftype"], "Q4_K_S");
    let inspected = env.json(&["inspect", q.to_str().unwrap()]);
    let types = inspected["type_counts"].as_object().unwrap();
    assert!(types.contains_key("q4_K"), "{types:?}");
    let via_convert = work.path().join("m2.q4_K_S.gguf");
    env.ok(&[
        "convert",
        merged.to_str().unwrap(),
        via_convert.to_str().unwrap(),
        "--outtype",
        "q4_K_S",
    ]);
    assert!(
        std::fs::read(&q).unwrap() == std::fs::read(&via_convert).unwrap(),
        "one library path"
    );
    // `convert --adapter`: the merge in the same pass, the same bytes as merge then convert
    // (of a merged folder named like the base, which gives `general.name`).
    let base_name = env.demo.base_dir.file_name().unwrap();
    let same_name = work.path().join("same-name").join(base_name);
    env.ok(&[
        "merge",
        "--base",
        env.demo.base_dir.to_str().unwrap(),
        "--adapter",
        env.demo.trainer_dir.to_str().unwrap(),
        "--out",
        same_name.to_str().unwrap(),
    ]);
    let chain = work.path().join("chain.q4_K_S.gguf");
    env.ok(&[
        "convert",
        same_name.to_str().unwrap(),
        chain.to_str().unwrap(),
        "--outtype",
        "q4_K_S",
    ]);
    let one_pass = work.path().join("one-pass.q4_K_S.gguf");
    let report = env.json(&[
        "convert",
        env.demo.base_dir.to_str().unwrap(),
        one_pass.to_str().unwrap(),
        "--adapter",
        env.demo.trainer_dir.to_str().unwrap(),
        "--outtype",
        "q4_K_S",
    ]);
    assert_eq!(report["file_type"], 14, "{report}");
    assert!(
        std::fs::read(&chain).unwrap() == std::fs::read(&one_pass).unwrap(),
        "convert --adapter = merge + convert"
    );
    let missing = work.path().join("no-adapter");
    let output = env.fails(&[
        "convert",
        env.demo.base_dir.to_str().unwrap(),
        one_pass.to_str().unwrap(),
        "--adapter",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "a user error");
    assert!(
        stderr(&output).contains("no-adapter"),
        "{}",
        stderr(&output)
    );

    let output = env.fails(&[
        "quantize",
        f16.to_str().unwrap(),
        q.to_str().unwrap(),
        "q3_K_X",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("Q4_K_M"),
        "lists valid types: {}",
        stderr(&output)
    );
}

#[test]
fn demo_runs_the_whole_lifecycle_and_deploys_when_ollama_answers() {
    let fake = ollama_fake::FakeOllama::spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::cargo_bin("loraforge")
        .unwrap()
        .args([
            "--home",
            dir.path().to_str().unwrap(),
            "--json",
            "demo",
            "--host",
            &fake.url(),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let deployed = summary["deployed"]["name"].as_str().unwrap();
    let saved = summary["saved"]["name"].as_str().unwrap();
    assert!(
        deployed.starts_with(saved) && deployed.ends_with("_q4_K_M"),
        "{deployed}"
    );
    assert_eq!(fake.model_names().len(), 1);
    assert_eq!(
        fake.count("POST", "/api/generate"),
        1,
        "one-token smoke test"
    );

    // Without a server the demo still completes every local step and says what to do next.
    let output = Command::cargo_bin("loraforge")
        .unwrap()
        .args([
            "--home",
            dir.path().to_str().unwrap(),
            "demo",
            "--host",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("next step") && text.contains("loraforge saved deploy"),
        "{text}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn unusable_input_to_merge_exits_2_and_failures_say_so_once() {
    let env = env();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("merged");
    // An adapter folder that does not exist.
    let output = env.fails(&[
        "merge",
        "--base",
        env.demo.base_dir.to_str().unwrap(),
        "--adapter",
        work.path().join("nope").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("error: "),
        "{}",
        stderr(&output)
    );
    // An output folder that exists.
    std::fs::create_dir_all(&out).unwrap();
    let output = env.fails(&[
        "merge",
        "--base",
        env.demo.base_dir.to_str().unwrap(),
        "--adapter",
        env.demo.trainer_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("exists"), "{}", stderr(&output));
}

#[test]
fn unusable_input_to_convert_quantize_and_inspect_exits_2() {
    let env = env();
    let work = tempfile::tempdir().unwrap();
    let not_gguf = work.path().join("not.gguf");
    std::fs::write(&not_gguf, b"this is not a GGUF file").unwrap();
    let out = work.path().join("out.gguf");
    let no_model = work.path().join("empty");
    std::fs::create_dir_all(&no_model).unwrap();
    let missing = work.path().join("missing.gguf");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "convert",
            no_model.to_str().unwrap(),
            out.to_str().unwrap(),
            "--outtype",
            "f16",
        ],
        vec![
            "quantize",
            not_gguf.to_str().unwrap(),
            out.to_str().unwrap(),
            "Q8_0",
        ],
        vec!["inspect", not_gguf.to_str().unwrap()],
        vec!["inspect", missing.to_str().unwrap()],
    ];
    for args in cases {
        let output = env.fails(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: unusable input exits 2: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).starts_with("error: "),
            "{}",
            stderr(&output)
        );
    }
    assert!(!out.exists());
}

#[test]
fn a_refusal_from_a_running_ollama_is_not_blamed_on_a_stopped_server() {
    let env = env();
    env.add_base();
    let trained = env.add_trained();
    let saved = env.save(&trained);
    let fake = ollama_fake::FakeOllama::spawn().unwrap();
    fake.inject(ollama_fake::Fault::Status {
        method: "POST",
        path: "/api/create",
        status: 400,
        message: "invalid template".into(),
        times: 10,
    });
    let output = env.fails(&[
        "saved",
        "deploy",
        &saved,
        "--quant",
        "q8_0",
        "--host",
        &fake.url(),
    ]);
    let text = stderr(&output);
    assert!(text.contains("invalid template"), "{text}");
    assert!(!text.contains("is Ollama running"), "{text}");
    assert!(text.contains("hint: "), "{text}");
    assert!(env
        .json(&["deployed", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn file_sha256(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// The names in a folder (to see that no temporary folder was left behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn convert_lora_writes_the_scripts_file_and_refuses_dora() {
    let e = env();
    let peft = fixtures().join("peft");
    let out_dir = tempfile::tempdir().unwrap();
    for (outtype, reference) in [
        (None, "ref-a_llama_qv-f32.gguf"),
        (Some("q8_0"), "ref-a_llama_qv-q8_0.gguf"),
    ] {
        let out = out_dir.path().join(reference);
        let mut args = vec![
            "convert-lora".to_owned(),
            peft.join("a_llama_qv/adapter").to_str().unwrap().to_owned(),
            out.to_str().unwrap().to_owned(),
            "--base".into(),
            peft.join("a_llama_qv/base").to_str().unwrap().to_owned(),
            "--sha256".into(),
        ];
        args.extend(
            outtype
                .map(|t| ["--outtype".to_owned(), t.to_owned()])
                .into_iter()
                .flatten(),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = e.json(&args);
        let want = file_sha256(&fixtures().join("lora-gguf").join(reference));
        assert_eq!(report["sha256"], want.as_str(), "{reference}");
        assert_eq!(file_sha256(&out), want, "{reference}");
        assert_eq!(report["architecture"], "llama");
    }

    let out = out_dir.path().join("dora.gguf");
    let output = e.fails(&[
        "convert-lora",
        peft.join("e_llama_dora/adapter").to_str().unwrap(),
        out.to_str().unwrap(),
        "--base",
        peft.join("e_llama_dora/base").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("DoRA"), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("hint: merge the adapter"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists());

    let output = e.fails(&[
        "convert-lora",
        peft.join("a_llama_qv/adapter").to_str().unwrap(),
        out.to_str().unwrap(),
        "--base",
        peft.join("a_llama_qv/base").to_str().unwrap(),
        "--outtype",
        "q4_K_M",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn merge_save_method_merged_4bit_is_transformers_bnb_save_and_leaves_no_temp() {
    let e = env();
    let case = fixtures().join("peft/a_llama_qv");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m4");
    let merge = |out: &Path, case: &Path, extra: &[&str]| {
        let mut args = vec![
            "merge",
            "--base",
            case.join("base").to_str().unwrap(),
            "--adapter",
            case.join("adapter").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--save-method",
            "merged_4bit",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        e.cmd().args(&args).output().unwrap()
    };
    let output = merge(&out, &case, &["--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["save_method"], "merged_4bit");
    assert!(report["nf4"]["quantized"].as_u64().unwrap() > 0);
    let reference = fixtures().join("nf4/a_llama_qv");
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        assert_eq!(
            file_sha256(&out.join(f)),
            file_sha256(&reference.join(f)),
            "{f} differs from transformers + bitsandbytes"
        );
    }
    assert_eq!(listing(dir.path()), ["m4"]);

    // An existing output is refused before any work, unless --force.
    let output = merge(&out, &case, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--force"), "{}", stderr(&output));
    let output = merge(&out, &case, &["--force"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        file_sha256(&out.join("model.safetensors")),
        file_sha256(&reference.join("model.safetensors"))
    );
    assert_eq!(listing(dir.path()), ["m4"]);

    // A failure after the merge (gpt2 has no NF4 layout here) removes the temporary folder too.
    let gpt2 = dir.path().join("gpt2");
    let output = merge(&gpt2, &fixtures().join("peft/f_gpt2_conv1d"), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("gpt2"), "{}", stderr(&output));
    assert_eq!(listing(dir.path()), ["m4"]);

    // The default stays merged_16bit: the folder PEFT's merge_and_unload + save_pretrained writes.
    let m16 = dir.path().join("m16");
    e.ok(&[
        "merge",
        "--base",
        case.join("base").to_str().unwrap(),
        "--adapter",
        case.join("adapter").to_str().unwrap(),
        "--out",
        m16.to_str().unwrap(),
    ]);
    assert_eq!(
        file_sha256(&m16.join("model.safetensors")),
        file_sha256(&case.join("expected/model.safetensors"))
    );
}

/// A copy of `base` with element 0 of tensor `tensor` in its `model.safetensors` set to +inf
/// (a bf16 model: 0x7F80).
fn base_with_inf(base: &Path, into: &Path, tensor: &str) {
    copy_dir(base, into);
    let path = into.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header[tensor]["dtype"], "BF16");
    let at = 8 + n + header[tensor]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at..at + 2].copy_from_slice(&0x7F80u16.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn merged_4bit_refuses_inf_naming_the_tensor_and_leaves_nothing() {
    let e = env();
    let case = fixtures().join("peft/a_llama_qv");
    let dir = tempfile::tempdir().unwrap();
    // q_proj carries LoRA (the merge finds the inf), down_proj does not (the NF4 pass does).
    for (tensor, says) in [
        ("model.layers.0.self_attn.q_proj.weight", "non-finite"),
        ("model.layers.1.mlp.down_proj.weight", "non-finite"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let base = work.path().join("base");
        base_with_inf(&case.join("base"), &base, tensor);
        let out = dir.path().join("m4");
        let output = e.fails(&[
            "merge",
            "--base",
            base.to_str().unwrap(),
            "--adapter",
            case.join("adapter").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--save-method",
            "merged_4bit",
        ]);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{err}");
        assert!(err.contains(tensor) && err.contains(says), "{err}");
        // neither the output nor a temporary folder is left
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    }
}

#[test]
fn trained_export_writes_the_peft_folder_and_saved_export_merged_4bit() {
    let e = env();
    e.add_base();
    let trained = e.add_trained();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lora");
    let report = e.json(&[
        "trained",
        "export",
        &trained,
        "--out",
        out.to_str().unwrap(),
        "--gguf",
    ]);
    assert_eq!(report["save_method"], "lora");
    let stored = e.home.join("trained").join(&trained).join("adapter");
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        assert_eq!(
            file_sha256(&out.join(f)),
            file_sha256(&stored.join(f)),
            "{f}"
        );
    }
    assert!(out.join("tokenizer.json").is_file() || out.join("tokenizer_config.json").is_file());
    assert!(out.join("adapter.gguf").is_file());
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(readme.contains("library_name: peft"), "{readme}");
    assert!(readme.contains("## Export"), "{readme}");
    assert!(readme.contains("adapter.gguf"), "{readme}");
    // An existing non-empty --out is refused.
    let output = e.fails(&[
        "trained",
        "export",
        &trained,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(listing(dir.path()), ["lora"]);

    let saved = e.save(&trained);
    let m4 = dir.path().join("m4");
    let report = e.json(&[
        "saved",
        "export",
        &saved,
        "--format",
        "merged_4bit",
        "--out",
        m4.to_str().unwrap(),
    ]);
    assert_eq!(report["save_method"], "merged_4bit");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(m4.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization_config"]["bnb_4bit_quant_type"], "nf4");
    assert!(std::fs::read_to_string(m4.join("README.md"))
        .unwrap()
        .contains("merged_4bit"));
    assert_eq!(listing(dir.path()), ["lora", "m4"]);
}

/// `saved export --format gguf --quant A,B,…`: one `NAME.TYPE.gguf` per type (repeats once,
/// any case) from one read of the lossless GGUF, each identical to `loraforge quantize` of that
/// lossless file (the single-type path), plus the card; bad combinations exit 2.
#[test]
fn saved_export_gguf_writes_several_types_in_one_pass() {
    let e = env();
    e.add_base();
    let trained = e.add_trained();
    let saved = e.save(&trained);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gguf");
    let report = e.json(&[
        "saved",
        "export",
        &saved,
        "--format",
        "gguf",
        "--quant",
        "q4_K_M,Q5_K_M,q8_0,no_quantization,q4_k_m,q3_K_S",
        "--out",
        out.to_str().unwrap(),
    ]);
    let files = report.as_array().unwrap();
    let types: Vec<&str> = files
        .iter()
        .map(|f| f["file_type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 5, "{report}");
    for t in ["q4_K_M", "q5_K_M", "q8_0", "q3_K_S"] {
        assert!(types.contains(&t), "{t}: {types:?}");
    }
    let lossless = types
        .iter()
        .find(|t| !t.starts_with('q'))
        .map(|t| out.join(format!("{saved}.{t}.gguf")))
        .unwrap();
    assert!(lossless.is_file());
    for t in ["q4_K_M", "q5_K_M", "q8_0", "q3_K_S"] {
        let ours = out.join(format!("{saved}.{t}.gguf"));
        let single = dir.path().join(format!("single.{t}.gguf"));
        e.ok(&[
            "quantize",
            lossless.to_str().unwrap(),
            single.to_str().unwrap(),
            t,
        ]);
        assert_eq!(file_sha256(&ours), file_sha256(&single), "{t}");
        let listed = files.iter().find(|f| f["file_type"] == t).unwrap();
        assert_eq!(
            listed["sha256"].as_str().unwrap(),
            file_sha256(&ours),
            "{t}"
        );
    }
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains("## Export") && readme.contains("q5_K_M"),
        "{readme}"
    );

    let fails = |args: &[&str]| {
        let output = e.fails(args);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        stderr(&output)
    };
    let other = dir.path().join("other");
    let o = other.to_str().unwrap();
    let err = fails(&["saved", "export", &saved, "--format", "gguf", "--out", o]);
    assert!(err.contains("--quant"), "{err}");
    let err = fails(&[
        "saved",
        "export",
        &saved,
        "--format",
        "merged_16bit",
        "--quant",
        "q8_0",
        "--out",
        o,
    ]);
    assert!(err.contains("--format gguf"), "{err}");
    fails(&[
        "saved",
        "export",
        &saved,
        "--format",
        "gguf",
        "--quant",
        "q4_K_M,iq2_xs",
        "--out",
        o,
    ]);
    // An existing non-empty --out is refused.
    fails(&[
        "saved",
        "export",
        &saved,
        "--format",
        "gguf",
        "--quant",
        "q8_0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!other.exists());
}
