//! Issue 11 at the command line: bounded `--threads`, temporaries removed on SIGTERM/SIGINT,
//! outputs that are not regular files refused.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn loraforge() -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("loraforge"));
    cmd.env_remove("OLLAMA_HOST").env_remove("LORAFORGE_HOME");
    cmd
}

fn demo(dir: &Path) -> loraforge_demo::DemoFiles {
    loraforge_demo::generate(&dir.join("files"), &loraforge_demo::DemoSpec::default()).unwrap()
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn merge_args(demo: &loraforge_demo::DemoFiles, out: &Path) -> Vec<String> {
    vec![
        "merge".into(),
        "--base".into(),
        demo.base_dir.display().to_string(),
        "--adapter".into(),
        demo.trainer_dir.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ]
}

#[test]
fn zero_and_absurd_thread_counts_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let out = dir.path().join("merged");
    for (threads, says) in [("0", "at least 1"), ("100000", "use at most")] {
        let mut args = merge_args(&demo, &out);
        args.extend(["--threads".into(), threads.into()]);
        let started = Instant::now();
        let output = loraforge().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(text(&output).contains(says), "{}", text(&output));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(!out.exists());
        for command in [
            vec!["convert", "m", "o.gguf", "--threads", threads],
            vec!["quantize", "i.gguf", "o.gguf", "q8_0", "--threads", threads],
        ] {
            let output = loraforge().args(&command).output().unwrap();
            assert_eq!(output.status.code(), Some(2), "{}", text(&output));
            assert!(text(&output).contains(says), "{}", text(&output));
        }
    }
}

/// Entries of `dir` whose name marks a loraforge temporary.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".loraforge-tmp-"))
        .collect()
}

#[cfg(unix)]
#[test]
fn a_merge_stopped_by_sigterm_or_sigint_leaves_no_staging_folder() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    for (signal, name) in [(libc::SIGTERM, "term"), (libc::SIGINT, "int")] {
        let work = dir.path().join(name);
        std::fs::create_dir(&work).unwrap();
        let out = work.join("merged");
        let mut child = loraforge()
            .args(merge_args(&demo, &out))
            .env("LORAFORGE_TEST_PROGRESS_DELAY_MS", "200")
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while temporaries(&work).is_empty() {
            assert!(Instant::now() < deadline, "the merge never staged anything");
            assert!(child.try_wait().unwrap().is_none(), "merge ended too early");
            std::thread::sleep(Duration::from_millis(20));
        }
        // the staging folder is being written: stop the run
        std::thread::sleep(Duration::from_millis(300));
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + signal), "{name}");
        assert!(
            temporaries(&work).is_empty(),
            "{name}: {:?}",
            temporaries(&work)
        );
        assert!(!out.exists());
    }
}

#[cfg(unix)]
#[test]
fn a_merge_onto_a_socket_path_is_refused_and_the_socket_stays() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let out = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&out).unwrap();
    let mut args = merge_args(&demo, &out);
    args.push("--force".into());
    let output = loraforge().args(&args).output().unwrap();
    assert!(!output.status.success());
    assert!(text(&output).contains("a socket"), "{}", text(&output));
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&out)
        .unwrap()
        .file_type()
        .is_socket());
}

