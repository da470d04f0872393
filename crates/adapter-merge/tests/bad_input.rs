//! Bad input → a clear typed error and no output folder (issue 3's list), plus the
//! zero-adapter identity property.
#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::path::{Path, PathBuf};

use loraforge_adapter_merge::{merge, HfModelError, MergeError, MergeOptions};
use loraforge_progress::NoProgress;
use proptest::prelude::*;

mod common;
use common::*;

/// Runs a merge into `<tmp>/out/merged` and checks nothing was left behind on error.
fn run(
    base: &Path,
    adapter: &Path,
    tweak: impl FnOnce(&mut MergeOptions),
) -> Result<(), MergeError> {
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("out");
    std::fs::create_dir_all(&parent).unwrap();
    let out = parent.join("merged");
    let mut opts = MergeOptions::new(base, adapter, &out);
    tweak(&mut opts);
    let result = merge(&opts, &NoProgress).map(|_| ());
    if result.is_err() {
        assert!(!out.exists(), "output folder must not appear on error");
        let left: Vec<_> = std::fs::read_dir(&parent).unwrap().collect();
        assert!(left.is_empty(), "temporary files left behind: {left:?}");
    }
    result
}

fn base(case: &str) -> PathBuf {
    fixtures().join(case).join("base")
}

#[test]
fn adapter_tensors_matching_no_base_tensor_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = adapter_tensors("a_llama_qv");
    for t in tensors.clone() {
        if t.name.contains("layers.1.self_attn.q_proj") {
            tensors.push(T {
                name: t.name.replace("layers.1.", "layers.7."),
                ..t
            });
        }
    }
    write_adapter(tmp.path(), &adapter_config("a_llama_qv"), &tensors);
    let e = run(&base("a_llama_qv"), tmp.path(), |_| {}).unwrap_err();
    assert!(
        matches!(e, MergeError::UnmatchedAdapterTensors { ref keys, .. } if keys.len() == 2),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("refs-fixtures/public-a_llama_qv-base"),
        "{msg}"
    );
}

#[test]
fn a_b_rank_disagreement() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = adapter_tensors("a_llama_qv");
    let b = tensors
        .iter_mut()
        .find(|t| t.name.ends_with("layers.0.self_attn.v_proj.lora_B.weight"))
        .unwrap();
    b.shape = vec![b.shape[0] * 2, b.shape[1] / 2];
    write_adapter(tmp.path(), &adapter_config("a_llama_qv"), &tensors);
    let e = run(&base("a_llama_qv"), tmp.path(), |_| {}).unwrap_err();
    assert!(
        matches!(e, MergeError::RankMismatch { ref module, .. } if module == "model.layers.0.self_attn.v_proj"),
        "{e}"
    );
}

#[test]
fn config_rank_that_the_tensors_do_not_have() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = adapter_config("a_llama_qv");
    config["r"] = 4.into();
    write_adapter(tmp.path(), &config, &adapter_tensors("a_llama_qv"));
    let e = run(&base("a_llama_qv"), tmp.path(), |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            MergeError::ConfigRankMismatch {
                config_rank: 4,
                tensor_rank: 8,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_b_dims_that_do_not_fit_the_base_weight() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = adapter_tensors("a_llama_qv");
    let a = tensors
        .iter_mut()
        .find(|t| t.name.ends_with("layers.0.self_attn.q_proj.lora_A.weight"))
        .unwrap();
    // [8, 64] → [8, 32] (same bytes count halves: rebuild data)
    a.shape = vec![8, 32];
    a.data.truncate(8 * 32 * 4);
    write_adapter(tmp.path(), &adapter_config("a_llama_qv"), &tensors);
    let e = run(&base("a_llama_qv"), tmp.path(), |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, MergeError::LoraShape { .. }), "{e}");
    assert!(
        msg.contains("model.layers.0.self_attn.q_proj.weight"),
        "{msg}"
    );
    assert!(msg.contains("[64, 64]") && msg.contains("[8, 32]"), "{msg}");
}

#[test]
fn adapter_trained_on_another_base_is_explained() {
    // g's adapter (intermediate size 96) on i's base (intermediate size 64)
    let e = run(
        &base("i_trainer_checkpoints"),
        &fixtures().join("g_llama_sharded/adapter"),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(e, MergeError::LoraShape { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("trained on \"refs-fixtures/public-g_llama_sharded-base\""),
        "{msg}"
    );
}

#[test]
fn truncated_base_file() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("base");
    std::fs::create_dir_all(&b).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(base("a_llama_qv").join(f), b.join(f)).unwrap();
    }
    let full = std::fs::read(b.join("model.safetensors")).unwrap();
    std::fs::write(b.join("model.safetensors"), &full[..1000]).unwrap();
    let e = run(&b, &fixtures().join("a_llama_qv/adapter"), |_| {}).unwrap_err();
    assert!(
        matches!(e, MergeError::Model(HfModelError::HeaderPastEof { .. })),
        "{e}"
    );
    // data cut short: header intact
    std::fs::write(b.join("model.safetensors"), &full[..full.len() - 10]).unwrap();
    let e = run(&b, &fixtures().join("a_llama_qv/adapter"), |_| {}).unwrap_err();
    assert!(
        matches!(e, MergeError::Model(HfModelError::OffsetsOutOfRange { .. })),
        "{e}"
    );
}

