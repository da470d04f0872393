//! GGUF reader and writer against files written by the reference tools (gguf-py 0.19.0 and
//! llama.cpp's `llama_model_quantize`), negative cases for every reader/writer error, and a
//! write → read property test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};

use loraforge_gguf::{
    inspect, FormatError, GgufFile, GgufWriter, InspectOptions, Metadata, MetadataArray,
    MetadataValue, SourceError, TensorInfo, WriteError, WriteOptions,
};
use loraforge_quantize::GgmlType;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn fixture(rel: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures")).join(rel)
}

/// sha256 listed for `name` in the `SHA256SUMS` of its directory.
fn listed_sha(path: &Path) -> String {
    let sums = std::fs::read_to_string(path.parent().unwrap().join("SHA256SUMS")).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    sums.lines()
        .find_map(|l| {
            let (sha, file) = l.split_once("  ")?;
            (file == name).then(|| sha.to_owned())
        })
        .unwrap()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Rewrites `file` with our writer: same metadata, tensors and data.
fn rewrite(file: &GgufFile) -> Vec<u8> {
    let mut w = GgufWriter::with_metadata(file.metadata().clone());
    for t in file.tensors() {
        w.add_tensor(t.info.clone()).unwrap();
    }
    let mut out = Vec::new();
    let mut source = |i: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        out.write_all(file.tensor_data(i))?;
        Ok(())
    };
    w.write_to(&mut out, &mut source).unwrap();
    out
}

const QUANT_FILES: [&str; 12] = [
    "micro-f16.gguf",
    "micro-f16.q8_0.gguf",
    "micro-f16.q4_K_M.gguf",
    "micro-f16.q4_K_S.gguf",
    "micro-f32.gguf",
    "micro-f32.q8_0.gguf",
    "micro-f32.q4_K_M.gguf",
    "micro-f32.q4_K_S.gguf",
    "micro-r320-tied-f16.gguf",
    "micro-r320-tied-f16.q8_0.gguf",
    "micro-r320-tied-f16.q4_K_M.gguf",
    "micro-r320-tied-f16.q4_K_S.gguf",
];

#[test]
fn reference_files_are_read_and_rewritten_byte_for_byte() {
    let mut files: Vec<PathBuf> = QUANT_FILES
        .iter()
        .map(|f| fixture(&format!("quant-files/{f}")))
        .collect();
    files.push(fixture("gguf-format/all-types.gguf"));
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(sha(&bytes), listed_sha(&path), "{}", path.display());
        let file = GgufFile::open(&path).unwrap();
        assert_eq!(file.bytes(), &bytes[..]);
        let again = rewrite(&file);
        assert!(again == bytes, "rewrite of {} differs", path.display());
    }
}

#[test]
fn tensor_table_matches_llama_cpp_listing() {
    // `*.types.txt` were written from llama.cpp's own view of its output files.
    for f in QUANT_FILES.iter().filter(|f| f.matches('.').count() == 2) {
        let path = fixture(&format!("quant-files/{f}"));
        let listing = std::fs::read_to_string(path.with_extension("types.txt")).unwrap();
        let expected: Vec<(String, String, String, u64)> = listing
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let c: Vec<&str> = l.split('\t').collect();
                (
                    c[0].to_owned(),
                    c[1].to_lowercase(),
                    c[2].to_owned(),
                    c[3].parse().unwrap(),
                )
            })
            .collect();
        let file = GgufFile::open(&path).unwrap();
        let got: Vec<(String, String, String, u64)> = file
            .tensors()
            .iter()
            .map(|t| {
                let dims: Vec<String> = t.info.dims.iter().map(u64::to_string).collect();
                (
                    t.info.name.clone(),
                    t.info.ty.name().to_lowercase(),
                    dims.join("x"),
                    t.size,
                )
            })
            .collect();
        assert_eq!(got, expected, "{f}");
        let ftype = listing
            .lines()
            .next()
            .unwrap()
            .split("general.file_type=")
            .nth(1)
            .unwrap()
            .trim_end_matches(')')
            .parse::<u32>()
            .unwrap();
        assert_eq!(
            file.metadata().get("general.file_type"),
            Some(&MetadataValue::U32(ftype))
        );
        assert_eq!(
            file.metadata().get("general.quantization_version"),
            Some(&MetadataValue::U32(2))
        );
    }
}

