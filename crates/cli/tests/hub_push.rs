//! `trained push` and `saved push` against the in-process fake Hugging Face Hub (tests/hub-fake):
//! every format, the pushed README's front matter, re-push sending nothing, the record shown by
//! `show`, and the token rules (precedence, no token, wrong token, plain http).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use hub_fake::FakeHub;
use serde_json::Value;

const TOKEN: &str = "hf_cli_secret_token";

struct Env {
    dir: tempfile::TempDir,
    home: PathBuf,
    demo: loraforge_demo::DemoFiles,
    hub: FakeHub,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let demo = loraforge_demo::generate(
        &dir.path().join("files"),
        &loraforge_demo::DemoSpec::default(),
    )
    .unwrap();
    let hub = FakeHub::spawn().unwrap();
    hub.add_token(TOKEN, "alice", &[], true);
    hub.set_lfs_threshold(64 * 1024);
    std::fs::create_dir_all(dir.path().join("hf-home")).unwrap();
    Env {
        home: dir.path().join("store"),
        demo,
        hub,
        dir,
    }
}

impl Env {
    /// `loraforge` with the store, the fake Hub as HF_ENDPOINT and no token anywhere.
    fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("loraforge").unwrap();
        cmd.arg("--home")
            .arg(&self.home)
            .env_remove("LORAFORGE_HOME")
            .env_remove("HF_TOKEN")
            .env_remove("HUGGING_FACE_HUB_TOKEN")
            .env_remove("HF_TOKEN_PATH")
            .env("HF_HOME", self.dir.path().join("hf-home"))
            .env("HF_ENDPOINT", self.hub.url());
        cmd
    }

    fn run(&self, args: &[&str], token: bool) -> Output {
        let mut cmd = self.cmd();
        if token {
            cmd.env("HF_TOKEN", TOKEN);
        }
        cmd.args(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let output = self.run(&all, true);
        assert!(
            output.status.success(),
            "loraforge {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn setup(&self) -> (String, String) {
        let base = self.demo.base_dir.to_str().unwrap();
        self.json(&["base", "add", base, "--name", "tiny"]);
        let trainer = self.demo.trainer_dir.to_str().unwrap();
        let trained = self.json(&[
            "trained",
            "add",
            trainer,
            "--base",
            "tiny",
            "--train-name",
            "hub run",
        ])["name"]
            .as_str()
            .unwrap()
            .to_string();
        let job = self.json(&["trained", "save", &trained]);
        (trained, job["result"].as_str().unwrap().to_string())
    }

    fn readme(&self, repo: &str) -> String {
        let files = self.hub.files(repo, "main").unwrap();
        String::from_utf8(files["README.md"].content.to_vec()).unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn trained_and_saved_push_in_every_format() {
    let env = env();
    let (trained, saved) = env.setup();

    // Trained: the folder `trained export --gguf` writes (PEFT files, tokenizer, LoRA GGUF),
    // with the Hub README.
    let record = env.json(&["trained", "push", &trained, "alice/lora", "--gguf"]);
    assert_eq!(record["repo"], "alice/lora");
    assert_eq!(record["format"], "adapter");
    assert_eq!(record["committed"], true);
    let files = env.hub.files("alice/lora", "main").unwrap();
    let export = env.dir.path().join("export");
    env.json(&[
        "trained",
        "export",
        &trained,
        "--out",
        export.to_str().unwrap(),
        "--gguf",
    ]);
    let mut exported: Vec<String> = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    exported.sort();
    let pushed: Vec<String> = files
        .keys()
        .filter(|k| *k != ".gitattributes")
        .cloned()
        .collect();
    assert_eq!(pushed, exported);
    for name in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "adapter.gguf",
        "tokenizer.json",
    ] {
        assert!(
            files.contains_key(name),
            "{name} missing: {:?}",
            files.keys()
        );
        assert_eq!(
            files[name].content.to_vec(),
            std::fs::read(export.join(name)).unwrap(),
            "{name} differs from trained export's"
        );
    }
    assert_eq!(&files["adapter.gguf"].content[..4], b"GGUF");
    let readme = env.readme("alice/lora");
    assert!(readme.starts_with(
        "---\nbase_model: loraforge-demo/tiny-llama\nbase_model_relation: adapter\nlibrary_name: peft\n"
    ), "{readme}");
    assert!(readme.contains(&format!("    name: {trained}\n")));
    assert!(
        readme.contains("## Export\n\n") && readme.contains("`adapter.gguf`"),
        "{readme}"
    );
    // The recorded checksums are the stored files'.
    let pushed: Vec<&Value> = record["files"].as_array().unwrap().iter().collect();
    for f in pushed {
        let path = f["path"].as_str().unwrap();
        let sha = f["sha256"].as_str().unwrap();
        assert_eq!(files[path].sha256, sha, "{path}");
    }

    // Again: nothing sent, no commit.
    let commits = env.hub.commits("alice/lora").len();
    let stored = env.hub.storage_bytes();
    let again = env.json(&["trained", "push", &trained, "alice/lora", "--gguf"]);
    assert_eq!(again["committed"], false);
    assert_eq!(again["bytes_sent"], 0);
    assert_eq!(again["commit_id"], record["commit_id"]);
    assert_eq!(env.hub.commits("alice/lora").len(), commits);
    assert_eq!(env.hub.storage_bytes(), stored);

    // `show` lists the pushes (and `--json` carries them).
    let shown = env.json(&["trained", "show", &trained]);
    assert_eq!(shown["hub_pushes"][0]["commit_id"], record["commit_id"]);
    assert_eq!(shown["hub_pushes"][1]["committed"], false);
    let output = env.run(&["trained", "show", &trained], false);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("pushed to the Hub:"), "{text}");
    assert!(text.contains(&format!(
        "alice/lora@main {}",
        record["commit_id"].as_str().unwrap()
    )));

    // Saved, merged 16-bit.
    let record = env.json(&["saved", "push", &saved, "alice/merged", "--private"]);
    assert_eq!(record["format"], "merged_16bit");
    assert_eq!(env.hub.is_private("alice/merged"), Some(true));
    let files = env.hub.files("alice/merged", "main").unwrap();
    assert!(files.contains_key("model.safetensors") && files.contains_key("config.json"));
    assert!(files["model.safetensors"].lfs);
    let readme = env.readme("alice/merged");
    assert!(readme.contains("base_model_relation: finetune\nlibrary_name: transformers\n"));
    assert!(readme.contains("save method `merged_16bit`"), "{readme}");
    // The safetensors went up with the checksum recorded when the model was saved.
    let entry: Value = serde_json::from_slice(
        &std::fs::read(env.home.join("saved").join(&saved).join("entry.json")).unwrap(),
    )
    .unwrap();
    let recorded = entry["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "model.safetensors")
        .unwrap();
    assert_eq!(
        files["model.safetensors"].sha256,
        recorded["sha256"].as_str().unwrap()
    );

    // Saved, GGUF: one file per quantization, named by the saved model and the type.
    let record = env.json(&[
        "saved",
        "push",
        &saved,
        "alice/gguf",
        "--format",
        "gguf",
        "--quant",
        "q8_0,q4_K_M",
    ]);
    assert_eq!(record["format"], "gguf");
    let files = env.hub.files("alice/gguf", "main").unwrap();
    for quant in ["q8_0", "q4_K_M"] {
        let name = format!("{saved}.{quant}.gguf");
        assert!(files[&name].lfs, "{name}");
        assert_eq!(&files[&name].content[..4], b"GGUF");
    }
    let readme = env.readme("alice/gguf");
    assert!(readme.contains("base_model_relation: quantized\nlibrary_name: gguf\n"));
    assert!(readme.contains("- gguf\n- q8_0\n- q4_K_M\n"));

    // Saved, merged 4-bit (bitsandbytes NF4).
    env.json(&[
        "saved",
        "push",
        &saved,
        "alice/nf4",
        "--format",
        "merged_4bit",
    ]);
    let files = env.hub.files("alice/nf4", "main").unwrap();
    let config = String::from_utf8(files["config.json"].content.to_vec()).unwrap();
    assert!(config.contains("\"quantization_config\""), "{config}");
    let readme = env.readme("alice/nf4");
    assert!(readme.contains("base_model_relation: finetune\nlibrary_name: transformers\n"));
    assert!(readme.contains("- 4-bit\n- bitsandbytes\n"), "{readme}");
    assert!(readme.contains("save method `merged_4bit`"), "{readme}");
    // The same folder `saved export --format merged_4bit` writes, README aside.
    let export4 = env.dir.path().join("export4");
    env.json(&[
        "saved",
        "export",
        &saved,
        "--format",
        "merged_4bit",
        "--out",
        export4.to_str().unwrap(),
    ]);
    for entry in std::fs::read_dir(&export4).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name != "README.md" {
            assert_eq!(
                files[&name].content.to_vec(),
                std::fs::read(export4.join(&name)).unwrap(),
                "{name}"
            );
        }
    }

    assert_eq!(env.hub.storage_auth_violations(), 0);
    let output = env.run(&["saved", "show", &saved], false);
    let text = String::from_utf8_lossy(&output.stdout);
    for repo in ["alice/merged@main", "alice/gguf@main", "alice/nf4@main"] {
        assert!(text.contains(repo), "{text}");
    }
}

#[test]
fn token_rules() {
    let env = env();
    let (trained, _) = env.setup();
    let push = ["trained", "push", trained.as_str(), "alice/t"];

    // No token anywhere: a user error with the places it was looked for.
    let output = env.run(&push, false);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("no Hugging Face token"));
    assert!(stderr(&output).contains("hf-home/token"));

    // A wrong token: 401 with a hint, nothing pushed or recorded, the token never printed.
    let mut cmd = env.cmd();
    let output = cmd
        .env("HF_TOKEN", "hf_wrong_secret")
        .args(push)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("HTTP 401"));
    assert!(stderr(&output).contains("hint:"));
    assert!(!stderr(&output).contains("hf_wrong_secret"));
    assert!(!env.hub.repo_exists("alice/t"));
    let output = env.run(&["trained", "show", &trained], false);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("pushed to the Hub"));

    // --token wins over a wrong HF_TOKEN.
    let mut cmd = env.cmd();
    let output = cmd
        .env("HF_TOKEN", "hf_wrong_secret")
        .args(push)
        .args(["--token", TOKEN])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    // The token file (as `hf auth login` writes it) when nothing else is set.
    std::fs::write(env.dir.path().join("hf-home/token"), format!("{TOKEN}\n")).unwrap();
    let output = env.run(&["trained", "push", &trained, "alice/t2"], false);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(env.hub.repo_exists("alice/t2"));

    // Plain http to another machine: refused before anything is sent.
    let mut cmd = env.cmd();
    let output = cmd
        .env("HF_ENDPOINT", "http://hub.example.invalid")
        .env("HF_TOKEN", TOKEN)
        .args(push)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("refusing to send the Hub token over plain http"));
    assert!(!stderr(&output).contains(TOKEN));

    // A repository id the Hub would refuse, and someone else's namespace.
    let output = env.run(&["trained", "push", &trained, "not a repo"], true);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("invalid Hub repository id"));
    let output = env.run(&["trained", "push", &trained, "bob/x"], true);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("HTTP 403"));
}

