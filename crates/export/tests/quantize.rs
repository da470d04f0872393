//! `quantize_file` against whole files written by llama.cpp's `llama_model_quantize`
//! (`tests/fixtures/quant-files/`, sha256 in `SHA256SUMS`), and its refusals.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use loraforge_export::{quantize_file, FileType, QuantizeFileError, QuantizeFileOptions};
use loraforge_gguf::{GgufFile, GgufWriter, MetadataValue, SourceError, TensorInfo};
use loraforge_progress::NoProgress;
use loraforge_quantize::GgmlType;

fn fixture(name: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/quant-files"
    ))
    .join(name)
}

fn listed_sha(name: &str) -> String {
    let sums = std::fs::read_to_string(fixture("SHA256SUMS")).unwrap();
    sums.lines()
        .find_map(|l| {
            let (sha, file) = l.split_once("  ")?;
            (file == name).then(|| sha.to_owned())
        })
        .unwrap()
}

fn opts(threads: usize) -> QuantizeFileOptions {
    QuantizeFileOptions {
        threads,
        ..Default::default()
    }
}

#[test]
fn output_is_byte_identical_to_llama_cpp_for_every_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("micro-f16", "q8_0"),
        ("micro-f16", "q4_K_M"),
        ("micro-f16", "q4_K_S"),
        ("micro-f32", "q8_0"),
        ("micro-f32", "q4_K_M"),
        ("micro-f32", "q4_K_S"),
        ("micro-r320-tied-f16", "q8_0"),
        ("micro-r320-tied-f16", "q4_K_M"),
        ("micro-r320-tied-f16", "q4_K_S"),
    ];
    for (i, (input, ty)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("{input}.{ty}.gguf"));
        // 1, 2 and 3 threads in turn: the bytes must not depend on it.
        let report = quantize_file(
            &fixture(&format!("{input}.gguf")),
            &out,
            ty.parse::<FileType>().unwrap(),
            &opts(1 + i % 3),
            &NoProgress,
        )
        .unwrap();
        let expected = listed_sha(&format!("{input}.{ty}.gguf"));
        assert_eq!(report.sha256, expected, "{input} → {ty}");
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(report.output_bytes, bytes.len() as u64);
        let reference = std::fs::read(fixture(&format!("{input}.{ty}.gguf"))).unwrap();
        assert!(bytes == reference, "{input} → {ty}: bytes differ");
    }
    // Only the outputs are left in the directory (no temp files).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), cases.len());
}

/// Every file type on every input of `quant-files/` (untied 256-wide; tied with hidden and ffn
/// 320; hidden 96 with ffn 72 and 4 query heads per kv head), against the sha256 of what
/// `llama_model_quantize` wrote (`make_quant_files.py`; only the hashes are kept).
#[test]
fn every_file_type_is_byte_identical_to_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    let sums = std::fs::read_to_string(fixture("SHA256SUMS")).unwrap();
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for line in sums.lines() {
        let (sha, file) = line.split_once("  ").unwrap();
        let Some(stem) = file.strip_suffix(".gguf") else {
            continue;
        };
        let Some((input, ty)) = stem.rsplit_once('.') else {
            continue;
        };
        let out = dir.path().join(file);
        let report = quantize_file(
            &fixture(&format!("{input}.gguf")),
            &out,
            ty.parse::<FileType>().unwrap(),
            &opts(1 + checked.len() % 2),
            &NoProgress,
        )
        .unwrap();
        if report.sha256 != sha {
            failures.push(file.to_owned());
        }
        std::fs::remove_file(&out).unwrap();
        checked.push((input.to_owned(), ty.to_owned()));
    }
    for input in ["micro-f16", "micro-r320-tied-f16", "micro-h96-gqa4-f16"] {
        for ft in FileType::ALL.iter().filter(|f| f.is_quantized()) {
            assert!(
                checked
                    .iter()
                    .any(|(i, t)| i == input && t.eq_ignore_ascii_case(ft.as_str())),
                "{input}: no llama.cpp hash for {ft}"
            );
        }
    }
    assert!(failures.is_empty(), "differ from llama.cpp: {failures:?}");
}