#[test]
fn every_value_type_written_by_gguf_py_is_read_exactly() {
    let file = GgufFile::open(&fixture("gguf-format/all-types.gguf")).unwrap();
    let expected: Metadata = [
        ("general.architecture", MetadataValue::from("llama")),
        ("general.alignment", 64u32.into()),
        ("t.u8", 200u8.into()),
        ("t.i8", (-100i8).into()),
        ("t.u16", 60000u16.into()),
        ("t.i16", (-30000i16).into()),
        ("t.u32", 4_000_000_000u32.into()),
        ("t.i32", (-2_000_000_000i32).into()),
        ("t.f32", 1.5f32.into()),
        ("t.bool", true.into()),
        ("t.str", "héllo\nwörld".into()),
        ("t.u64", 18_000_000_000_000_000_000u64.into()),
        ("t.i64", (-9_000_000_000_000_000_000i64).into()),
        ("t.f64", (-0.25f64).into()),
        ("t.arr_i32", vec![1i32, -2, 3].into()),
        ("t.arr_f32", vec![0.5f32, -1.0].into()),
        ("t.arr_str", vec!["a", "", "ü c"].into()),
        ("t.arr_bool", vec![true, false].into()),
        (
            "t.arr_nested",
            vec![
                MetadataArray::I32(vec![1, 2]),
                MetadataArray::String(vec!["x".into()]),
            ]
            .into(),
        ),
    ]
    .into_iter()
    .collect();
    assert!(
        file.metadata().bitwise_eq(&expected),
        "{:?}",
        file.metadata()
    );
    assert_eq!(file.alignment(), 64);
    let t: Vec<(&str, GgmlType, &[u64], u64)> = file
        .tensors()
        .iter()
        .map(|t| (t.info.name.as_str(), t.info.ty, &t.info.dims[..], t.offset))
        .collect();
    // Offsets as gguf-py's reader reports them (absolute: 832, 896, 1152, 1344).
    assert_eq!(file.data_offset(), 832);
    assert_eq!(
        t,
        [
            ("a.f32", GgmlType::F32, &[5u64, 3][..], 0),
            ("b.f16", GgmlType::F16, &[64, 2][..], 64),
            ("c.q8_0", GgmlType::Q8_0, &[64, 2][..], 320),
            ("d.scalarish", GgmlType::F32, &[1][..], 512),
        ]
    );
    assert_eq!(file.tensor_data(3), 7.0f32.to_le_bytes());
}

