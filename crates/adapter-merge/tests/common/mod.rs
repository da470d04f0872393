//! Helpers shared by the integration tests: fixture paths and adapter writing.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use loraforge_hf_model::{Dtype, SafetensorsFile, SafetensorsShardWriter, TensorSpec};

pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/peft"
    ))
}

#[derive(Clone)]
pub struct T {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

pub fn adapter_tensors(case: &str) -> Vec<T> {
    let f = SafetensorsFile::open(
        &fixtures()
            .join(case)
            .join("adapter/adapter_model.safetensors"),
    )
    .unwrap();
    f.tensor_names()
        .iter()
        .map(|n| {
            let v = f.tensor(n).unwrap();
            T {
                name: n.to_string(),
                dtype: v.dtype,
                shape: v.shape.to_vec(),
                data: v.data.to_vec(),
            }
        })
        .collect()
}

pub fn adapter_config(case: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(fixtures().join(case).join("adapter/adapter_config.json")).unwrap(),
    )
    .unwrap()
}

/// Writes an adapter folder with the given config and tensors.
pub fn write_adapter(dir: &Path, config: &serde_json::Value, tensors: &[T]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("adapter_config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let specs = tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    let mut w = SafetensorsShardWriter::new(&scratch, specs, u64::MAX, 0).unwrap();
    let order: Vec<String> = w.write_order().iter().map(|s| s.to_string()).collect();
    for n in order {
        let t = tensors.iter().find(|t| t.name == n).unwrap();
        w.write_tensor(&n, &t.data).unwrap();
    }
    w.finish().unwrap();
    std::fs::rename(
        scratch.join("model.safetensors"),
        dir.join("adapter_model.safetensors"),
    )
    .unwrap();
    std::fs::remove_dir(&scratch).unwrap();
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `n` deterministic values in `[-scale/2, scale/2]` (xorshift32).
pub fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as f32 / u32::MAX as f32 - 0.5) * scale
        })
        .collect()
}