fn raw_safetensors(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, data_len));
    bytes
}

#[test]
fn corrupted_adapter_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::copy(
        fixtures().join("a_llama_qv/adapter/adapter_config.json"),
        dir.join("adapter_config.json"),
    )
    .unwrap();
    // overlapping offsets
    std::fs::write(
        dir.join("adapter_model.safetensors"),
        raw_safetensors(
            r#"{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":{"dtype":"F32","shape":[8,64],"data_offsets":[0,2048]},"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight":{"dtype":"F32","shape":[64,8],"data_offsets":[1024,3072]}}"#,
            3072,
        ),
    )
    .unwrap();
    let e = run(&base("a_llama_qv"), dir, |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            MergeError::Model(HfModelError::OverlappingTensors { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("adapter_model.safetensors"));
    // bad JSON
    std::fs::write(
        dir.join("adapter_model.safetensors"),
        raw_safetensors(r#"{"a": {"dtype": "F32", "#, 0),
    )
    .unwrap();
    let e = run(&base("a_llama_qv"), dir, |_| {}).unwrap_err();
    assert!(
        matches!(e, MergeError::Model(HfModelError::HeaderJson { .. })),
        "{e}"
    );
    // header length past the end
    let mut bytes = 1_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(dir.join("adapter_model.safetensors"), bytes).unwrap();
    let e = run(&base("a_llama_qv"), dir, |_| {}).unwrap_err();
    assert!(
        matches!(e, MergeError::Model(HfModelError::HeaderPastEof { .. })),
        "{e}"
    );
}

#[test]
fn non_finite_results_are_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = adapter_tensors("a_llama_qv");
    let b = tensors
        .iter_mut()
        .find(|t| t.name.ends_with("layers.1.self_attn.v_proj.lora_B.weight"))
        .unwrap();
    b.data = f32_bytes(&vec![3.0e38f32; b.data.len() / 4]);
    write_adapter(tmp.path(), &adapter_config("a_llama_qv"), &tensors);
    let e = run(&base("a_llama_qv"), tmp.path(), |_| {}).unwrap_err();
    assert!(
        matches!(e, MergeError::NonFinite { ref tensor, .. } if tensor == "model.layers.1.self_attn.v_proj.weight"),
        "{e}"
    );
    run(&base("a_llama_qv"), tmp.path(), |o| {
        o.allow_non_finite = true
    })
    .unwrap();
}

#[test]
fn existing_output_folder_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("marker"), "keep me").unwrap();
    let mut opts = MergeOptions::new(
        base("a_llama_qv"),
        fixtures().join("a_llama_qv/adapter"),
        &out,
    );
    let e = merge(&opts, &NoProgress).unwrap_err();
    assert!(matches!(e, MergeError::OutputExists { .. }), "{e}");
    assert!(out.join("marker").is_file());
    opts.force = true;
    merge(&opts, &NoProgress).unwrap();
    assert!(!out.join("marker").exists());
    assert!(out.join("model.safetensors").is_file());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn output_over_an_input_is_refused_even_with_force() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tmp.path().join("base");
    std::fs::create_dir_all(&b).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(base("a_llama_qv").join(f), b.join(f)).unwrap();
    }
    let mut opts = MergeOptions::new(&b, fixtures().join("a_llama_qv/adapter"), &b);
    opts.force = true;
    let e = merge(&opts, &NoProgress).unwrap_err();
    assert!(matches!(e, MergeError::OutputIsInput { .. }), "{e}");
    assert!(b.join("model.safetensors").is_file());
}

#[test]
fn pickle_adapter_is_refused_with_a_conversion_hint() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("a_llama_qv/adapter/adapter_config.json"),
        tmp.path().join("adapter_config.json"),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("adapter_model.bin"),
        b"PK\x03\x04 not unpickled",
    )
    .unwrap();
    let e = run(&base("a_llama_qv"), tmp.path(), |_| {}).unwrap_err();
    assert!(matches!(e, MergeError::PickleAdapter { .. }), "{e}");
    assert!(e.to_string().contains("safe_serialization=True"));
}