#[test]
fn fallbacks_are_reported_and_refused_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("micro-r320-tied-f16.gguf");
    let report = quantize_file(
        &input,
        &dir.path().join("a.gguf"),
        FileType::Q4KM,
        &opts(1),
        &NoProgress,
    )
    .unwrap();
    // Rows of 320: every Q4_K tensor falls back to Q5_0, Q6_K to Q8_0 (quant-policy.md).
    let fallbacks: Vec<_> = report
        .tensors
        .iter()
        .filter_map(|t| t.fallback.as_ref().map(|f| (t.name.as_str(), f)))
        .collect();
    assert_eq!(report.n_fallback, fallbacks.len());
    assert!(report.n_fallback > 0);
    let embd = report
        .tensors
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .unwrap();
    assert_eq!(embd.to, GgmlType::Q8_0);
    assert!(fallbacks.iter().all(|(_, f)| matches!(
        (f.wanted, f.used),
        (GgmlType::Q4K, GgmlType::Q5_0)
            | (GgmlType::Q6K, GgmlType::Q8_0)
            | (GgmlType::Q5K, GgmlType::Q5_1)
    )));

    let out = dir.path().join("b.gguf");
    let err = quantize_file(
        &input,
        &out,
        FileType::Q4KM,
        &QuantizeFileOptions {
            no_fallback: true,
            ..opts(1)
        },
        &NoProgress,
    )
    .unwrap_err();
    match err {
        QuantizeFileError::Fallbacks {
            count,
            tensors,
            first,
        } => {
            assert_eq!(count, report.n_fallback);
            assert_eq!(tensors.len(), count);
            assert!(first.contains("not divisible by 256"), "{first}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.exists());
}

#[test]
fn quantized_inputs_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("micro-f16.q8_0.gguf");
    let out = dir.path().join("re.gguf");
    let err = quantize_file(&input, &out, FileType::Q4KM, &opts(1), &NoProgress).unwrap_err();
    assert!(
        matches!(
            err,
            QuantizeFileError::AlreadyQuantized {
                ty: GgmlType::Q8_0,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!out.exists());
    let report = quantize_file(
        &input,
        &out,
        FileType::Q4KM,
        &QuantizeFileOptions {
            allow_requantize: true,
            ..opts(2)
        },
        &NoProgress,
    )
    .unwrap();
    // Same types as quantizing the F16 original (the recipe does not look at the input type).
    let direct = GgufFile::open(&fixture("micro-f16.q4_K_M.gguf")).unwrap();
    let requantized = GgufFile::open(&out).unwrap();
    let types = |f: &GgufFile| -> Vec<(String, GgmlType)> {
        f.tensors()
            .iter()
            .map(|t| (t.info.name.clone(), t.info.ty))
            .collect()
    };
    assert_eq!(types(&requantized), types(&direct));
    assert_eq!(report.sha256.len(), 64);
}

#[test]
fn output_equal_to_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::copy(fixture("micro-f32.gguf"), &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let same = dir.path().join(".").join("m.gguf");
    let err = quantize_file(&path, &same, FileType::Q8_0, &opts(1), &NoProgress).unwrap_err();
    assert!(matches!(err, QuantizeFileError::SameFile { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// A one-layer llama F32 model whose `blk.0.attn_q.weight` has `bad` at row 3, column 5.
fn model_with(bad: f32) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama")
        .set("llama.block_count", 1u32)
        .set("llama.attention.head_count", 2u32);
    w.add_tensor(TensorInfo::new(
        "blk.0.attn_q.weight",
        GgmlType::F32,
        vec![32, 8],
    ))
    .unwrap();
    w.add_tensor(TensorInfo::new(
        "output_norm.weight",
        GgmlType::F32,
        vec![32],
    ))
    .unwrap();
    let mut src = |i: usize, t: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        let n = t.n_elements().unwrap() as usize;
        for j in 0..n {
            let v = if i == 0 && j == 3 * 32 + 5 {
                bad
            } else {
                0.01 * j as f32
            };
            out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    };
    let mut bytes = Vec::new();
    w.write_to(&mut bytes, &mut src).unwrap();
    bytes
}

#[test]
fn non_finite_values_name_tensor_and_row() {
    let dir = tempfile::tempdir().unwrap();
    // One thread converts on the writing thread, more run a pipeline ahead of it: both stop
    // at the same value.
    for (bad, threads) in [(f32::NAN, 2), (f32::INFINITY, 1), (f32::NEG_INFINITY, 3)] {
        let input = dir.path().join("nan.gguf");
        std::fs::write(&input, model_with(bad)).unwrap();
        let out = dir.path().join("out.gguf");
        let err =
            quantize_file(&input, &out, FileType::Q8_0, &opts(threads), &NoProgress).unwrap_err();
        match &err {
            QuantizeFileError::NonFinite {
                tensor,
                row,
                column,
            } => {
                assert_eq!(
                    (tensor.as_str(), *row, *column),
                    ("blk.0.attn_q.weight", 3, 5)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("blk.0.attn_q.weight"));
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
    // The same model with a finite value quantizes, and its metadata gets the two keys last.
    let input = dir.path().join("ok.gguf");
    std::fs::write(&input, model_with(1.0)).unwrap();
    let out = dir.path().join("ok.q8_0.gguf");
    quantize_file(&input, &out, FileType::Q8_0, &opts(1), &NoProgress).unwrap();
    let f = GgufFile::open(&out).unwrap();
    let keys: Vec<&str> = f.metadata().keys().collect();
    assert_eq!(
        keys,
        [
            "general.architecture",
            "llama.block_count",
            "llama.attention.head_count",
            "general.quantization_version",
            "general.file_type"
        ]
    );
    assert_eq!(
        f.metadata().get("general.file_type"),
        Some(&MetadataValue::U32(7))
    );
    assert_eq!(f.tensors()[0].info.name, "output_norm.weight");
    assert_eq!(f.tensors()[1].info.ty, GgmlType::Q8_0);
}

#[test]
fn truncated_and_incomplete_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("micro-f32.gguf")).unwrap();
    let input = dir.path().join("cut.gguf");
    std::fs::write(&input, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("out.gguf");
    let err = quantize_file(&input, &out, FileType::Q8_0, &opts(1), &NoProgress).unwrap_err();
    assert!(matches!(err, QuantizeFileError::Read(_)), "{err:?}");
    assert!(!out.exists());

    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama");
    let mut no_layers = Vec::new();
    w.write_to(
        &mut no_layers,
        &mut |_: usize, _: &TensorInfo, _: &mut dyn Write| Ok(()),
    )
    .unwrap();
    std::fs::write(&input, no_layers).unwrap();
    let err = quantize_file(&input, &out, FileType::Q8_0, &opts(1), &NoProgress).unwrap_err();
    assert!(
        matches!(&err, QuantizeFileError::MissingMetadata { key, .. } if key == "llama.block_count"),
        "{err:?}"
    );
}

#[test]
fn progress_covers_every_input_byte_and_pages_released_stay_readable() {
    use std::sync::atomic::{AtomicU64, Ordering};
    struct Count(AtomicU64, AtomicU64);
    impl loraforge_progress::Reporter for Count {
        fn begin(&self, phase: &str, total: Option<u64>) {
            assert_eq!(phase, "quantize");
            self.1.store(total.unwrap(), Ordering::Relaxed);
        }
        fn advance(&self, units: u64) {
            self.0.fetch_add(units, Ordering::Relaxed);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("micro-f16.gguf");
    let count = Count(AtomicU64::new(0), AtomicU64::new(0));
    quantize_file(
        &input,
        &dir.path().join("o.gguf"),
        FileType::Q4KS,
        &opts(2),
        &count,
    )
    .unwrap();
    let file = GgufFile::open(&input).unwrap();
    let total: u64 = file.tensors().iter().map(|t| t.size).sum();
    assert_eq!(count.1.load(Ordering::Relaxed), total);
    assert_eq!(count.0.load(Ordering::Relaxed), total);

    // Dropping resident pages is only a hint: the data reads back unchanged.
    let bytes = std::fs::read(&input).unwrap();
    for i in 0..file.tensors().len() {
        file.release_tensor_range(i, 0..u64::MAX);
        let start = (file.data_offset() + file.tensors()[i].offset) as usize;
        assert_eq!(
            file.tensor_data(i),
            &bytes[start..start + file.tensors()[i].size as usize]
        );
    }
}

/// A one-layer llama model with a single 2-D tensor `blk.0.attn_q.weight` of `ty` and `dims`.
fn one_tensor_model(ty: GgmlType, dims: Vec<u64>) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama")
        .set("llama.block_count", 1u32);
    w.add_tensor(TensorInfo::new("blk.0.attn_q.weight", ty, dims))
        .unwrap();
    let mut src = |_: usize, t: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        out.write_all(&vec![0u8; t.n_bytes().unwrap() as usize])?;
        Ok(())
    };
    let mut bytes = Vec::new();
    w.write_to(&mut bytes, &mut src).unwrap();
    bytes
}

#[test]
fn rows_not_a_multiple_of_32_fall_back_to_f16_and_unconvertible_inputs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.gguf");
    let out = dir.path().join("out.gguf");
    // Rows of 48 fit no 32-element block: llama.cpp's `tensor_type_fallback` writes F16
    // (issue 11: this used to be refused).
    std::fs::write(&input, one_tensor_model(GgmlType::F32, vec![48, 4])).unwrap();
    for ft in [
        FileType::Q8_0,
        FileType::Q4_0,
        FileType::Q4KM,
        FileType::Q2K,
    ] {
        let report = quantize_file(&input, &out, ft, &opts(1), &NoProgress).unwrap();
        let t = &report.tensors[0];
        assert_eq!(t.to, GgmlType::F16, "{ft}");
        let f = t.fallback.as_ref().unwrap();
        assert_eq!(f.used, GgmlType::F16, "{ft}");
        assert!(f.reason.contains("must use F16"), "{}", f.reason);
        let file = GgufFile::open(&out).unwrap();
        assert_eq!(file.tensors()[0].info.ty, GgmlType::F16);
    }
    // --no-fallback refuses instead.
    std::fs::remove_file(&out).unwrap();
    let err = quantize_file(
        &input,
        &out,
        FileType::Q8_0,
        &QuantizeFileOptions {
            no_fallback: true,
            ..opts(1)
        },
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(err, QuantizeFileError::Fallbacks { count: 1, .. }),
        "{err:?}"
    );
    assert!(!out.exists());
    // A Q8_K input can be read but not dequantized here, even with --allow-requantize.
    std::fs::write(&input, one_tensor_model(GgmlType::Q8K, vec![256, 4])).unwrap();
    let err = quantize_file(
        &input,
        &out,
        FileType::Q8_0,
        &QuantizeFileOptions {
            allow_requantize: true,
            ..opts(1)
        },
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            QuantizeFileError::UnsupportedInputType {
                ty: GgmlType::Q8K,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!out.exists());
}

/// `quantize_file_multi`: every type from one read of the source, each file identical to what
/// `quantize_file` writes for that type alone (and to llama.cpp's, where SHA256SUMS lists it),
/// with 1 and 2 threads; the inputs stay unchanged and no temp file is left.
#[test]
fn multi_type_pass_writes_the_single_type_files() {
    use loraforge_export::quantize_file_multi;
    let types: Vec<FileType> = FileType::ALL
        .into_iter()
        .filter(|t| t.is_quantized())
        .collect();
    assert!(types.len() >= 14, "{types:?}");
    let sums = std::fs::read_to_string(fixture("SHA256SUMS")).unwrap();
    for (k, input) in ["micro-f16", "micro-r320-tied-f16"].into_iter().enumerate() {
        let src = fixture(&format!("{input}.gguf"));
        let dir = tempfile::tempdir().unwrap();
        let outputs: Vec<(PathBuf, FileType)> = types
            .iter()
            .map(|&t| (dir.path().join(format!("{input}.{t}.gguf")), t))
            .collect();
        let reports = quantize_file_multi(&src, &outputs, &opts(1 + k), &NoProgress).unwrap();
        assert_eq!(reports.len(), outputs.len());
        for ((path, ty), report) in outputs.iter().zip(&reports) {
            let single = dir.path().join(format!("single.{ty}.gguf"));
            let want = quantize_file(&src, &single, *ty, &opts(2), &NoProgress).unwrap();
            assert_eq!(report.sha256, want.sha256, "{input} {ty}");
            assert_eq!(report.output_bytes, want.output_bytes, "{input} {ty}");
            assert_eq!(report.tensors, want.tensors, "{input} {ty}");
            assert_eq!(
                std::fs::read(path).unwrap(),
                std::fs::read(&single).unwrap(),
                "{input} {ty}"
            );
            let name = format!("{input}.{ty}.gguf");
            if sums.lines().any(|l| l.ends_with(&format!("  {name}"))) {
                assert_eq!(report.sha256, listed_sha(&name), "{name} vs llama.cpp");
            }
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.ends_with(".gguf"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
