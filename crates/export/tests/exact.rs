//! Exactness: every fixture case converted by loraforge equals the GGUF that llama.cpp's
//! `convert_hf_to_gguf.py` made from the same folder (tests/fixtures/peft/*/expected/ref-*.gguf):
//! same metadata keys, order, types and values, same tensor names, order, types, shapes and
//! byte-identical data.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use loraforge_export::{convert, ConvertOptions, ExportTarget, FileType, PreTokenizerSource};
use loraforge_gguf::GgufFile;
use loraforge_progress::NoProgress;

mod common;

use common::{model_folder, FIXTURES};

fn assert_same_gguf(ours: &Path, reference: &Path) {
    let a = GgufFile::open(ours).unwrap();
    let b = GgufFile::open(reference).unwrap();
    let ka: Vec<&str> = a.metadata().keys().collect();
    let kb: Vec<&str> = b.metadata().keys().collect();
    assert_eq!(
        ka,
        kb,
        "metadata keys/order differ for {}",
        reference.display()
    );
    for ((k, va), (_, vb)) in a.metadata().iter().zip(b.metadata().iter()) {
        assert!(
            va.bitwise_eq(vb),
            "{}: metadata {k} differs: ours {:?} reference {:?}",
            reference.display(),
            short(va),
            short(vb)
        );
    }
    assert_eq!(a.tensors().len(), b.tensors().len());
    for (i, (ta, tb)) in a.tensors().iter().zip(b.tensors()).enumerate() {
        assert_eq!(ta.info, tb.info, "tensor #{i} info differs");
        assert!(
            a.tensor_data(i) == b.tensor_data(i),
            "{}: data of {} differs",
            reference.display(),
            ta.info.name
        );
    }
    assert_eq!(
        std::fs::metadata(ours).unwrap().len(),
        std::fs::metadata(reference).unwrap().len()
    );
}

fn short(v: &loraforge_gguf::MetadataValue) -> String {
    let s = format!("{v:?}");
    s.chars().take(300).collect()
}

fn check(
    case: &str,
    outtype: ExportTarget,
    ref_name: &str,
    expect_pre: Option<(&str, PreTokenizerSource)>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_folder(case, tmp.path());
    let out = tmp.path().join("out.gguf");
    let options = ConvertOptions {
        target: outtype,
        sha256: true,
        ..ConvertOptions::default()
    };
    let report = convert(&dir, &out, &options, &NoProgress).unwrap();
    let reference = Path::new(FIXTURES)
        .join(case)
        .join("expected")
        .join(ref_name);
    assert_same_gguf(&out, &reference);
    // The whole file is identical, so its sha256 is the reference's.
    let gguf_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(FIXTURES).join(case).join("expected/gguf.json"))
            .unwrap(),
    )
    .unwrap();
    let key = ref_name
        .trim_start_matches("ref-")
        .trim_end_matches(".gguf");
    assert_eq!(
        report.sha256.as_deref(),
        gguf_json["outputs"][key]["sha256"].as_str(),
        "sha256 of the whole file"
    );
    if let Some((pre, source)) = expect_pre {
        assert_eq!(report.pre_tokenizer.as_deref(), Some(pre));
        assert_eq!(report.pre_tokenizer_source, Some(source.clone()));
        if source == PreTokenizerSource::Regex {
            assert!(
                report.warnings.iter().any(|w| w.contains(pre)),
                "{:?}",
                report.warnings
            );
        }
    }
}

#[test]
fn a_llama_sentencepiece_f16_and_bf16() {
    let spm = Some(("default", PreTokenizerSource::SentencePiece));
    check(
        "a_llama_qv",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        spm.clone(),
    );
    check(
        "a_llama_qv",
        ExportTarget::Convert(FileType::BF16),
        "ref-bf16.gguf",
        spm,
    );
}

#[test]
fn b_llama3_bpe_rope_parameters_chat_template_jinja() {
    let pre = Some(("llama-bpe", PreTokenizerSource::Regex));
    check(
        "b_llama_alllinear_rslora",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        pre.clone(),
    );
    check(
        "b_llama_alllinear_rslora",
        ExportTarget::Convert(FileType::BF16),
        "ref-bf16.gguf",
        pre,
    );
}

