//! Integration tests against files written by transformers / safetensors (the PEFT fixtures).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use loraforge_hf_model::{
    read_safetensors_header, Dtype, HfModel, HfModelError, SafetensorsShardWriter, TensorSpec,
    WrittenFile,
};
use sha2::{Digest, Sha256};

fn fixture(case: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/peft"
    ))
    .join(case)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Llama's state-dict (module definition) order, which transformers shards by.
fn llama_state_dict_order(layers: usize) -> Vec<String> {
    let mut names = vec!["model.embed_tokens.weight".to_string()];
    for l in 0..layers {
        for m in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
            "input_layernorm",
            "post_attention_layernorm",
        ] {
            names.push(format!("model.layers.{l}.{m}.weight"));
        }
    }
    names.push("model.norm.weight".to_string());
    names
}

fn rewrite(model: &HfModel, order: &[String], out: &Path, max_shard_size: u64) -> Vec<PathBuf> {
    let files = rewrite_files(model, order, out, max_shard_size);
    for f in &files {
        let bytes = std::fs::read(out.join(&f.path)).unwrap();
        assert_eq!(bytes.len() as u64, f.size);
        assert_eq!(Some(hex::encode(Sha256::digest(&bytes))), f.sha256);
    }
    files.into_iter().map(|f| f.path).collect()
}