#[test]
fn write_to_path_renames_into_place_and_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.gguf");
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama");
    w.add_tensor(TensorInfo::new("x", GgmlType::F16, vec![4, 2]))
        .unwrap();
    let mut source = |_: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        out.write_all(&[1u8; 16])?;
        Ok(())
    };
    let written = w
        .write_to_path(&dest, &mut source, &WriteOptions { sha256: true })
        .unwrap();
    let bytes = std::fs::read(&dest).unwrap();
    assert_eq!(written.bytes, bytes.len() as u64);
    assert_eq!(written.sha256.as_deref(), Some(sha(&bytes).as_str()));
    assert_eq!(bytes.len() % 32, 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

fn failing_write(source: &mut dyn loraforge_gguf::TensorSource) -> WriteError {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.gguf");
    std::fs::write(&dest, b"previous").unwrap();
    let mut w = GgufWriter::new();
    w.add_tensor(TensorInfo::new("x", GgmlType::F32, vec![4]))
        .unwrap();
    let err = w
        .write_to_path(&dest, source, &WriteOptions::default())
        .unwrap_err();
    // Nothing left behind, the destination untouched.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(std::fs::read(&dest).unwrap(), b"previous");
    err
}

#[test]
fn short_long_and_failing_sources_are_errors_and_leave_nothing() {
    let mut short = |_: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        out.write_all(&[0; 15])?;
        Ok(())
    };
    assert!(matches!(
        failing_write(&mut short),
        WriteError::TensorSizeMismatch {
            expected: 16,
            written: 15,
            ..
        }
    ));
    let mut long = |_: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        out.write_all(&[0; 17])?;
        Ok(())
    };
    assert!(matches!(
        failing_write(&mut long),
        WriteError::TensorSizeMismatch { expected: 16, .. }
    ));
    let mut failing = |_: usize, _: &TensorInfo, _: &mut dyn Write| -> Result<(), SourceError> {
        Err("boom".into())
    };
    match failing_write(&mut failing) {
        WriteError::Source { tensor, source } => {
            assert_eq!(tensor, "x");
            assert_eq!(source.to_string(), "boom");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn writer_rejects_what_ggml_would_reject() {
    let mut w = GgufWriter::new();
    let long = "n".repeat(64);
    assert!(matches!(
        w.add_tensor(TensorInfo::new(long, GgmlType::F32, vec![1])),
        Err(WriteError::TensorNameTooLong { len: 64, .. })
    ));
    assert!(w
        .add_tensor(TensorInfo::new("n".repeat(63), GgmlType::F32, vec![1]))
        .is_ok());
    assert!(matches!(
        w.add_tensor(TensorInfo::new("n".repeat(63), GgmlType::F32, vec![1])),
        Err(WriteError::DuplicateTensor { .. })
    ));
    assert!(matches!(
        w.add_tensor(TensorInfo::new("d", GgmlType::F32, vec![1; 5])),
        Err(WriteError::TooManyDims { n_dims: 5, .. })
    ));
    assert!(matches!(
        w.add_tensor(TensorInfo::new("q", GgmlType::Q4K, vec![320, 2])),
        Err(WriteError::RowNotBlockMultiple {
            row_len: 320,
            block: 256,
            ..
        })
    ));
    assert!(matches!(
        w.add_tensor(TensorInfo::new("big", GgmlType::F32, vec![u64::MAX / 2, 4])),
        Err(WriteError::TensorTooLarge { .. })
    ));
    w.set("general.alignment", 48u32);
    assert!(matches!(
        w.layout(),
        Err(WriteError::AlignmentValue { value: 48 })
    ));
    w.set("general.alignment", 64u64);
    assert!(matches!(w.layout(), Err(WriteError::AlignmentType { .. })));
    w.set("general.alignment", 64u32);
    assert_eq!(w.layout().unwrap().alignment, 64);
    w.metadata_mut().set("", 1u8);
    assert!(matches!(w.layout(), Err(WriteError::EmptyKey { .. })));
}

/// A small valid file to corrupt: one KV `a` = u32 7, one F32 tensor `t` of 4 elements.
fn small_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("a", 7u32);
    w.add_tensor(TensorInfo::new("t", GgmlType::F32, vec![4]))
        .unwrap();
    let mut out = Vec::new();
    let mut source = |_: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        out.write_all(&[0; 16])?;
        Ok(())
    };
    w.write_to(&mut out, &mut source).unwrap();
    out
}

// Byte offsets in `small_file`.
const KV_KEY_LEN: usize = 24;
const KV_TYPE: usize = 33;
const KV_VALUE: usize = 37;
const TI_NAME_LEN: usize = 41;
const TI_NAME: usize = 49;
const TI_NDIMS: usize = 50;
const TI_DIM0: usize = 54;
const TI_TYPE: usize = 62;
const TI_OFFSET: usize = 66;

fn parse_err(bytes: &[u8]) -> FormatError {
    GgufFile::from_bytes(bytes.to_vec()).unwrap_err()
}

fn patch(bytes: &[u8], at: usize, with: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + with.len()].copy_from_slice(with);
    b
}