#[test]
fn c_qwen2_fp16_with_biases() {
    check(
        "c_qwen2_rank_pattern",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        Some(("qwen2", PreTokenizerSource::Regex)),
    );
}

#[test]
fn d_llama_untied_output() {
    check(
        "d_llama_modules_to_save",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        None,
    );
    check(
        "d_llama_modules_to_save",
        ExportTarget::Convert(FileType::BF16),
        "ref-bf16.gguf",
        None,
    );
}

#[test]
fn e_llama_fp32_base_to_f16_and_f32() {
    check(
        "e_llama_dora",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        None,
    );
    check(
        "e_llama_dora",
        ExportTarget::Convert(FileType::F32),
        "ref-f32.gguf",
        None,
    );
}

#[test]
fn f_gpt2_conv1d_transposed() {
    let pre = Some(("gpt-2", PreTokenizerSource::Regex));
    check(
        "f_gpt2_conv1d",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        pre.clone(),
    );
    check(
        "f_gpt2_conv1d",
        ExportTarget::Convert(FileType::BF16),
        "ref-bf16.gguf",
        pre,
    );
}

#[test]
fn g_h_i_llama_cases() {
    check(
        "g_llama_sharded",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        None,
    );
    check(
        "g_llama_sharded",
        ExportTarget::Convert(FileType::BF16),
        "ref-bf16.gguf",
        None,
    );
    check(
        "h_llama_layers_subset",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        None,
    );
    check(
        "h_llama_layers_subset",
        ExportTarget::Convert(FileType::BF16),
        "ref-bf16.gguf",
        None,
    );
    check(
        "i_trainer_checkpoints",
        ExportTarget::Convert(FileType::F16),
        "ref-f16.gguf",
        None,
    );
    check(
        "i_trainer_checkpoints",
        ExportTarget::Convert(FileType::BF16),
        "ref-bf16.gguf",
        None,
    );
}

#[test]
fn auto_outtype_picks_bf16_for_a_bf16_model() {
    check("a_llama_qv", ExportTarget::Auto, "ref-bf16.gguf", None);
}

/// `--outtype q8_0`: no reference GGUF was kept, so the tensors are checked against gguf-py's
/// own Q8_0 quantizer applied to the reference tensors (tests/fixtures/convert/q8_0_golden.json,
/// made by make_q8_0_golden.py beside it), and the metadata against ref-f16 with
/// `general.file_type` = 7.
#[test]
fn q8_0_matches_gguf_py_quantizer() {
    use sha2::{Digest, Sha256};
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/convert/q8_0_golden.json"
        ))
        .unwrap(),
    )
    .unwrap();
    for (case, tensors) in golden.as_object().unwrap() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = model_folder(case, tmp.path());
        let out = tmp.path().join("out.gguf");
        let options = ConvertOptions {
            target: ExportTarget::Convert(FileType::Q8_0),
            ..ConvertOptions::default()
        };
        let report = convert(&dir, &out, &options, &NoProgress).unwrap();
        assert_eq!(report.file_type.llama_ftype(), 7);
        let ours = GgufFile::open(&out).unwrap();
        let tensors = tensors.as_array().unwrap();
        assert_eq!(ours.tensors().len(), tensors.len());
        for (i, (t, g)) in ours.tensors().iter().zip(tensors).enumerate() {
            assert_eq!(t.info.name, g["name"].as_str().unwrap());
            assert_eq!(
                t.info.ty.name().to_ascii_uppercase(),
                g["type"].as_str().unwrap()
            );
            let dims: Vec<u64> = g["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            assert_eq!(t.info.dims, dims);
            assert_eq!(
                hex::encode(Sha256::digest(ours.tensor_data(i))),
                g["sha256"].as_str().unwrap(),
                "{case}: {}",
                t.info.name
            );
        }
        let reference =
            GgufFile::open(&Path::new(FIXTURES).join(case).join("expected/ref-f16.gguf")).unwrap();
        assert_eq!(
            ours.metadata().keys().collect::<Vec<_>>(),
            reference.metadata().keys().collect::<Vec<_>>()
        );
        for ((k, a), (_, b)) in ours.metadata().iter().zip(reference.metadata().iter()) {
            if k == "general.file_type" {
                assert_eq!(*a, loraforge_gguf::MetadataValue::U32(7));
            } else {
                assert!(a.bitwise_eq(b), "{case}: {k}");
            }
        }
    }
}

