//! Opt-in (set `LORAFORGE_TEST_LLAMA_CPP=1`; needs `pip install llama-cpp-python numpy`, which
//! compiles llama.cpp, in `python3` or the interpreter `LORAFORGE_TEST_PYTHON` names): our GGUFs load in llama.cpp and give the logits of the merged Hugging Face
//! model (`expected/logits.npy`, computed with transformers) for the case's input ids, within
//! the precision of each out type. Without the variable the test returns at once.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use loraforge_export::{convert, ConvertOptions, ExportTarget, FileType};
use loraforge_progress::NoProgress;

mod common;

use common::{model_folder, FIXTURES};

const SCRIPT: &str = r#"
import json, sys
import numpy as np
import llama_cpp
gguf, case_json, logits = sys.argv[1], sys.argv[2], sys.argv[3]
ids = json.load(open(case_json))["input_ids"]
m = llama_cpp.Llama(gguf, logits_all=True, verbose=False, n_ctx=64)
m.eval(ids)
got = np.array(m.scores[: len(ids)])
exp = np.load(logits)[0]
print(float(np.abs(got - exp).max()), float(np.abs(exp).max()))
"#;

#[test]
fn llama_cpp_logits_match_the_merged_hf_model() {
    if std::env::var_os("LORAFORGE_TEST_LLAMA_CPP").is_none() {
        eprintln!("set LORAFORGE_TEST_LLAMA_CPP=1 to run the llama.cpp logits check");
        return;
    }
    // (out type, max |logit difference| allowed); the logits are of order 1.
    let budgets = [
        (ExportTarget::Convert(FileType::F32), 2e-3),
        (ExportTarget::Convert(FileType::F16), 2e-3),
        (ExportTarget::Convert(FileType::Q8_0), 2e-2),
        (ExportTarget::Quantize(FileType::Q4KM), 1.5e-1),
    ];
    for case in [
        "a_llama_qv",
        "b_llama_alllinear_rslora",
        "c_qwen2_rank_pattern",
        "e_llama_dora",
        "f_gpt2_conv1d",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = model_folder(case, tmp.path());
        for (outtype, budget) in budgets {
            let out = tmp.path().join(format!("{outtype:?}.gguf"));
            let options = ConvertOptions {
                target: outtype,
                ..ConvertOptions::default()
            };
            convert(&dir, &out, &options, &NoProgress).unwrap();
            let case_dir = Path::new(FIXTURES).join(case);
            let diff = max_logit_diff(
                &out,
                &case_dir.join("case.json"),
                &case_dir.join("expected/logits.npy"),
            );
            eprintln!("{case} {outtype:?}: max |logit diff| {diff:.2e}");
            assert!(diff <= budget, "{case} {outtype:?}: {diff} > {budget}");
        }
    }
}

/// Runs [`SCRIPT`]: the largest |llama.cpp logit - transformers logit| over the case's ids.
fn max_logit_diff(gguf: &Path, case_json: &Path, logits: &Path) -> f64 {
    let python = std::env::var_os("LORAFORGE_TEST_PYTHON").unwrap_or_else(|| "python3".into());
    let o = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(gguf)
        .arg(case_json)
        .arg(logits)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8_lossy(&o.stdout);
    line.split_whitespace().next().unwrap().parse().unwrap()
}

/// The Gemma / Gemma 2 / Phi-3 folders of tests/fixtures/convert (`case.json` ids,
/// `logits.npy` from transformers in f32 with eager attention): Gemma's `norm + 1`, Gemma 2's
/// softcapping and sliding window (4 tokens, so it matters), Phi-3's fused projections and
/// LongRoPE factors as llama.cpp runs them.
#[test]
fn llama_cpp_logits_of_gemma_and_phi3() {
    if std::env::var_os("LORAFORGE_TEST_LLAMA_CPP").is_none() {
        eprintln!("set LORAFORGE_TEST_LLAMA_CPP=1 to run the llama.cpp logits check");
        return;
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/convert");
    let budgets = [
        (ExportTarget::Convert(FileType::F32), 2e-3),
        (ExportTarget::Convert(FileType::F16), 2e-3),
        (ExportTarget::Convert(FileType::Q8_0), 2e-2),
        (ExportTarget::Quantize(FileType::Q4KM), 1.5e-1),
    ];
    for case in ["gemma", "gemma2", "phi3", "phi3_longrope"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fixtures.join(case);
        for (outtype, budget) in budgets {
            let out = tmp.path().join(format!("{outtype:?}.gguf"));
            let options = ConvertOptions {
                target: outtype,
                ..ConvertOptions::default()
            };
            convert(&dir, &out, &options, &NoProgress).unwrap();
            let diff = max_logit_diff(&out, &dir.join("case.json"), &dir.join("logits.npy"));
            eprintln!("{case} {outtype:?}: max |logit diff| {diff:.2e}");
            assert!(diff <= budget, "{case} {outtype:?}: {diff} > {budget}");
        }
    }
}
