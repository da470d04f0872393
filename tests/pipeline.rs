//! End to end through the `loraforge` facade: our merge of each PEFT fixture adapter, converted
//! by our converter, must give the tensors that `convert_hf_to_gguf.py` wrote for PEFT's own
//! merge — byte for byte. This chains the two exactness claims (merge == PEFT, convert ==
//! llama.cpp) on the same inputs, so neither can hide behind the other's fixture.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use loraforge::adapter_merge::{merge, MergeOptions};
use loraforge::export::{convert, ConvertOptions, ExportTarget};
use loraforge::gguf::GgufFile;
use loraforge::progress::NoProgress;

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/peft")
        .join(case)
}

/// Merge the case's adapter into its base, convert the result, compare with `expected/ref-<outtype>.gguf`.
fn merged_then_converted_equals_reference(case: &str, outtype: &str) {
    let dir = case_dir(case);
    let reference_path = dir.join("expected").join(format!("ref-{outtype}.gguf"));
    let work = tempfile::tempdir().unwrap();
    let merged = work.path().join("merged");
    merge(
        &MergeOptions::new(dir.join("base"), dir.join("adapter"), &merged),
        &NoProgress,
    )
    .unwrap();
    let ours_path = work.path().join("ours.gguf");
    let options = ConvertOptions {
        target: ExportTarget::for_outtype(outtype).unwrap(),
        ..Default::default()
    };
    convert(&merged, &ours_path, &options, &NoProgress).unwrap();

    let ours = GgufFile::open(&ours_path).unwrap();
    let reference = GgufFile::open(&reference_path).unwrap();
    let names = |file: &GgufFile| -> Vec<String> {
        file.tensors().iter().map(|t| t.info.name.clone()).collect()
    };
    assert_eq!(
        names(&ours),
        names(&reference),
        "{case}: tensor names and order"
    );
    for (index, (a, b)) in ours.tensors().iter().zip(reference.tensors()).enumerate() {
        assert_eq!(a.info, b.info, "{case}: tensor info of {}", a.info.name);
        assert!(
            ours.tensor_data(index) == reference.tensor_data(index),
            "{case}: data of {} differs from convert_hf_to_gguf.py's GGUF of PEFT's merge",
            a.info.name
        );
    }
    // Hyperparameters and tokenizer: every non-`general.*` key the reference wrote, with its value.
    for (key, value) in reference.metadata().iter() {
        if key.starts_with("general.") {
            continue;
        }
        assert_eq!(
            ours.metadata().get(key),
            Some(value),
            "{case}: metadata {key}"
        );
    }
}

#[test]
fn llama_qv_bf16() {
    merged_then_converted_equals_reference("a_llama_qv", "bf16");
}

#[test]
fn llama_all_linear_rslora_f16() {
    merged_then_converted_equals_reference("b_llama_alllinear_rslora", "f16");
}

#[test]
fn qwen2_rank_pattern_f16() {
    merged_then_converted_equals_reference("c_qwen2_rank_pattern", "f16");
}

#[test]
fn llama_modules_to_save_f16() {
    merged_then_converted_equals_reference("d_llama_modules_to_save", "f16");
}

#[test]
fn llama_dora_f32() {
    merged_then_converted_equals_reference("e_llama_dora", "f32");
}

#[test]
fn llama_sharded_f16() {
    merged_then_converted_equals_reference("g_llama_sharded", "f16");
}

#[test]
fn llama_layers_subset_f16() {
    merged_then_converted_equals_reference("h_llama_layers_subset", "f16");
}

#[test]
fn gpt2_conv1d_bf16() {
    merged_then_converted_equals_reference("f_gpt2_conv1d", "bf16");
}