/// `Q4_K_M` / `Q4_K_S`: the same bytes as the reference converter's lossless output (ref-bf16
/// for a bf16 model, ref-f32 for an f32 one, ref-f16 for an f16 one) quantized by
/// `quantize_file` (loraforge's byte-exact `llama-quantize`).
#[test]
fn k_quants_equal_reference_gguf_quantized() {
    use loraforge_export::{quantize_file, QuantizeFileOptions};
    for (case, lossless) in [
        ("a_llama_qv", "ref-bf16.gguf"),
        ("e_llama_dora", "ref-f32.gguf"),
        ("c_qwen2_rank_pattern", "ref-f16.gguf"),
    ] {
        for (outtype, ftype) in [
            (ExportTarget::Quantize(FileType::Q4KM), FileType::Q4KM),
            (ExportTarget::Quantize(FileType::Q4KS), FileType::Q4KS),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = model_folder(case, tmp.path());
            let out = tmp.path().join("out.gguf");
            let options = ConvertOptions {
                target: outtype,
                sha256: true,
                ..ConvertOptions::default()
            };
            let report = convert(&dir, &out, &options, &NoProgress).unwrap();
            let expected = tmp.path().join("expected.gguf");
            let q = quantize_file(
                &Path::new(FIXTURES)
                    .join(case)
                    .join("expected")
                    .join(lossless),
                &expected,
                ftype,
                &QuantizeFileOptions::default(),
                &NoProgress,
            )
            .unwrap();
            assert_eq!(report.sha256, Some(q.sha256), "{case} {outtype:?}");
            assert_eq!(
                std::fs::read(&out).unwrap(),
                std::fs::read(&expected).unwrap()
            );
            // Only the two files: the intermediate is gone.
            let mut left: Vec<_> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            assert_eq!(
                left,
                vec![case.to_string(), "expected.gguf".into(), "out.gguf".into()]
            );
        }
    }
}

/// Model folders made for the converter alone (tests/fixtures/convert/<case>/, made with
/// make_gemma_phi3.py beside them): Gemma, Gemma 2, Phi-3 and Phi-3 LongRoPE.
const CONVERT_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/convert");

/// Converts `tests/fixtures/convert/<case>` (in place: the reference saw the same folder, named
/// after the case) to `outtype` and checks the whole file's sha256 against the reference's
/// (`gguf.json`). On a mismatch, the kept reference GGUF (`ref-bf16` or `ref-f16`) points at the
/// difference: metadata keys, order and values (`general.file_type` aside), tensor names and
/// shapes, and, for the out type of that file, types and data.
fn check_convert_case(
    case: &str,
    outtype: ExportTarget,
    key: &str,
) -> loraforge_export::ConvertReport {
    let dir = Path::new(CONVERT_FIXTURES).join(case);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.gguf");
    let options = ConvertOptions {
        target: outtype,
        sha256: true,
        ..ConvertOptions::default()
    };
    let report = convert(&dir, &out, &options, &NoProgress).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("gguf.json")).unwrap()).unwrap();
    let expected = info["outputs"][key]["sha256"].as_str().unwrap();
    if report.sha256.as_deref() != Some(expected) {
        let kept = ["bf16", "f16"]
            .into_iter()
            .find(|k| dir.join(format!("ref-{k}.gguf")).is_file())
            .unwrap();
        let reference = dir.join(format!("ref-{kept}.gguf"));
        if kept == key {
            assert_same_gguf(&out, &reference);
        }
        let a = GgufFile::open(&out).unwrap();
        let b = GgufFile::open(&reference).unwrap();
        let ka: Vec<&str> = a.metadata().keys().collect();
        let kb: Vec<&str> = b.metadata().keys().collect();
        assert_eq!(ka, kb, "{case} {key}: metadata keys/order differ");
        for ((k, va), (_, vb)) in a.metadata().iter().zip(b.metadata().iter()) {
            assert!(
                k == "general.file_type" || va.bitwise_eq(vb),
                "{case} {key}: metadata {k} differs: ours {:?} reference {:?}",
                short(va),
                short(vb)
            );
        }
        let names = |f: &GgufFile| -> Vec<(String, Vec<u64>)> {
            f.tensors()
                .iter()
                .map(|t| (t.info.name.clone(), t.info.dims.clone()))
                .collect()
        };
        assert_eq!(names(&a), names(&b), "{case} {key}: tensors differ");
        panic!(
            "{case} {key}: sha256 {:?} != reference {expected}",
            report.sha256
        );
    }
    report
}