#[test]
fn every_format_error_is_detected() {
    let good = small_file();
    assert_eq!(&good[TI_NAME..TI_NAME + 1], b"t");
    assert!(GgufFile::from_bytes(good.clone()).is_ok());

    assert!(matches!(
        parse_err(&good[..3]),
        FormatError::Truncated { .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, 0, b"GGUG")),
        FormatError::BadMagic { .. }
    ));
    for v in [0u32, 1, 4, 0x0300_0000] {
        assert!(matches!(
            parse_err(&patch(&good, 4, &v.to_le_bytes())),
            FormatError::UnsupportedVersion { version } if version == v
        ));
    }
    // Version 2 has the same layout and is accepted.
    assert!(GgufFile::from_bytes(patch(&good, 4, &2u32.to_le_bytes())).is_ok());
    assert!(matches!(
        parse_err(&patch(&good, 8, &u64::MAX.to_le_bytes())),
        FormatError::TooManyTensors { .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, 16, &(1u64 << 40).to_le_bytes())),
        FormatError::TooManyKeys { .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, KV_KEY_LEN, &u64::MAX.to_le_bytes())),
        FormatError::StringTooLong { .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, KV_KEY_LEN + 8, &[0xff])),
        FormatError::InvalidUtf8 { .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, KV_TYPE, &13u32.to_le_bytes())),
        FormatError::InvalidValueType { type_id: 13, .. }
    ));
    // u32 7 → bool 2 (the value's first byte becomes the bool, the rest misparses later).
    assert!(matches!(
        parse_err(&patch(
            &patch(&good, KV_TYPE, &7u32.to_le_bytes()),
            KV_VALUE,
            &[2]
        )),
        FormatError::InvalidBool { value: 2, .. }
    ));
    // Array of u64 with a huge count; array nesting past the cap.
    let mut arr = good[..KV_TYPE].to_vec();
    arr.extend_from_slice(&9u32.to_le_bytes());
    arr.extend_from_slice(&10u32.to_le_bytes());
    arr.extend_from_slice(&(1u64 << 27).to_le_bytes());
    assert!(matches!(parse_err(&arr), FormatError::ArrayTooLong { .. }));
    let mut deep = good[..KV_TYPE].to_vec();
    deep.extend_from_slice(&9u32.to_le_bytes());
    for _ in 0..20 {
        deep.extend_from_slice(&9u32.to_le_bytes());
        deep.extend_from_slice(&1u64.to_le_bytes());
    }
    deep.extend_from_slice(&[0; 64]);
    assert!(matches!(parse_err(&deep), FormatError::ArrayTooDeep { .. }));
    // Empty key, duplicate key.
    let mut two = GgufWriter::new();
    two.set("a", 1u8).set("b", 2u8);
    let mut bytes = Vec::new();
    two.write_to(
        &mut bytes,
        &mut |_: usize, _: &TensorInfo, _: &mut dyn Write| Ok(()),
    )
    .unwrap();
    let dup = patch(&bytes, 24 + 8 + 1 + 4 + 1 + 8, b"a");
    assert!(matches!(parse_err(&dup), FormatError::DuplicateKey { key } if key == "a"));
    let mut empty = bytes[..24].to_vec();
    empty.extend_from_slice(&0u64.to_le_bytes());
    empty.extend_from_slice(&[0; 64]);
    assert!(matches!(
        parse_err(&empty),
        FormatError::EmptyKey { index: 0 }
    ));
    // Alignment of the wrong type or value.
    let mut al = GgufWriter::new();
    al.set("general.alignment", 32u32);
    let mut bytes = Vec::new();
    al.write_to(
        &mut bytes,
        &mut |_: usize, _: &TensorInfo, _: &mut dyn Write| Ok(()),
    )
    .unwrap();
    let value_at = 24 + 8 + "general.alignment".len() + 4;
    assert!(matches!(
        parse_err(&patch(&bytes, value_at, &24u32.to_le_bytes())),
        FormatError::AlignmentValue { value: 24 }
    ));
    assert!(matches!(
        parse_err(&patch(&bytes, value_at - 4, &5u32.to_le_bytes())),
        FormatError::AlignmentType { .. }
    ));
    // Tensor infos.
    assert!(matches!(
        parse_err(&patch(&good, TI_NAME_LEN, &64u64.to_le_bytes())),
        FormatError::TensorNameTooLong { len: 64, .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, TI_NDIMS, &5u32.to_le_bytes())),
        FormatError::TooManyDims { n_dims: 5, .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, TI_DIM0, &u64::MAX.to_le_bytes())),
        FormatError::NegativeDim { .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, TI_DIM0, &(i64::MAX as u64).to_le_bytes())),
        FormatError::TensorTooLarge { .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, TI_TYPE, &4u32.to_le_bytes())),
        FormatError::UnsupportedTensorType { type_id: 4, .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, TI_TYPE, &8u32.to_le_bytes())),
        FormatError::RowNotBlockMultiple { block: 32, .. }
    ));
    assert!(matches!(
        parse_err(&patch(&good, TI_OFFSET, &32u64.to_le_bytes())),
        FormatError::BadTensorOffset {
            offset: 32,
            expected: 0,
            ..
        }
    ));
    assert!(matches!(
        parse_err(&good[..good.len() - 17]),
        FormatError::TensorOutOfBounds { .. }
    ));
    // Final padding is optional (llama.cpp's mmap loader only needs the data in bounds).
    assert!(GgufFile::from_bytes(good[..good.len() - 16].to_vec()).is_ok());
}

