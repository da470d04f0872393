//! LoRA GGUF against llama.cpp's convert_lora_to_gguf.py (tests/fixtures/lora-gguf/gguf.json).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use loraforge_export::{
    convert_lora, ExportTarget, FileType, LoraConvertError, LoraConvertOptions,
};
use loraforge_progress::NoProgress;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn inputs(case: &str) -> (PathBuf, PathBuf) {
    let f = fixtures();
    match case {
        "j_bf16_adapter" | "k_embed_lora" => (
            f.join("peft/a_llama_qv/base"),
            f.join("lora-gguf").join(case).join("adapter"),
        ),
        _ => (
            f.join("peft").join(case).join("base"),
            f.join("peft").join(case).join("adapter"),
        ),
    }
}

fn run(case: &str, outtype: ExportTarget) -> Result<(String, u64), LoraConvertError> {
    let (base, adapter) = inputs(case);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.gguf");
    let options = LoraConvertOptions {
        target: outtype,
        sha256: true,
    };
    let r = convert_lora(&adapter, &base, &out, &options, &NoProgress)?;
    Ok((r.sha256.unwrap(), r.bytes))
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("lora-gguf/gguf.json")).unwrap())
        .unwrap()
}

#[test]
fn every_adapter_the_script_converts_is_byte_identical() {
    let refs = reference();
    let mut compared = 0;
    for (case, types) in refs["cases"].as_object().unwrap() {
        if case == "f_gpt2_conv1d" {
            continue; // refused on purpose, see below
        }
        for (t, want) in types.as_object().unwrap() {
            let outtype = ExportTarget::for_outtype(t).unwrap();
            let got = run(case, outtype);
            match want.get("sha256") {
                Some(sha) => {
                    let (got_sha, size) = got.unwrap_or_else(|e| panic!("{case} {t}: {e}"));
                    assert_eq!(
                        got_sha,
                        sha.as_str().unwrap(),
                        "{case} --outtype {t} ({size} bytes)"
                    );
                    compared += 1;
                }
                None => assert!(
                    matches!(got, Err(LoraConvertError::Refused { .. })),
                    "{case} {t}: the script refuses ({}), we gave {got:?}",
                    want["error"]
                ),
            }
        }
    }
    assert_eq!(compared, 7 * 4);
}

#[test]
fn auto_is_f16_for_f32_adapters_and_bf16_for_bf16_ones() {
    let refs = reference();
    assert_eq!(
        run("a_llama_qv", ExportTarget::Auto).unwrap().0,
        refs["cases"]["a_llama_qv"]["f16"]["sha256"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        run("j_bf16_adapter", ExportTarget::Auto).unwrap().0,
        refs["cases"]["j_bf16_adapter"]["bf16"]["sha256"]
            .as_str()
            .unwrap()
    );
}

#[test]
fn dora_and_modules_to_save_are_refused_with_the_reason() {
    let e = run("e_llama_dora", ExportTarget::Convert(FileType::F32)).unwrap_err();
    assert!(e.to_string().contains("DoRA"), "{e}");
    let e = run(
        "d_llama_modules_to_save",
        ExportTarget::Convert(FileType::F32),
    )
    .unwrap_err();
    assert!(e.to_string().contains("modules_to_save"), "{e}");
}

#[test]
fn gpt2_conv1d_is_refused_because_the_scripts_file_is_wrong() {
    let e = run("f_gpt2_conv1d", ExportTarget::Convert(FileType::F32)).unwrap_err();
    assert!(
        matches!(&e, LoraConvertError::Refused { reason, .. } if reason.contains("Conv1D")),
        "{e}"
    );
}

#[test]
fn an_adapter_for_another_base_is_refused() {
    // b's adapter (hidden 64, 4 layers?) on c's qwen2 base: names or shapes do not fit.
    let f = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let r = convert_lora(
        &f.join("peft/b_llama_alllinear_rslora/adapter"),
        &f.join("peft/c_qwen2_rank_pattern/base"),
        &tmp.path().join("x.gguf"),
        &LoraConvertOptions::default(),
        &NoProgress,
    );
    assert!(r.is_err(), "{r:?}");
    assert!(!tmp.path().join("x.gguf").exists());
}

/// An embedding LoRA over a tied-embedding base converts (as the script does) but says that
/// llama.cpp aborts on it; a q/v-only adapter over the same base has no such warning.
#[test]
fn embedding_lora_on_tied_base_warns() {
    let warnings = |case: &str| {
        let (base, adapter) = inputs(case);
        let tmp = tempfile::tempdir().unwrap();
        let options = LoraConvertOptions {
            target: ExportTarget::for_outtype("f32").unwrap(),
            sha256: false,
        };
        convert_lora(
            &adapter,
            &base,
            &tmp.path().join("o.gguf"),
            &options,
            &NoProgress,
        )
        .unwrap()
        .warnings
    };
    let embed = warnings("k_embed_lora");
    assert!(
        embed.iter().any(|w| w.contains("tied embeddings")),
        "{embed:?}"
    );
    let qv = warnings("a_llama_qv");
    assert!(!qv.iter().any(|w| w.contains("tied embeddings")), "{qv:?}");
}
