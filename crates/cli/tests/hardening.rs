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