#[test]
fn duplicate_tensor_names_are_rejected() {
    let mut w = GgufWriter::new();
    w.add_tensor(TensorInfo::new("a", GgmlType::F32, vec![1]))
        .unwrap();
    w.add_tensor(TensorInfo::new("b", GgmlType::F32, vec![1]))
        .unwrap();
    let mut bytes = Vec::new();
    let mut src = |_: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        out.write_all(&[0; 4])?;
        Ok(())
    };
    w.write_to(&mut bytes, &mut src).unwrap();
    let second_name = 24 + (8 + 1 + 4 + 8 + 4 + 8) + 8;
    assert_eq!(bytes[second_name], b'b');
    bytes[second_name] = b'a';
    assert!(matches!(
        parse_err(&bytes),
        FormatError::DuplicateTensor { name } if name == "a"
    ));
}

#[test]
fn inspect_summarizes_long_arrays_and_lists_tensors() {
    let file = GgufFile::open(&fixture("quant-files/micro-f16.q4_K_M.gguf")).unwrap();
    let report = inspect(&file, &InspectOptions::default());
    assert_eq!(report.tensors.len(), file.tensors().len());
    assert_eq!(report.tensors[0].name, "output.weight");
    assert_eq!(report.tensors[0].ty, "q6_K");
    assert_eq!(report.type_counts.get("q6_K"), Some(&3));
    let json = serde_json::to_value(&report).unwrap();
    let tokens = json["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "tokenizer.ggml.tokens");
    if let Some(tokens) = tokens {
        assert_eq!(tokens["type"], "arr[str]");
        assert_eq!(tokens["value"].as_array().unwrap().len(), 8);
        assert_eq!(tokens["truncated"], true);
    }
    let text = report.to_string();
    assert!(text.contains("general.file_type"));
    assert!(text.contains("output.weight"));
    assert!(text.contains("q6_K: 3"));
}

fn arb_array(depth: u32) -> BoxedStrategy<MetadataArray> {
    let leaf = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..5).prop_map(MetadataArray::U8),
        prop::collection::vec(any::<i16>(), 0..5).prop_map(MetadataArray::I16),
        prop::collection::vec(any::<u32>(), 0..5).prop_map(MetadataArray::U32),
        prop::collection::vec(any::<i64>(), 0..5).prop_map(MetadataArray::I64),
        prop::collection::vec(any::<u32>().prop_map(f32::from_bits), 0..5)
            .prop_map(MetadataArray::F32),
        prop::collection::vec(any::<u64>().prop_map(f64::from_bits), 0..5)
            .prop_map(MetadataArray::F64),
        prop::collection::vec(any::<bool>(), 0..5).prop_map(MetadataArray::Bool),
        prop::collection::vec(".{0,6}", 0..5).prop_map(MetadataArray::String),
    ];
    if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![
            3 => leaf,
            1 => prop::collection::vec(arb_array(depth - 1), 0..3).prop_map(MetadataArray::Array),
        ]
        .boxed()
    }
}

fn arb_value() -> impl Strategy<Value = MetadataValue> {
    prop_oneof![
        any::<u8>().prop_map(MetadataValue::U8),
        any::<i8>().prop_map(MetadataValue::I8),
        any::<u16>().prop_map(MetadataValue::U16),
        any::<i16>().prop_map(MetadataValue::I16),
        any::<u32>().prop_map(MetadataValue::U32),
        any::<i32>().prop_map(MetadataValue::I32),
        any::<u32>().prop_map(|b| MetadataValue::F32(f32::from_bits(b))),
        any::<bool>().prop_map(MetadataValue::Bool),
        ".{0,12}".prop_map(MetadataValue::String),
        any::<u64>().prop_map(MetadataValue::U64),
        any::<i64>().prop_map(MetadataValue::I64),
        any::<u64>().prop_map(|b| MetadataValue::F64(f64::from_bits(b))),
        arb_array(2).prop_map(MetadataValue::Array),
    ]
}