#[test]
fn base_rewriting_initialisations_are_refused() {
    for init in ["pissa", "olora", "corda", "loftq"] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = adapter_config("a_llama_qv");
        config["init_lora_weights"] = init.into();
        write_adapter(tmp.path(), &config, &adapter_tensors("a_llama_qv"));
        let e = run(&base("a_llama_qv"), tmp.path(), |_| {}).unwrap_err();
        assert!(
            matches!(e, MergeError::BaseRewritingInit { .. }),
            "{init}: {e}"
        );
    }
}

/// Mounts a tiny tmpfs (needs root; CI and the dev machines run as root) to fill the disk.
struct TinyFs(PathBuf);
impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_mid_write_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("tiny");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160k", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("cannot mount a tmpfs (not root?): disk-full case not exercised here");
        return;
    }
    let _guard = TinyFs(mnt.clone());
    let out = mnt.join("merged");
    let opts = MergeOptions::new(
        base("a_llama_qv"),
        fixtures().join("a_llama_qv/adapter"),
        &out,
    );
    let e = merge(&opts, &NoProgress).unwrap_err();
    let msg = format!("{e}: {:?}", std::error::Error::source(&e));
    assert!(
        matches!(
            e,
            MergeError::Model(HfModelError::Io { .. }) | MergeError::Io { .. }
        ),
        "{msg}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&mnt).unwrap().count(),
        0,
        "temp folder left on the full disk"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// With lora_B = 0 the merge is the identity: the output file is byte for byte the base
    /// file transformers wrote (whatever A, alpha and rank pattern say).
    #[test]
    fn zero_adapter_gives_the_base_bytes(
        case in prop::sample::select(vec!["a_llama_qv", "c_qwen2_rank_pattern", "e_llama_dora", "f_gpt2_conv1d"]),
        seed in any::<u32>(),
        alpha in 1u32..64,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = adapter_config(case);
        config["lora_alpha"] = alpha.into();
        config["use_dora"] = false.into();
        let mut x = seed | 1;
        let tensors: Vec<T> = adapter_tensors(case)
            .into_iter()
            .filter(|t| !t.name.ends_with("lora_magnitude_vector"))
            .map(|mut t| {
                let n = t.data.len() / 4;
                let vals: Vec<f32> = (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        if t.name.contains("lora_B") { 0.0 } else { (x as f32 / u32::MAX as f32) - 0.5 }
                    })
                    .collect();
                t.data = f32_bytes(&vals);
                t
            })
            .collect();
        write_adapter(&tmp.path().join("adapter"), &config, &tensors);
        let out = tmp.path().join("merged");
        merge(&MergeOptions::new(base(case), tmp.path().join("adapter"), &out), &NoProgress).unwrap();
        prop_assert!(
            std::fs::read(out.join("model.safetensors")).unwrap()
                == std::fs::read(base(case).join("model.safetensors")).unwrap()
        );
    }
}

#[test]
fn thread_counts_are_bounded() {
    let adapter = fixtures().join("a_llama_qv/adapter");
    let e = run(&base("a_llama_qv"), &adapter, |o| o.threads = Some(0)).unwrap_err();
    assert!(matches!(e, MergeError::BadThreads { requested: 0 }), "{e}");
    // capped at a few per core instead of starting a hundred thousand threads
    let start = std::time::Instant::now();
    run(&base("a_llama_qv"), &adapter, |o| o.threads = Some(100_000)).unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
}

#[cfg(unix)]
#[test]
fn an_output_that_is_not_a_folder_is_never_renamed_over() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, make) in [
        ("sock", 0u8), // a socket
        ("file", 1u8), // a regular file
    ] {
        let out = tmp.path().join(name);
        let _listener = match make {
            0 => Some(std::os::unix::net::UnixListener::bind(&out).unwrap()),
            _ => {
                std::fs::write(&out, b"not a model folder").unwrap();
                None
            }
        };
        let mut opts = MergeOptions::new(
            base("a_llama_qv"),
            fixtures().join("a_llama_qv/adapter"),
            &out,
        );
        opts.force = true;
        let e = merge(&opts, &NoProgress).unwrap_err();
        assert!(
            matches!(e, MergeError::Staging(ref s) if s.is_user_error()),
            "{e}"
        );
        assert!(!std::fs::symlink_metadata(&out).unwrap().is_dir());
    }
    let mut left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["file", "sock"]);
}

#[test]
fn the_staging_folder_of_a_killed_merge_is_removed_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("merged");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    // what a merge killed mid-write leaves
    let stale = tmp
        .path()
        .join(format!(".merged.loraforge-tmp-{dead}-1234"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("model.safetensors"), vec![0u8; 4096]).unwrap();
    let opts = MergeOptions::new(
        base("a_llama_qv"),
        fixtures().join("a_llama_qv/adapter"),
        &out,
    );
    merge(&opts, &NoProgress).unwrap();
    assert!(!stale.exists());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}