#[cfg(unix)]
#[test]
fn convert_and_quantize_refuse_outputs_that_are_not_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let gguf = dir.path().join("m.bf16.gguf");
    let output = loraforge()
        .args(["convert", &demo.base_dir.display().to_string()])
        .arg(&gguf)
        .args(["--outtype", "bf16"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let socket = dir.path().join("out.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    for args in [
        vec![
            "convert".to_string(),
            demo.base_dir.display().to_string(),
            socket.display().to_string(),
            "--outtype".into(),
            "q4_K_M".into(),
        ],
        vec![
            "quantize".to_string(),
            gguf.display().to_string(),
            socket.display().to_string(),
            "q8_0".into(),
        ],
    ] {
        let output = loraforge().args(&args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(text(&output).contains("a socket"), "{}", text(&output));
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket());
        assert!(temporaries(dir.path()).is_empty());
    }
}

#[cfg(unix)]
#[test]
fn a_convert_stopped_by_sigterm_leaves_nothing_and_stale_temporaries_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = work.join("m.q4_K_M.gguf");
    let convert = |delay: &str| {
        let mut cmd = loraforge();
        cmd.args(["convert", &demo.base_dir.display().to_string()])
            .arg(&out)
            .args(["--outtype", "q4_K_M"])
            .env("LORAFORGE_TEST_PROGRESS_DELAY_MS", delay)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let mut child = convert("200").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while temporaries(&work).is_empty() {
        assert!(Instant::now() < deadline, "convert never staged anything");
        assert!(
            child.try_wait().unwrap().is_none(),
            "convert ended too early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(128 + libc::SIGTERM));
    assert!(temporaries(&work).is_empty(), "{:?}", temporaries(&work));
    assert!(!out.exists());

    // what a SIGKILL leaves (it cannot be handled) is removed by the next run
    let mut child = convert("200").spawn().unwrap();
    while temporaries(&work).is_empty() {
        assert!(Instant::now() < deadline, "convert never staged anything");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !temporaries(&work).is_empty(),
        "SIGKILL leaves its temporaries"
    );
    let status = convert("0").status().unwrap();
    assert!(status.success());
    assert!(temporaries(&work).is_empty(), "{:?}", temporaries(&work));
    assert!(out.is_file());
}

// ----- crash points (LORAFORGE_TEST_CRASH_AT: the process SIGKILLs itself at a named point) -----

/// A store with the demo base and trained model registered.
struct Store {
    home: PathBuf,
    trained: String,
}

fn store(dir: &Path, demo: &loraforge_demo::DemoFiles) -> Store {
    let home = dir.join("store");
    let base = demo.base_dir.display().to_string();
    let template = demo.template.display().to_string();
    run_ok(
        &home,
        &[
            "base",
            "add",
            &base,
            "--name",
            "tiny",
            "--template",
            &template,
        ],
    );
    let trainer = demo.trainer_dir.display().to_string();
    let trained = run_json(
        &home,
        &[
            "trained",
            "add",
            &trainer,
            "--base",
            "tiny",
            "--train-name",
            "crash",
        ],
    );
    Store {
        home,
        trained: trained["name"].as_str().unwrap().to_string(),
    }
}

fn in_store(home: &Path) -> Command {
    let mut cmd = loraforge();
    cmd.arg("--home").arg(home);
    cmd
}

fn run_ok(home: &Path, args: &[&str]) -> String {
    let output = in_store(home).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", text(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn run_json(home: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&run_ok(home, &all)).unwrap()
}

/// Run `args` with the crash point set; the process must die by SIGKILL there.
fn crash_at(home: Option<&Path>, point: &str, args: &[&str]) {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = match home {
        Some(home) => in_store(home),
        None => loraforge(),
    };
    let output = cmd
        .args(args)
        .env("LORAFORGE_TEST_CRASH_AT", point)
        .output()
        .unwrap();
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGKILL),
        "{args:?} at {point}: {:?} {}",
        output.status,
        text(&output)
    );
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Age a job record past the queue grace (as if the time had passed).
fn age_job(home: &Path, id: &str) {
    let path = home.join("jobs").join(format!("{id}.json"));
    let mut job: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    job["created"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&path, serde_json::to_vec(&job).unwrap()).unwrap();
}

#[cfg(unix)]
#[test]
fn trained_save_killed_at_each_point_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let s = store(dir.path(), &demo);
    let mut saved_so_far = Vec::new();
    for point in ["job-queued", "job-running", "save-staged", "save-published"] {
        crash_at(Some(&s.home), point, &["trained", "save", &s.trained]);
        let jobs = run_json(&s.home, &["jobs", "list"]);
        let job = jobs.as_array().unwrap().last().unwrap().clone();
        let id = job["id"].as_str().unwrap().to_string();
        if point == "job-queued" {
            // Its owner is dead, but a worker may still be about to start it: queued for the
            // grace period, then `jobs wait` settles it instead of waiting forever.
            assert_eq!(job["state"], "queued", "{point}: {job}");
            age_job(&s.home, &id);
            let started = Instant::now();
            let output = in_store(&s.home)
                .args(["jobs", "wait", &id, "--timeout", "20"])
                .output()
                .unwrap();
            assert!(!output.status.success(), "still queued: {}", text(&output));
            assert!(started.elapsed() < Duration::from_secs(20));
            assert!(
                text(&output).contains("no worker ever started it"),
                "{}",
                text(&output)
            );
        }
        let job = run_json(&s.home, &["jobs", "show", &id]);
        let saved = run_json(&s.home, &["saved", "list"]);
        if point == "save-published" {
            // The model was renamed into place before the job record said so: it succeeded.
            assert_eq!(job["state"], "succeeded", "{point}: {job}");
            let result = job["result"].as_str().unwrap().to_string();
            saved_so_far.push(result.clone());
            let record = saved
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == *result);
            assert_eq!(record.unwrap()["job"].as_str(), Some(id.as_str()));
        } else {
            assert_eq!(job["state"], "failed", "{point}: {job}");
            let error = job["error"].as_str().unwrap();
            assert!(
                error.contains("died") || error.contains("no worker"),
                "{point}: {error}"
            );
        }
        assert_eq!(names(&saved), saved_so_far, "{point}");
        assert!(
            listing(&s.home.join("tmp")).is_empty(),
            "{point}: staging left"
        );
    }
    // The store still works.
    let job = run_json(&s.home, &["trained", "save", &s.trained]);
    assert_eq!(job["state"], "succeeded");
}