fn arb_tensor() -> impl Strategy<Value = (GgmlType, Vec<u64>)> {
    let ty = prop::sample::select(vec![
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
        GgmlType::Q5_1,
    ]);
    (ty, 1u64..3, prop::collection::vec(1u64..4, 0..4)).prop_map(|(ty, blocks, rest)| {
        let mut dims = vec![blocks * ty.block_size() as u64];
        dims.extend(rest);
        (ty, dims)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn write_then_read_round_trips(
        kvs in prop::collection::vec(("[a-z.]{1,10}", arb_value()), 0..8),
        tensors in prop::collection::vec(arb_tensor(), 0..5),
        align_pow in prop::option::of(3u32..8),
        seed in any::<u8>(),
    ) {
        let mut w = GgufWriter::new();
        for (k, v) in &kvs {
            w.set(k.clone(), v.clone());
        }
        if let Some(p) = align_pow {
            w.set("general.alignment", 1u32 << p);
        }
        let mut datas = Vec::new();
        for (i, (ty, dims)) in tensors.iter().enumerate() {
            let info = TensorInfo::new(format!("tensor.{i}"), *ty, dims.clone());
            let n = info.n_bytes().unwrap() as usize;
            datas.push((0..n).map(|j| (j as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>());
            w.add_tensor(info).unwrap();
        }
        let mut bytes = Vec::new();
        let mut src = |i: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
            out.write_all(&datas[i])?;
            Ok(())
        };
        let n = w.write_to(&mut bytes, &mut src).unwrap();
        prop_assert_eq!(n, bytes.len() as u64);
        let file = GgufFile::from_bytes(bytes.clone()).unwrap();
        prop_assert!(file.metadata().bitwise_eq(w.metadata()));
        prop_assert_eq!(file.tensors().len(), tensors.len());
        for (i, t) in file.tensors().iter().enumerate() {
            prop_assert_eq!(&t.info, &w.tensors()[i]);
            prop_assert_eq!(file.tensor_data(i), &datas[i][..]);
            prop_assert_eq!((file.data_offset() + t.offset) % file.alignment(), 0);
        }
        prop_assert_eq!(rewrite(&file), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = GgufFile::from_bytes(bytes);
    }

    #[test]
    fn corrupted_valid_files_never_panic(at in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
        let mut w = GgufWriter::new();
        w.set("k", vec!["a", "bc"]).set("n", vec![MetadataArray::U8(vec![1])]);
        w.add_tensor(TensorInfo::new("t", GgmlType::Q8_0, vec![32, 2])).unwrap();
        let mut bytes = Vec::new();
        let mut src = |_: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
            out.write_all(&[3; 68])?;
            Ok(())
        };
        w.write_to(&mut bytes, &mut src).unwrap();
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(bytes.len().saturating_sub(cut % 8));
        if let Ok(f) = GgufFile::from_bytes(bytes) {
            for i in 0..f.tensors().len() {
                let _ = f.tensor_data(i);
            }
        }
    }
}

#[test]
fn inspect_json_keeps_types_and_nested_arrays() {
    let file = GgufFile::open(&fixture("gguf-format/all-types.gguf")).unwrap();
    let json = serde_json::to_value(inspect(&file, &InspectOptions::default())).unwrap();
    let meta = json["metadata"].as_array().unwrap();
    let get = |k: &str| meta.iter().find(|m| m["key"] == k).unwrap().clone();
    assert_eq!(get("t.u64")["value"], 18_000_000_000_000_000_000u64);
    assert_eq!(get("t.i8")["type"], "i8");
    assert_eq!(get("t.str")["value"], "héllo\nwörld");
    let nested = get("t.arr_nested");
    assert_eq!(nested["type"], "arr[arr]");
    assert_eq!(nested["len"], 2);
    assert_eq!(nested["value"], serde_json::json!([[1, 2], ["x"]]));
    assert_eq!(json["alignment"], 64);
    assert_eq!(json["tensors"][2]["type"], "q8_0");
    assert_eq!(json["tensors"][2]["offset"], 1152);
    assert_eq!(json["tensors"][2]["bytes"], 136);
    // The text rendering escapes newlines and shows nested arrays.
    let text = inspect(&file, &InspectOptions::default()).to_string();
    assert!(text.contains(r#""héllo\nwörld""#), "{text}");
    assert!(text.contains(r#"[[1, 2], ["x"]] (2 items)"#), "{text}");
}

#[test]
fn output_failures_are_io_errors() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "disk full",
            ))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = GgufWriter::new();
    w.add_tensor(TensorInfo::new("x", GgmlType::F32, vec![4]))
        .unwrap();
    let mut src = |_: usize, _: &TensorInfo, out: &mut dyn Write| -> Result<(), SourceError> {
        out.write_all(&[0; 16])?;
        Ok(())
    };
    assert!(matches!(
        w.write_to(&mut Full, &mut src),
        Err(WriteError::Io(e)) if e.kind() == std::io::ErrorKind::StorageFull
    ));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("out.gguf");
    assert!(matches!(
        w.write_to_path(&missing, &mut src, &WriteOptions::default()),
        Err(WriteError::Staging(_))
    ));
}
