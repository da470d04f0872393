//! `loraforge serve`: the printed address, the token rules at start, and jobs started from the
//! web API running in `loraforge jobs run` worker processes beside the server.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "serve-test-token-5f1e";

fn loraforge(home: &Path) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("loraforge"));
    cmd.arg("--home")
        .arg(home)
        .env_remove("OLLAMA_HOST")
        .env_remove("LORAFORGE_HOME")
        .env_remove("LORAFORGE_SERVE_TOKEN");
    cmd
}

fn ok(home: &Path, args: &[&str]) -> Value {
    let output = loraforge(home).arg("--json").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "loraforge {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The server process, stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request; returns the status code and the body.
fn http(addr: &str, method: &str, path: &str, token: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = loraforge(dir.path())
        .args(["serve", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "a user error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: set LORAFORGE_SERVE_TOKEN"),
        "{stderr}"
    );
}

#[test]
fn serve_prints_its_address_and_saves_run_in_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let demo = loraforge_demo::generate(
        &dir.path().join("files"),
        &loraforge_demo::DemoSpec::default(),
    )
    .unwrap();
    ok(
        &home,
        &[
            "base",
            "add",
            demo.base_dir.to_str().unwrap(),
            "--name",
            "tiny",
        ],
    );
    let trained = ok(
        &home,
        &[
            "trained",
            "add",
            demo.trainer_dir.to_str().unwrap(),
            "--base",
            "tiny",
            "--train-name",
            "web",
        ],
    )["name"]
        .as_str()
        .unwrap()
        .to_string();

    let mut child = loraforge(&home)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("LORAFORGE_SERVE_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line.trim();
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{url}"));
    let (port, query) = rest.split_once('/').unwrap();
    assert_eq!(query, format!("?token={TOKEN}"));
    let addr = format!("127.0.0.1:{port}");

    assert_eq!(http(&addr, "GET", "/", "wrong").0, 401);
    let (status, body) = http(&addr, "GET", "/api/v1/trained", TOKEN);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        ok(&home, &["trained", "list"]),
        "the API answers what `trained list --json` prints"
    );
    let (status, body) = http(
        &addr,
        "POST",
        &format!("/api/v1/trained/{trained}/save"),
        TOKEN,
    );
    assert_eq!(status, 202, "{body}");
    let job: Value = serde_json::from_str(&body).unwrap();
    let id = job["job"].as_str().unwrap();
    let done = ok(&home, &["jobs", "wait", id]);
    assert_eq!(done["state"], "succeeded");
    assert_ne!(
        done["pid"].as_u64().unwrap(),
        u64::from(server.0.id()),
        "the job ran in a worker process, not in the server"
    );
    let saved = ok(&home, &["saved", "list"]);
    assert_eq!(saved[0]["name"], done["result"]);
    let start = Instant::now();
    let (status, body) = http(&addr, "GET", "/saved", TOKEN);
    assert_eq!(status, 200);
    assert!(body.contains(&format!(
        r#"data-name="{}""#,
        done["result"].as_str().unwrap()
    )));
    assert!(start.elapsed() < Duration::from_secs(10));
}
