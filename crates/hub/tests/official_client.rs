//! huggingface_hub's own client against the fake Hub, and loraforge's client on the same folder:
//! the fake must accept what the official client uploads and serve what it downloads, and both
//! clients must leave the same files, bytes and storage kinds (regular / LFS) in the repository.
//!
//! Needs a Python with `huggingface_hub` (tests/python/requirements-hub.txt) named by
//! `LORAFORGE_TEST_HUB_PYTHON`; without it the test prints a note and checks nothing
//! (`./dev.sh test` sets it up and runs it).
#![allow(clippy::unwrap_used)]

use std::process::Command;

use hub_fake::FakeHub;
use loraforge_hub::{ClientOptions, Endpoint, HubClient, PushFile, PushRequest, Token};
use loraforge_progress::NoProgress;

const PYTHON_ENV: &str = "LORAFORGE_TEST_HUB_PYTHON";

#[test]
fn official_client_and_loraforge_leave_the_same_repository() {
    let Some(python) = std::env::var_os(PYTHON_ENV) else {
        eprintln!("note: {PYTHON_ENV} is not set; skipping the huggingface_hub check");
        return;
    };
    // One fake Hub per client, so each uploads every byte itself.
    let start = || {
        let fake = FakeHub::spawn().unwrap();
        fake.add_token("hf_official", "alice", &[], true);
        // Small thresholds so a small folder exercises LFS and multipart.
        fake.set_lfs_threshold(4096);
        fake.set_multipart(64 * 1024, 20 * 1024);
        fake
    };
    let (fake, ours_fake) = (start(), start());

    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "README.md",
            b"---\nbase_model: owner/base\nbase_model_relation: adapter\nlibrary_name: peft\ntags:\n- loraforge\n---\n\n# model\n".to_vec(),
        ),
        ("config.json", br#"{"model_type": "llama"}"#.to_vec()),
        ("sub/notes.txt", vec![b'x'; 6000]),
        ("adapter_model.safetensors", pattern(3000, 1)),
        ("model.gguf", pattern(150_000, 2)),
    ];
    for (name, bytes) in &files {
        std::fs::write(folder.join(name), bytes).unwrap();
    }

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/python/check_hub.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(fake.url())
        .arg("hf_official")
        .arg("alice/official")
        .arg(&folder)
        .arg(dir.path().join("py"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check_hub.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["pass"], true);
    // Multipart was used by the official client (one 150 kB file in 20 kB parts).
    assert!(fake.count("POST", "/lfs-complete/") >= 1);
    assert_eq!(fake.storage_auth_violations(), 0);

    let client = HubClient::new(
        Endpoint::parse(&ours_fake.url()).unwrap(),
        Token::new("hf_official"),
        ClientOptions::default(),
    )
    .unwrap();
    let push_files = files
        .iter()
        .map(|(name, _)| PushFile::new(*name, folder.join(name)))
        .collect();
    let request = PushRequest::new("alice/model".parse().unwrap(), push_files);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcome = runtime
        .block_on(client.push(&request, &NoProgress))
        .unwrap();
    assert!(outcome.committed);

    assert_eq!(ours_fake.count("POST", "/lfs-complete/"), 1);
    assert_eq!(ours_fake.storage_auth_violations(), 0);
    let theirs = fake.files("alice/official", "main").unwrap();
    let ours = ours_fake.files("alice/model", "main").unwrap();
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (path, file) in &theirs {
        let mine = &ours[path];
        assert_eq!(file.content, mine.content, "{path}");
        assert_eq!(file.lfs, mine.lfs, "{path}");
    }
    assert!(ours["model.gguf"].lfs && ours["adapter_model.safetensors"].lfs);
    assert!(!ours["config.json"].lfs && ours["sub/notes.txt"].lfs);
    assert!(outcome
        .files
        .iter()
        .all(|f| f.transfer == loraforge_hub::Transfer::Sent));
    assert_eq!(fake.storage_bytes(), ours_fake.storage_bytes());
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}
