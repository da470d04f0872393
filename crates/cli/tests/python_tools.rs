//! Opt-in: the files the `loraforge` binary writes, loaded and run by the Python tools users
//! run (transformers, gguf-py, llama.cpp through llama-cpp-python), with `tests/python/`.
//!
//! Set `LORAFORGE_TEST_PYTHON` to a Python that has `tests/python/requirements.txt` installed
//! (see `tests/python/README.md`); without it every test prints a note and passes without
//! checking anything.
//!
//! ```text
//! LORAFORGE_TEST_PYTHON=/work/venv/bin/python cargo test -p loraforge-cli --test python_tools
//! ```
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(case: &str) -> PathBuf {
    repo().join("tests/fixtures/peft").join(case)
}

/// The Python to run the scripts with, or `None` (after a note) when the test is not opted in.
fn python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("LORAFORGE_TEST_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "note: {test}: LORAFORGE_TEST_PYTHON is not set, nothing checked \
                 (see tests/python/README.md)"
            );
            None
        }
    }
}

/// Runs the `loraforge` binary against a store inside `dir`; panics with its stderr on failure.
fn loraforge(dir: &Path, args: &[&str]) -> String {
    let output = Command::cargo_bin("loraforge")
        .unwrap()
        .arg("--home")
        .arg(dir.join("home"))
        .arg("--quiet")
        .args(args)
        .env_remove("OLLAMA_HOST")
        .env_remove("LORAFORGE_HOME")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "loraforge {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `tests/python/<script>` and returns its JSON report; panics (with the report) on failure.
fn script(python: &Path, name: &str, args: &[&str]) -> Value {
    let output = std::process::Command::new(python)
        .arg(repo().join("tests/python").join(name))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{name} {args:?}\n{stdout}");
    assert!(
        output.status.success(),
        "{name} {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(report["pass"], true, "{report}");
    report
}

fn input_ids(case: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixture(case).join("case.json")).unwrap();
    let case: Value = serde_json::from_str(&text).unwrap();
    case["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap().to_string())
        .collect()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// merge (CLI) -> transformers logits vs PEFT's; convert (CLI) -> gguf-py + llama.cpp logits vs
/// `convert_hf_to_gguf.py`'s file and vs transformers, llama.cpp's tokenizer vs the reference's. Returns the tempdir and the merged folder.
fn merge_and_convert(python: &Path, case: &str, outtypes: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fx = fixture(case);
    let merged = dir.path().join("merged");
    loraforge(
        dir.path(),
        &[
            "merge",
            "--base",
            s(&fx.join("base")),
            "--adapter",
            s(&fx.join("adapter")),
            "--out",
            s(&merged),
        ],
    );
    script(python, "check_merge.py", &[s(&merged), s(&fx)]);

    let ids = input_ids(case);
    for outtype in outtypes {
        let ours = dir.path().join(format!("ours-{outtype}.gguf"));
        loraforge(
            dir.path(),
            &["convert", s(&merged), s(&ours), "--outtype", outtype],
        );
        let reference = fx.join(format!("expected/ref-{outtype}.gguf"));
        let logits = fx.join("expected/logits.npy");
        let mut args = vec![s(&ours), s(&reference)];
        args.extend(ids.iter().map(String::as_str));
        args.extend(["--hf-logits", s(&logits), "--tokenizer-dir", s(&merged)]);
        script(python, "check_gguf.py", &args);
    }
    (dir, merged)
}

#[test]
fn llama_sentencepiece_qv() {
    if let Some(py) = python("llama_sentencepiece_qv") {
        merge_and_convert(&py, "a_llama_qv", &["f16", "bf16"]);
    }
}

#[test]
fn llama_bpe_all_linear_rslora() {
    if let Some(py) = python("llama_bpe_all_linear_rslora") {
        merge_and_convert(&py, "b_llama_alllinear_rslora", &["f16"]);
    }
}

#[test]
fn qwen2_rank_pattern() {
    if let Some(py) = python("qwen2_rank_pattern") {
        merge_and_convert(&py, "c_qwen2_rank_pattern", &["f16"]);
    }
}

#[test]
fn llama_dora() {
    if let Some(py) = python("llama_dora") {
        merge_and_convert(&py, "e_llama_dora", &["f16", "f32"]);
    }
}

#[test]
fn gpt2_conv1d() {
    if let Some(py) = python("gpt2_conv1d") {
        merge_and_convert(&py, "f_gpt2_conv1d", &["f16"]);
    }
}

/// quantize (CLI) and convert straight to q4_K_M (CLI) -> the same tensors as llama.cpp's own
/// quantizer gives for the same source, and a model llama.cpp runs.
#[test]
fn quantized_fixture_runs() {
    let Some(py) = python("quantized_fixture_runs") else {
        return;
    };
    let (dir, merged) = merge_and_convert(&py, "a_llama_qv", &[]);
    let ids = input_ids("a_llama_qv");
    let gguf = |outtype: &str| {
        let path = dir.path().join(format!("ours-{outtype}.gguf"));
        loraforge(
            dir.path(),
            &["convert", s(&merged), s(&path), "--outtype", outtype],
        );
        path
    };
    let check = |quantized: &Path, src: &Path, file_type: &str| {
        let mut args = vec![s(quantized), s(src), file_type];
        args.extend(ids.iter().map(String::as_str));
        script(&py, "check_quant.py", &args);
    };
    let f16 = gguf("f16");
    for file_type in ["q8_0", "q4_K_M", "q4_K_S"] {
        let quantized = dir.path().join(format!("quantized-{file_type}.gguf"));
        loraforge(dir.path(), &["quantize", s(&f16), s(&quantized), file_type]);
        check(&quantized, &f16, file_type);
    }
    // `convert --outtype q4_K_M` of a bf16 model quantizes from a lossless bf16 file.
    let bf16 = gguf("bf16");
    check(&gguf("q4_K_M"), &bf16, "q4_K_M");
}

/// `loraforge demo`: its saved model in transformers against PEFT merging the demo adapter on the
/// spot, its f16 GGUF in llama.cpp against transformers' logits, and its exported q4_K_M GGUF
/// against llama.cpp's quantizer.
#[test]
fn demo_model() {
    let Some(py) = python("demo_model") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Port 9 on loopback refuses at once: the deploy step fails, everything before it stays.
    loraforge(dir.path(), &["demo", "--host", "http://127.0.0.1:9"]);
    let home = dir.path().join("home");
    let only = |sub: &str, keep: &dyn Fn(&Path) -> bool| -> PathBuf {
        let found: Vec<PathBuf> = std::fs::read_dir(home.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| keep(p))
            .collect();
        assert_eq!(found.len(), 1, "{sub}: {found:?}");
        found.into_iter().next().unwrap()
    };
    let saved = only("saved", &|p| p.join("model/config.json").is_file()).join("model");
    let exported = only("exports", &|p| p.extension().is_some_and(|e| e == "gguf"));

    let ids = ["1", "17", "42", "100", "250", "400"];
    let hf_logits = dir.path().join("demo-transformers.npy");
    let files = home.join("demo-files");
    let (base, adapter) = (files.join("tiny-llama"), files.join("trainer-output"));
    let mut args = vec![s(&saved), "--save-logits", s(&hf_logits)];
    args.extend(["--peft", s(&base), s(&adapter), "--ids"]);
    args.extend(ids);
    script(&py, "check_merge.py", &args);

    let bf16 = dir.path().join("demo-bf16.gguf");
    let f16 = dir.path().join("demo-f16.gguf");
    loraforge(
        dir.path(),
        &["convert", s(&saved), s(&bf16), "--outtype", "bf16"],
    );
    loraforge(
        dir.path(),
        &["convert", s(&saved), s(&f16), "--outtype", "f16"],
    );
    let mut args = vec![s(&f16), "-"];
    args.extend(ids);
    args.extend(["--hf-logits", s(&hf_logits), "--tokenizer-dir", s(&saved)]);
    script(&py, "check_gguf.py", &args);

    let mut args = vec![s(&exported), s(&bf16), "q4_K_M"];
    args.extend(ids);
    script(&py, "check_quant.py", &args);
}