#[cfg(unix)]
#[test]
fn saved_deploy_killed_at_each_point_records_only_what_the_server_has() {
    let fake = ollama_fake::FakeOllama::spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let s = store(dir.path(), &demo);
    let job = run_json(&s.home, &["trained", "save", &s.trained]);
    let saved = job["result"].as_str().unwrap().to_string();
    let url = fake.url();
    let deploy = ["saved", "deploy", &saved, "--quant", "q8_0", "--host", &url];
    let mut on_server = 0;
    let mut recorded = 0;
    for point in [
        "convert-output",
        "export-cached",
        "deploy-created",
        "deploy-published",
    ] {
        crash_at(Some(&s.home), point, &deploy);
        if point == "deploy-created" || point == "deploy-published" {
            on_server += 1;
            // Killed once Ollama has the model: it is recorded either way, never lost track of
            // (before the record was published: by the next command's recovery, as unconfirmed).
            recorded += 1;
        }
        assert_eq!(fake.model_names().len(), on_server, "{point}");
        let deployed = run_json(&s.home, &["deployed", "list"]);
        let deployed = deployed.as_array().unwrap();
        assert_eq!(deployed.len(), recorded, "{point}");
        let unconfirmed = deployed
            .iter()
            .filter(|d| d["notes"].to_string().contains("unconfirmed"))
            .count();
        assert_eq!(
            unconfirmed,
            usize::from(recorded > 0),
            "{point}: {deployed:?}"
        );
        assert!(
            listing(&s.home.join("tmp")).is_empty(),
            "{point}: staging left"
        );
        // The export cache holds a complete pair or a GGUF whose record was never written
        // (exported again next time); never a half-written file.
        let cache = listing(&s.home.join("exports"));
        assert!(
            cache.iter().all(|n| !n.starts_with('.')),
            "{point}: {cache:?}"
        );
    }
    // A deploy after all that succeeds, from a verified cache.
    let record = run_json(&s.home, &deploy);
    let digest = record["digest"].as_str().unwrap();
    let cache = listing(&s.home.join("exports"));
    assert_eq!(cache.len(), 2, "{cache:?}");
    let gguf = s
        .home
        .join("exports")
        .join(cache.iter().find(|n| n.ends_with(".gguf")).unwrap());
    let bytes = std::fs::read(gguf).unwrap();
    use sha2::Digest as _;
    assert_eq!(
        digest,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
    );
    assert_eq!(
        run_json(&s.home, &["deployed", "list"])
            .as_array()
            .unwrap()
            .len(),
        3,
        "the two killed after the create, and this one"
    );
}

