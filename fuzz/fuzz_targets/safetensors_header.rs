//! Fuzz the safetensors header reader (and opening a one-file model folder around it): any
//! file must be read or refused with an error, never panic; what is accepted must describe a
//! data buffer covered exactly, once per tensor name, with sizes that match the shapes.
#![no_main]

use std::collections::HashSet;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use loraforge_hf_model::{read_safetensors_header, HfModel};

/// One scratch folder per process (a fuzzing process runs one input at a time).
fn scratch() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"));
    let path = dir.path().to_path_buf();
    std::fs::write(path.join("config.json"), b"{\"model_type\":\"llama\"}").expect("config");
    path
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let path = dir.join("model.safetensors");
    std::fs::write(&path, data).expect("scratch write");
    let Ok(header) = read_safetensors_header(&path) else {
        return;
    };
    let mut covered = 0u64;
    let mut names = HashSet::new();
    for t in &header.tensors {
        assert!(names.insert(t.name.as_str()), "tensor {} listed twice", t.name);
        assert_eq!(t.data_offsets.0, covered, "hole or overlap before {}", t.name);
        covered = t.data_offsets.1;
        let elements = t
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .expect("accepted shapes do not overflow");
        assert_eq!(t.byte_len(), elements * t.dtype.size() as u64);
    }
    assert_eq!(covered, header.data_len, "trailing bytes accepted");
    // the memory-mapped model reads every accepted tensor
    let model = HfModel::open(&dir).expect("an accepted file opens as a model");
    for name in model.tensor_names() {
        let view = model.tensor(name).expect("listed tensor");
        assert_eq!(view.to_f32_vec().len(), view.element_count());
    }
});
