//! Hostile model folders (issue 11 #3, #14): repeated tensor names in a header, and weight
//! files that resolve outside the model folder or are not regular files.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use loraforge_hf_model::{read_safetensors_header, HfModel, HfModelError};

fn fixture(case: &str) -> PathBuf {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/peft"
    ))
    .join(case)
}

fn raw_safetensors(dir: &Path, header: &str, data_len: usize) -> PathBuf {
    let p = dir.join("raw.safetensors");
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn a_tensor_named_twice_in_a_header_is_refused() {
    let d = tempfile::tempdir().unwrap();
    // Both entries cover the same bytes: a map-based reader keeps the second and sees a
    // valid file.
    let p = raw_safetensors(
        d.path(),
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}"#,
        8,
    );
    let e = read_safetensors_header(&p).unwrap_err();
    assert!(
        matches!(e, HfModelError::DuplicateHeaderEntry { ref tensor, .. } if tensor == "w"),
        "{e}"
    );
    assert!(e.to_string().contains("raw.safetensors"), "{e}");
}

/// A copy of the sharded fixture whose index is edited by `edit`.
fn sharded_copy(
    edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>),
) -> tempfile::TempDir {
    let src = fixture("g_llama_sharded/base");
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, model.join(p.file_name().unwrap())).unwrap();
    }
    let index_path = model.join("model.safetensors.index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    edit(index["weight_map"].as_object_mut().unwrap());
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    d
}

#[test]
fn shard_names_that_leave_the_folder_are_refused() {
    for bad in [
        "../model-00003-of-00003.safetensors",
        "/etc/passwd",
        "..",
        ".",
        "",
        "sub\\x.safetensors",
    ] {
        let d = sharded_copy(|m| {
            for v in m.values_mut() {
                if v == "model-00003-of-00003.safetensors" {
                    *v = bad.into();
                }
            }
        });
        let e = HfModel::open(&d.path().join("model")).unwrap_err();
        assert!(matches!(e, HfModelError::InvalidIndex { .. }), "{bad}: {e}");
    }
}

#[cfg(unix)]
#[test]
fn shards_that_are_symlinks_out_of_the_folder_are_refused() {
    let d = sharded_copy(|_| {});
    let model = d.path().join("model");
    let shard = model.join("model-00003-of-00003.safetensors");
    // the real bytes, moved out of the folder and linked back in
    let outside = d.path().join("elsewhere.safetensors");
    std::fs::rename(&shard, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &shard).unwrap();
    let e = HfModel::open(&model).unwrap_err();
    assert!(
        matches!(e, HfModelError::ShardOutsideFolder { ref path, .. } if *path == shard),
        "{e}"
    );
    // a link inside the folder is fine
    let inside = model.join("real-00003.safetensors");
    std::fs::rename(&outside, &inside).unwrap();
    std::fs::remove_file(&shard).unwrap();
    std::os::unix::fs::symlink("real-00003.safetensors", &shard).unwrap();
    HfModel::open(&model).unwrap();
}

#[cfg(unix)]
#[test]
fn a_weight_file_that_is_a_device_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(
        fixture("a_llama_qv/base/config.json"),
        model.join("config.json"),
    )
    .unwrap();
    // /dev/zero through a link: reading it would never end
    std::os::unix::fs::symlink("/dev/zero", model.join("model.safetensors")).unwrap();
    let e = HfModel::open(&model).unwrap_err();
    assert!(matches!(e, HfModelError::ShardOutsideFolder { .. }), "{e}");
}

#[cfg(unix)]
#[test]
fn hugging_face_cache_snapshots_link_into_their_blobs() {
    // <repo>/snapshots/<rev>/model.safetensors -> ../../blobs/<sha>: the hub cache layout.
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("models--org--name");
    let snapshot = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    let src = fixture("a_llama_qv/base");
    for (file, blob) in [("config.json", "c0ffee"), ("model.safetensors", "beef")] {
        std::fs::copy(src.join(file), repo.join("blobs").join(blob)).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join(file)).unwrap();
    }
    HfModel::open(&snapshot).unwrap();
}