#[cfg(unix)]
#[test]
fn convert_and_quantize_killed_at_each_point_leave_the_old_output_or_a_valid_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let base = demo.base_dir.display().to_string();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let out = work.join("m.gguf");
    let out_text = out.display().to_string();
    let inspect = |path: &Path| {
        let output = loraforge()
            .args(["--json", "inspect"])
            .arg(path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };

    // Right after the output was renamed into place: the output is complete. (A k-quant
    // export is one pass: there is no intermediate file to be killed after.)
    let convert = ["convert", &base, &out_text, "--outtype", "q4_K_M"];
    crash_at(None, "convert-output", &convert);
    assert!(inspect(&out)["tensors"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));
    // The next run removes what the killed runs left and replaces the output.
    let output = loraforge().args(convert).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(temporaries(&work).is_empty(), "{:?}", temporaries(&work));

    // quantize: killed after its rename, the output is whole and nothing else is left.
    let f16 = work.join("m.f16.gguf");
    let f16_text = f16.display().to_string();
    let output = loraforge()
        .args(["convert", &base, &f16_text, "--outtype", "f16"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let q = work.join("m.q8_0.gguf");
    let q_text = q.display().to_string();
    crash_at(
        None,
        "quantize-output",
        &["quantize", &f16_text, &q_text, "q8_0"],
    );
    assert!(inspect(&q)["tensors"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));
    assert!(temporaries(&work).is_empty(), "{:?}", temporaries(&work));
}

#[test]
fn a_corrupt_or_stray_record_never_stops_the_store_and_doctor_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let demo = demo(dir.path());
    let s = store(dir.path(), &demo);
    let jobs = s.home.join("jobs");
    std::fs::write(jobs.join("0123abcd.json"), b"{ truncated").unwrap();
    std::fs::write(jobs.join("notes.json"), b"[]").unwrap();
    std::fs::write(jobs.join("README"), b"stray").unwrap();
    let entry = s.home.join("trained").join(&s.trained).join("entry.json");
    std::fs::write(&entry, b"{}").unwrap();

    // Every command still works; the unreadable entry is left out of its list.
    let base = demo.base_dir.display().to_string();
    run_ok(&s.home, &["base", "add", &base, "--name", "tiny2"]);
    assert_eq!(
        run_json(&s.home, &["base", "list"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(run_json(&s.home, &["trained", "list", "--all"])
        .as_array()
        .unwrap()
        .is_empty());
    let output = in_store(&s.home)
        .args(["--json", "jobs", "list"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(listed.as_array().unwrap().is_empty());
    assert!(text(&output).contains("0123abcd.json"), "{}", text(&output));
    assert!(text(&output).contains("notes.json"), "{}", text(&output));

    // `doctor` names each unreadable record and exits non-zero.
    let output = in_store(&s.home).arg("doctor").output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let report = String::from_utf8_lossy(&output.stdout);
    for file in ["0123abcd.json", "notes.json", entry.to_str().unwrap()] {
        assert!(report.contains(file), "{file}: {report}");
    }
    assert!(!report.contains("README"), "{report}");
    std::fs::remove_file(jobs.join("0123abcd.json")).unwrap();
    std::fs::remove_file(jobs.join("notes.json")).unwrap();
    std::fs::remove_dir_all(s.home.join("trained").join(&s.trained)).unwrap();
    run_ok(&s.home, &["doctor"]);
}
