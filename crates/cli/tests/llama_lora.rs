//! Opt-in: llama.cpp loads the LoRA GGUF `loraforge convert-lora` writes over the base GGUF
//! `loraforge convert` writes, and the adapter applied at run time gives the logits of the merged
//! model (`loraforge merge`, then `convert`), with `tests/python/check_lora.py`.
//!
//! Set `LORAFORGE_TEST_LLAMA_PYTHON` to a Python with numpy and llama-cpp-python 0.3.36 (nothing
//! else is needed); without it every test prints a note and passes without checking anything.
//!
//! ```text
//! LORAFORGE_TEST_LLAMA_PYTHON=/work/venv-quant/bin/python cargo test -p loraforge-cli --test llama_lora
//! ```
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python to run the script with, or `None` (after a note) when the test is not opted in.
fn python(test: &str) -> Option<PathBuf> {
    match std::env::var_os("LORAFORGE_TEST_LLAMA_PYTHON") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "note: {test}: skipped, nothing checked: set LORAFORGE_TEST_LLAMA_PYTHON to a \
                 Python with numpy and llama-cpp-python==0.3.36 to run it \
                 (tests/python/check_lora.py)"
            );
            None
        }
    }
}

/// Runs the `loraforge` binary against a store inside `dir`; panics with its stderr on failure.
fn loraforge(dir: &Path, args: &[&str]) {
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
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// How check_lora.py compares llama.cpp's run-time LoRA with the merged model.
#[derive(Clone, Copy)]
enum Expect {
    /// The same logits (within the script's tolerance).
    SameAsMerge,
    /// Only that llama.cpp loads the adapter and it changes the logits: the adapter's scale is
    /// one a LoRA GGUF cannot carry (rsLoRA, rank/alpha patterns), `convert-lora` warns.
    ScaleDiffers,
}

/// Base and merged model to f32 GGUF, the adapter to an f32 LoRA GGUF, then check_lora.py on
/// the `input_ids` of `ids_case`'s case.json.
fn check(python: &Path, base: &Path, adapter: &Path, ids_case: &str, expect: Expect) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (base_gguf, lora, merged, merged_gguf) = (
        path("base.gguf"),
        path("lora.gguf"),
        path("merged"),
        path("merged.gguf"),
    );
    let f32 = ["--outtype", "f32"];
    loraforge(
        dir.path(),
        &[&["convert", s(base), s(&base_gguf)], &f32[..]].concat(),
    );
    loraforge(
        dir.path(),
        &["convert-lora", s(adapter), s(&lora), "--base", s(base)],
    );
    loraforge(
        dir.path(),
        &[
            "merge",
            "--base",
            s(base),
            "--adapter",
            s(adapter),
            "--out",
            s(&merged),
            "--dtype",
            "f32",
        ],
    );
    loraforge(
        dir.path(),
        &[&["convert", s(&merged), s(&merged_gguf)], &f32[..]].concat(),
    );

    let case: Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo()
                .join("tests/fixtures/peft")
                .join(ids_case)
                .join("case.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ids: Vec<String> = case["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap().to_string())
        .collect();
    let mut command = std::process::Command::new(python);
    command
        .arg(repo().join("tests/python/check_lora.py"))
        .args([s(&base_gguf), s(&lora), s(&merged_gguf)])
        .args(&ids);
    if let Expect::ScaleDiffers = expect {
        command.arg("--scale-differs");
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("check_lora.py {}\n{stdout}", adapter.display());
    assert!(
        output.status.success(),
        "check_lora.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(report["pass"], true, "{report}");
}

/// A PEFT fixture case: its base and adapter.
fn peft_case(python: &Path, case: &str, expect: Expect) {
    let fx = repo().join("tests/fixtures/peft").join(case);
    check(python, &fx.join("base"), &fx.join("adapter"), case, expect);
}

#[test]
fn llama_qv() {
    if let Some(py) = python("llama_qv") {
        peft_case(&py, "a_llama_qv", Expect::SameAsMerge);
    }
}

/// a_llama_qv's adapter stored as bfloat16.
#[test]
fn llama_bf16_adapter() {
    if let Some(py) = python("llama_bf16_adapter") {
        let base = repo().join("tests/fixtures/peft/a_llama_qv/base");
        let adapter = repo().join("tests/fixtures/lora-gguf/j_bf16_adapter/adapter");
        check(&py, &base, &adapter, "a_llama_qv", Expect::SameAsMerge);
    }
}

#[test]
fn llama_sharded_base() {
    if let Some(py) = python("llama_sharded_base") {
        peft_case(&py, "g_llama_sharded", Expect::SameAsMerge);
    }
}

#[test]
fn llama_layers_subset() {
    if let Some(py) = python("llama_layers_subset") {
        peft_case(&py, "h_llama_layers_subset", Expect::SameAsMerge);
    }
}

#[test]
fn llama_all_linear_rslora() {
    if let Some(py) = python("llama_all_linear_rslora") {
        peft_case(&py, "b_llama_alllinear_rslora", Expect::ScaleDiffers);
    }
}

#[test]
fn qwen2_rank_pattern() {
    if let Some(py) = python("qwen2_rank_pattern") {
        peft_case(&py, "c_qwen2_rank_pattern", Expect::ScaleDiffers);
    }
}

// Not here: f_gpt2_conv1d (`convert-lora` refuses it) and lora-gguf/k_embed_lora (a LoRA on the
// token embedding of a tied-embedding base: llama.cpp aborts on the script's file, and on ours,
// which is the same; `convert-lora` warns).