fn rewrite_files(
    model: &HfModel,
    order: &[String],
    out: &Path,
    max_shard_size: u64,
) -> Vec<WrittenFile> {
    let specs: Vec<TensorSpec> = order
        .iter()
        .map(|n| {
            let t = model.tensor(n).unwrap();
            TensorSpec {
                name: n.clone(),
                dtype: t.dtype,
                shape: t.shape.to_vec(),
            }
        })
        .collect();
    let mut w =
        SafetensorsShardWriter::new(out, specs, max_shard_size, model.parameter_count()).unwrap();
    let names: Vec<String> = w.write_order().iter().map(|s| s.to_string()).collect();
    for n in names {
        let t = model.tensor(&n).unwrap();
        // write in two chunks to exercise chunked writes
        let half = t.data.len() / 2;
        w.write_chunk(&t.data[..half]).unwrap();
        w.write_chunk(&t.data[half..]).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn opens_single_file_model() {
    let m = HfModel::open(&fixture("a_llama_qv/base")).unwrap();
    assert_eq!(m.config_dtype(), Some(Dtype::BF16));
    // tied lm_head is absent, as transformers saves it
    assert!(!m.contains("lm_head.weight"));
    let names = m.tensor_names();
    assert_eq!(names.len(), 20); // case.json n_tensors_base
    let t = m.tensor("model.embed_tokens.weight").unwrap();
    assert_eq!(t.shape, &[1000, 64]);
    assert_eq!(t.dtype, Dtype::BF16);
    assert_eq!(t.data.len(), 128_000);
    assert_eq!(t.to_f32_vec().len(), 64_000);
    let mut buf = vec![0f32; 3];
    assert!(matches!(
        t.read_f32_into(&mut buf),
        Err(HfModelError::BufferSize { .. })
    ));
    assert!(matches!(
        m.tensor("nope"),
        Err(HfModelError::TensorNotFound { .. })
    ));
}

#[test]
fn opens_sharded_model_and_counts_parameters_like_transformers() {
    let dir = fixture("g_llama_sharded/base");
    let m = HfModel::open(&dir).unwrap();
    assert_eq!(m.weight_files().len(), 3);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(
        m.parameter_count(),
        index["metadata"]["total_parameters"].as_u64().unwrap()
    );
    assert_eq!(
        m.data_size(),
        index["metadata"]["total_size"].as_u64().unwrap()
    );
    assert_eq!(m.tensor_names()[0], "model.embed_tokens.weight");
    // same values as the unsharded expected/ (the merge leaves embeddings unchanged)
    let single = HfModel::open(&fixture("a_llama_qv/base")).unwrap();
    assert_eq!(single.tensor_names().len(), m.tensor_names().len());
}

#[test]
fn single_file_rewrite_is_byte_identical_to_safetensors_output() {
    let dir = fixture("a_llama_qv/base");
    let m = HfModel::open(&dir).unwrap();
    let out = tempdir();
    let order: Vec<String> = m.tensor_names().iter().map(|s| s.to_string()).collect();
    let files = rewrite(&m, &order, out.path(), 5_000_000_000);
    assert_eq!(files, vec![PathBuf::from("model.safetensors")]);
    assert_eq!(
        std::fs::read(out.path().join("model.safetensors")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap()
    );
}

#[test]
fn sharded_rewrite_matches_save_pretrained_byte_for_byte() {
    // g_llama_sharded was saved with max_shard_size="100KB" (decimal: 100_000 bytes)
    let dir = fixture("g_llama_sharded/base");
    let m = HfModel::open(&dir).unwrap();
    let out = tempdir();
    let files = rewrite(&m, &llama_state_dict_order(2), out.path(), 100_000);
    assert_eq!(files.len(), 4);
    for f in [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
        "model-00003-of-00003.safetensors",
    ] {
        assert_eq!(
            std::fs::read(out.path().join(f)).unwrap(),
            std::fs::read(dir.join(f)).unwrap(),
            "{f}"
        );
    }
    let ours: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    assert_eq!(ours, theirs);
}

#[test]
fn writer_rejects_wrong_order_and_size() {
    let out = tempdir();
    let specs = vec![
        TensorSpec {
            name: "b".into(),
            dtype: Dtype::F16,
            shape: vec![2],
        },
        TensorSpec {
            name: "a".into(),
            dtype: Dtype::F16,
            shape: vec![2],
        },
    ];
    let mut w = SafetensorsShardWriter::new(out.path(), specs, 1000, 4).unwrap();
    assert_eq!(w.write_order(), vec!["a", "b"]);
    assert!(matches!(
        w.write_tensor("b", &[0; 4]),
        Err(HfModelError::WriteOrder { .. })
    ));
    assert!(matches!(
        w.write_tensor("a", &[0; 3]),
        Err(HfModelError::WriteSize { .. })
    ));
    w.write_tensor("a", &[0; 4]).unwrap();
    assert!(matches!(
        w.finish(),
        Err(HfModelError::WriteIncomplete { .. })
    ));
}

fn write_raw(dir: &Path, header: &str, data_len: usize) -> PathBuf {
    let path = dir.join("x.safetensors");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, data_len));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn header_defects_are_typed_errors_naming_the_file() {
    let d = tempdir();
    // header length past end of file
    let p = d.path().join("short.safetensors");
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(&p, &bytes).unwrap();
    let e = read_safetensors_header(&p).unwrap_err();
    assert!(matches!(e, HfModelError::HeaderPastEof { .. }), "{e}");
    assert!(e.to_string().contains("short.safetensors"));
    // fewer than 8 bytes
    std::fs::write(&p, [1u8, 2]).unwrap();
    assert!(matches!(
        read_safetensors_header(&p),
        Err(HfModelError::TruncatedFile { .. })
    ));
    // absurd header length
    std::fs::write(&p, u64::MAX.to_le_bytes()).unwrap();
    assert!(matches!(
        read_safetensors_header(&p),
        Err(HfModelError::HeaderTooLarge { .. })
    ));
    // bad JSON
    let p = write_raw(d.path(), "{\"a\": [", 0);
    assert!(matches!(
        read_safetensors_header(&p),
        Err(HfModelError::HeaderJson { .. })
    ));
    // overlap
    let p = write_raw(
        d.path(),
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        12,
    );
    assert!(matches!(
        read_safetensors_header(&p),
        Err(HfModelError::OverlappingTensors { .. })
    ));
    // hole
    let p = write_raw(
        d.path(),
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
        12,
    );
    assert!(matches!(
        read_safetensors_header(&p),
        Err(HfModelError::Hole { .. })
    ));
    // trailing bytes
    let p = write_raw(
        d.path(),
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        8,
    );
    assert!(matches!(
        read_safetensors_header(&p),
        Err(HfModelError::TrailingBytes { .. })
    ));
    // offsets past the buffer
    let p = write_raw(
        d.path(),
        r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
        8,
    );
    assert!(matches!(
        read_safetensors_header(&p),
        Err(HfModelError::OffsetsOutOfRange { .. })
    ));
    // shape/bytes disagreement
    let p = write_raw(
        d.path(),
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        8,
    );
    assert!(matches!(
        read_safetensors_header(&p),
        Err(HfModelError::SizeMismatch { .. })
    ));
    // unsupported dtype names the tensor
    let p = write_raw(
        d.path(),
        r#"{"ids":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
        8,
    );
    let e = read_safetensors_header(&p).unwrap_err();
    assert!(matches!(e, HfModelError::UnsupportedDtype { .. }));
    assert!(e.to_string().contains("ids"));
}

#[test]
fn folder_errors() {
    let d = tempdir();
    assert!(matches!(
        HfModel::open(d.path()),
        Err(HfModelError::MissingConfig { .. })
    ));
    std::fs::write(d.path().join("config.json"), "{}").unwrap();
    assert!(matches!(
        HfModel::open(d.path()),
        Err(HfModelError::NoWeights { .. })
    ));
}

#[test]
fn index_that_disagrees_with_the_shards() {
    let src = fixture("g_llama_sharded/base");
    let d = tempdir();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
    }
    let index_path = d.path().join("model.safetensors.index.json");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let open_with = |edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| {
        let mut v = index.clone();
        edit(v["weight_map"].as_object_mut().unwrap());
        std::fs::write(&index_path, serde_json::to_vec(&v).unwrap()).unwrap();
        HfModel::open(d.path())
    };
    // a tensor of shard 2 (which holds several): every shard stays named by the index
    let name = index["weight_map"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, f)| *f == "model-00002-of-00003.safetensors")
        .map(|(k, _)| k.clone())
        .unwrap();
    // the index puts it in a shard that does not hold it
    let e = open_with(&|m| {
        m.insert(name.clone(), "model-00003-of-00003.safetensors".into());
    })
    .unwrap_err();
    assert!(
        matches!(e, HfModelError::IndexTensorMissing { ref tensor, .. } if *tensor == name),
        "{e}"
    );
    // the index names a tensor no shard holds
    let e = open_with(&|m| {
        m.insert(
            "ghost.weight".into(),
            "model-00001-of-00003.safetensors".into(),
        );
    })
    .unwrap_err();
    assert!(
        matches!(e, HfModelError::IndexTensorMissing { ref tensor, .. } if tensor == "ghost.weight"),
        "{e}"
    );
    // the index leaves out a tensor of a shard
    let e = open_with(&|m| {
        m.remove(&name);
    })
    .unwrap_err();
    assert!(matches!(e, HfModelError::InvalidIndex { .. }), "{e}");
    assert!(open_with(&|_| {}).is_ok());
}