#[test]
fn gemma_bf16_model_all_out_types() {
    for (outtype, key) in [
        (ExportTarget::Convert(FileType::F16), "f16"),
        (ExportTarget::Convert(FileType::BF16), "bf16"),
        (ExportTarget::Convert(FileType::F32), "f32"),
        (ExportTarget::Convert(FileType::Q8_0), "q8_0"),
    ] {
        let report = check_convert_case("gemma", outtype, key);
        assert_eq!(report.architecture, "gemma");
        assert_eq!(
            report.pre_tokenizer_source,
            Some(PreTokenizerSource::SentencePiece)
        );
    }
}

#[test]
fn gemma2_f16_model_all_out_types() {
    for (outtype, key) in [
        (ExportTarget::Convert(FileType::F16), "f16"),
        (ExportTarget::Convert(FileType::BF16), "bf16"),
        (ExportTarget::Convert(FileType::F32), "f32"),
        (ExportTarget::Convert(FileType::Q8_0), "q8_0"),
    ] {
        assert_eq!(
            check_convert_case("gemma2", outtype, key).architecture,
            "gemma2"
        );
    }
}

#[test]
fn phi3_bf16_model_all_out_types() {
    for (outtype, key) in [
        (ExportTarget::Convert(FileType::F16), "f16"),
        (ExportTarget::Convert(FileType::BF16), "bf16"),
        (ExportTarget::Convert(FileType::F32), "f32"),
        (ExportTarget::Convert(FileType::Q8_0), "q8_0"),
    ] {
        assert_eq!(
            check_convert_case("phi3", outtype, key).architecture,
            "phi3"
        );
    }
}

#[test]
fn phi3_longrope_f32_model_all_out_types() {
    for (outtype, key) in [
        (ExportTarget::Convert(FileType::F16), "f16"),
        (ExportTarget::Convert(FileType::BF16), "bf16"),
        (ExportTarget::Convert(FileType::F32), "f32"),
        (ExportTarget::Convert(FileType::Q8_0), "q8_0"),
    ] {
        let report = check_convert_case("phi3_longrope", outtype, key);
        assert_eq!(
            report.tensors, 17,
            "rope_factors_long/short + 15 model tensors"
        );
    }
}

/// `Q4_K_M` / `Q4_K_S` of the new architectures equal llama.cpp's own `llama_model_quantize` of
/// the reference converter's lossless output (gguf.json `q4_K_M` / `q4_K_S`): checks the
/// quantize recipe on Gemma's tied embedding and extra norms and on Phi-3's fused `attn_qkv`.
#[test]
fn k_quants_of_gemma_and_phi3_equal_llama_quantize() {
    for case in ["gemma", "gemma2", "phi3", "phi3_longrope"] {
        check_convert_case(case, ExportTarget::Quantize(FileType::Q4KM), "q4_K_M");
        check_convert_case(case, ExportTarget::Quantize(FileType::Q4KS), "q4_K_S");
    }
}
