//! merged_4bit against transformers + bitsandbytes (tests/fixtures/nf4, made by make_nf4.py).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use loraforge_adapter_merge::{MergeOptions, MergedTensors};
use loraforge_nf4::{quantize_folder, quantize_merged, quantize_nf4, Nf4Error, Nf4Options};
use loraforge_progress::NoProgress;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn sha(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

/// The files of `out` and `reference` are the same (names and bytes; `logits.npy` is the
/// reference's own check, not a saved file).
fn assert_same_folder(out: &Path, reference: &Path, what: &str) {
    let names = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "logits.npy")
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(out), names(reference), "{what}: file names");
    for f in names(reference) {
        assert_eq!(
            sha(&out.join(&f)),
            sha(&reference.join(&f)),
            "{what}: {f} differs from transformers' save"
        );
    }
}

/// The 16-bit folder PEFT saved, quantized (two thread counts: the bytes must not depend on
/// them), and the merge of base + adapter quantized as it is merged: the same files as
/// transformers' 4-bit save.
fn check_case(case: &str) {
    let reference = fixtures().join("nf4").join(case);
    for threads in [1, 3] {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let src = fixtures().join("peft").join(case).join("expected");
        let options = Nf4Options {
            threads: Some(threads),
            ..Nf4Options::default()
        };
        let report = quantize_folder(&src, &out, &options, &NoProgress).unwrap();
        assert!(report.quantized > 0);
        assert_eq!(report.weight_files, ["model.safetensors"]);
        let reference = fixtures().join("nf4").join(case);
        for f in ["config.json", "generation_config.json", "model.safetensors"] {
            assert_eq!(
                sha(&out.join(f)),
                sha(&reference.join(f)),
                "{case}/{f} differs from transformers' save (threads {threads})"
            );
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let peft = fixtures().join("peft").join(case);
    let merged = MergedTensors::open(
        &MergeOptions::new(peft.join("base"), peft.join("adapter"), "unused"),
        &NoProgress,
    )
    .unwrap();
    let report = quantize_merged(&merged, &out, &Nf4Options::default(), &NoProgress).unwrap();
    assert!(report.quantized > 0);
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        assert_eq!(
            sha(&out.join(f)),
            sha(&reference.join(f)),
            "{case}/{f} of the fused merge differs from transformers' save"
        );
    }
    // No temporary left beside the output.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

/// transformers' `save_pretrained(max_shard_size="60KB")` of the 4-bit model: the same shard
/// files (names, bytes) and index, from the 16-bit folder and from the fused merge.
fn check_sharded(case: &str) {
    let reference = fixtures().join("nf4").join(format!("{case}_sharded"));
    let options = Nf4Options {
        max_shard_size: Some(60_000),
        ..Nf4Options::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("folder");
    let src = fixtures().join("peft").join(case).join("expected");
    let report = quantize_folder(&src, &out, &options, &NoProgress).unwrap();
    assert_eq!(report.weight_files.len(), 3, "{:?}", report.weight_files);
    assert_same_folder(
        &out,
        &reference,
        &format!("{case} sharded, from the folder"),
    );

    let out = tmp.path().join("fused");
    let peft = fixtures().join("peft").join(case);
    let merged = MergedTensors::open(
        &MergeOptions::new(peft.join("base"), peft.join("adapter"), "unused"),
        &NoProgress,
    )
    .unwrap();
    quantize_merged(&merged, &out, &options, &NoProgress).unwrap();
    let mut expected_names: Vec<String> = std::fs::read_dir(&reference)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    expected_names.sort();
    for f in expected_names {
        assert_eq!(
            sha(&out.join(&f)),
            sha(&reference.join(&f)),
            "{case} sharded, fused merge: {f} differs from transformers' save"
        );
    }
}

#[test]
fn qwen2_sharded_save_is_byte_identical() {
    check_sharded("c_qwen2_rank_pattern");
}

#[test]
fn llama_untied_sharded_save_is_byte_identical() {
    check_sharded("d_llama_modules_to_save");
}

#[test]
fn llama_bf16_tied_is_byte_identical() {
    check_case("a_llama_qv");
}

#[test]
fn qwen2_f16_with_biases_is_byte_identical() {
    check_case("c_qwen2_rank_pattern");
}

#[test]
fn llama_untied_lm_head_is_byte_identical() {
    check_case("d_llama_modules_to_save");
}

#[test]
fn llama_f32_is_byte_identical() {
    check_case("e_llama_dora");
}

fn unhex_f32(h: &str) -> Vec<f32> {
    hex::decode(h)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn decode(dtype: &str, h: &str) -> Vec<f32> {
    let b = hex::decode(h).unwrap();
    match dtype {
        "float32" => unhex_f32(h),
        "bfloat16" => b
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        "float16" => b
            .chunks_exact(2)
            .map(|c| loraforge_hf_model::f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => panic!("{dtype}"),
    }
}

#[test]
fn quantize_4bit_probes_match_bitsandbytes() {
    let probe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("nf4/probe.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for (name, c) in probe["cases"].as_object().unwrap() {
        let Some(input) = c["input"].as_str() else {
            continue;
        };
        let x = decode(c["dtype"].as_str().unwrap(), input);
        let q = quantize_nf4(&x, 2);
        assert_eq!(
            hex::encode(&q.packed),
            c["packed"].as_str().unwrap(),
            "{name} packed"
        );
        assert_eq!(
            hex::encode(&q.absmax),
            c["absmax"].as_str().unwrap(),
            "{name} absmax"
        );
        assert_eq!(
            q.nested_absmax,
            unhex_f32(c["nested_absmax"].as_str().unwrap()),
            "{name} nested_absmax"
        );
        assert_eq!(
            q.offset.to_bits(),
            unhex_f32(c["offset"].as_str().unwrap())[0].to_bits(),
            "{name} offset"
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[test]
fn an_existing_output_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("peft/a_llama_qv/expected");
    let err = quantize_folder(&src, tmp.path(), &Nf4Options::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, Nf4Error::OutputExists { .. }), "{err}");
}

#[test]
fn gpt2_is_refused_naming_the_model_type() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("peft/f_gpt2_conv1d/expected");
    let err = quantize_folder(
        &src,
        &tmp.path().join("o"),
        &Nf4Options::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Nf4Error::UnsupportedArchitecture { model_type, .. } if model_type == "gpt2"),
        "{err}"
    );
}

#[test]
fn an_already_quantized_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("nf4/a_llama_qv");
    let err = quantize_folder(
        &src,
        &tmp.path().join("o"),
        &Nf4Options::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, Nf4Error::AlreadyQuantized { .. }), "{err}");
}