/// Resident kB of the mapping that contains `addr` (from `/proc/self/smaps`): unaffected by what
/// other test threads allocate.
#[cfg(target_os = "linux")]
fn mapping_rss_kib(addr: usize) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
        }
        if inside && line.starts_with("Rss:") {
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("no mapping contains {addr:#x}");
}

#[cfg(target_os = "linux")]
#[test]
fn release_range_drops_only_that_part_of_a_tensor_and_data_stays_readable() {
    let tmp = tempdir();
    let n: usize = 16 << 20; // 16 Mi f32 = 64 MiB
    let specs = vec![TensorSpec {
        name: "w".into(),
        dtype: Dtype::F32,
        shape: vec![n],
    }];
    let mut writer = SafetensorsShardWriter::new(tmp.path(), specs, u64::MAX, n as u64).unwrap();
    let bytes: Vec<u8> = (0..n as u32).flat_map(|i| i.to_le_bytes()).collect();
    writer.write_tensor("w", &bytes).unwrap();
    writer.finish().unwrap();
    std::fs::write(tmp.path().join("config.json"), "{}").unwrap();
    let model = HfModel::open(tmp.path()).unwrap();
    let view = model.tensor("w").unwrap();
    let addr = view.data.as_ptr() as usize;
    let touched: u64 = view.data.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    let full = mapping_rss_kib(addr);
    assert!(
        full >= 60 << 10,
        "all 64 MiB resident after reading: {full} kB"
    );
    model.release_range("w", 0..view.data.len() / 2);
    let half = mapping_rss_kib(addr);
    assert!(
        half <= full - (30 << 10) && half >= 30 << 10,
        "the first half dropped, the second kept: {full} kB -> {half} kB"
    );
    // Released pages read back from the file.
    assert_eq!(view.data, &bytes[..]);
    let again: u64 = view.data.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    assert_eq!(touched, again);
    model.release("w");
    assert!(mapping_rss_kib(addr) < 1 << 10, "whole tensor released");
}