#[test]
fn a_missing_branch_and_a_file_changed_since_saved_are_refused() {
    let env = env();
    let (_, saved) = env.setup();

    // A branch that does not exist: named, exit 2, nothing committed.
    let output = env.run(
        &["saved", "push", &saved, "alice/m", "--revision", "nope"],
        true,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("revision \"nope\" not found"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains("hint:"));

    // The stored safetensors edited in place (same size): refused, nothing committed, no
    // push recorded.
    let weights = env
        .home
        .join("saved")
        .join(&saved)
        .join("model/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&weights, &bytes).unwrap();
    let output = env.run(&["saved", "push", &saved, "alice/changed"], true);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("changed since it was recorded"),
        "{}",
        stderr(&output)
    );
    assert!(env.hub.commits("alice/changed").len() <= 1);
    assert!(env
        .hub
        .files("alice/changed", "main")
        .is_none_or(|f| !f.contains_key("model.safetensors")));
    let output = env.run(&["saved", "show", &saved], false);
    assert!(!String::from_utf8_lossy(&output.stdout).contains("pushed to the Hub"));
}

/// huggingface_hub's own client (tests/python/check_hub.py, `HF_HUB_DISABLE_XET=1`) uploads the
/// folder `loraforge trained push --gguf` and `saved push --format gguf` pushed, to a second fake
/// Hub: both repositories must hold the same files, bytes and storage kinds (regular / LFS).
/// Opt-in: `LORAFORGE_TEST_HUB_PYTHON` names a Python with tests/python/requirements-hub.txt.
#[test]
fn the_official_client_agrees_with_loraforge_on_pushed_folders() {
    let Some(python) = std::env::var_os("LORAFORGE_TEST_HUB_PYTHON") else {
        eprintln!("note: LORAFORGE_TEST_HUB_PYTHON is not set; skipping the huggingface_hub check");
        return;
    };
    let env = env();
    // Small thresholds: the demo's weights and GGUF files go through LFS, the larger in parts.
    env.hub.set_lfs_threshold(4096);
    env.hub.set_multipart(32 * 1024, 16 * 1024);
    let (trained, saved) = env.setup();
    env.json(&["trained", "push", &trained, "alice/lora", "--gguf"]);
    env.json(&[
        "saved",
        "push",
        &saved,
        "alice/gguf",
        "--format",
        "gguf",
        "--quant",
        "q8_0,q4_K_M",
    ]);
    for repo in ["alice/lora", "alice/gguf"] {
        let ours = env.hub.files(repo, "main").unwrap();
        let folder = env.dir.path().join("official").join(repo);
        std::fs::create_dir_all(&folder).unwrap();
        for (path, file) in &ours {
            if path != ".gitattributes" {
                std::fs::write(folder.join(path), &file.content).unwrap();
            }
        }
        let official = FakeHub::spawn().unwrap();
        official.add_token(TOKEN, "alice", &[], true);
        official.set_lfs_threshold(4096);
        official.set_multipart(32 * 1024, 16 * 1024);
        let out = std::process::Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../tests/python/check_hub.py"
            ))
            .arg(official.url())
            .arg(TOKEN)
            .arg(repo)
            .arg(&folder)
            .arg(env.dir.path().join("py").join(repo))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "check_hub.py failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{repo}: {}", stdout.trim());
        let theirs = official.files(repo, "main").unwrap();
        assert_eq!(
            theirs.keys().collect::<Vec<_>>(),
            ours.keys().collect::<Vec<_>>()
        );
        for (path, file) in &theirs {
            assert_eq!(file.content, ours[path].content, "{repo} {path}");
            assert_eq!(file.lfs, ours[path].lfs, "{repo} {path}");
            assert_eq!(file.sha256, ours[path].sha256, "{repo} {path}");
        }
        let sizes: Vec<String> = ours
            .iter()
            .map(|(p, f)| {
                format!(
                    "{p} {} bytes{}",
                    f.content.len(),
                    if f.lfs { " lfs" } else { "" }
                )
            })
            .collect();
        println!("{repo} files: {}", sizes.join(", "));
        assert!(
            official.count("POST", "/lfs-complete/") >= 1,
            "no multipart upload in {repo}"
        );
        assert_eq!(official.storage_auth_violations(), 0);
    }
}
