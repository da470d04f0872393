//! Merges that would silently change nothing are refused (issue 11 #5): PEFT's default
//! `target_modules` when the config has none, an error when the targets match no module or
//! every LoRA tensor would be ignored, and `use_dora` without magnitude vectors.
#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::path::Path;

use loraforge_adapter_merge::{merge, MergeError, MergeOptions};
use loraforge_progress::NoProgress;

mod common;
use common::*;

fn merge_into(base: &Path, adapter: &Path, out: &Path) -> Result<(), MergeError> {
    merge(&MergeOptions::new(base, adapter, out), &NoProgress).map(|_| ())
}

fn weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

#[test]
fn absent_target_modules_take_peft_defaults_for_the_architecture() {
    // a_llama_qv targets q_proj/v_proj: llama's default in PEFT. Without target_modules the
    // merge must give the same bytes, not the base.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = adapter_config("a_llama_qv");
    config.as_object_mut().unwrap().remove("target_modules");
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &config, &adapter_tensors("a_llama_qv"));
    let base = fixtures().join("a_llama_qv/base");
    merge_into(&base, &adapter, &tmp.path().join("defaults")).unwrap();
    merge_into(
        &base,
        &fixtures().join("a_llama_qv/adapter"),
        &tmp.path().join("explicit"),
    )
    .unwrap();
    let got = weights(&tmp.path().join("defaults"));
    assert_eq!(got, weights(&tmp.path().join("explicit")));
    assert_ne!(got, weights(&base));
}

#[test]
fn absent_target_modules_on_an_architecture_without_defaults_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    let src = fixtures().join("a_llama_qv/base");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    cfg["model_type"] = "someday_model".into();
    std::fs::write(base.join("config.json"), cfg.to_string()).unwrap();
    std::fs::copy(
        src.join("model.safetensors"),
        base.join("model.safetensors"),
    )
    .unwrap();
    let mut config = adapter_config("a_llama_qv");
    config["target_modules"] = serde_json::Value::Null;
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &config, &adapter_tensors("a_llama_qv"));
    let e = merge_into(&base, &adapter, &tmp.path().join("out")).unwrap_err();
    assert!(
        matches!(e, MergeError::NoDefaultTargets { ref model_type, .. } if model_type.as_deref() == Some("someday_model")),
        "{e}"
    );
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn targets_matching_no_module_of_the_base_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = adapter_config("a_llama_qv");
    config["target_modules"] = serde_json::json!(["query", "value"]);
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &config, &adapter_tensors("a_llama_qv"));
    let e = merge_into(
        &fixtures().join("a_llama_qv/base"),
        &adapter,
        &tmp.path().join("out"),
    )
    .unwrap_err();
    assert!(matches!(e, MergeError::NoModuleTargeted { .. }), "{e}");
    assert!(e.to_string().contains("\"query\""), "{e}");
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn an_adapter_whose_lora_tensors_are_all_ignored_is_refused() {
    // The config targets k_proj (present in the base) but the file only holds q/v LoRA:
    // PEFT would load none of them.
    let tmp = tempfile::tempdir().unwrap();
    let mut config = adapter_config("a_llama_qv");
    config["target_modules"] = serde_json::json!(["k_proj"]);
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &config, &adapter_tensors("a_llama_qv"));
    let e = merge_into(
        &fixtures().join("a_llama_qv/base"),
        &adapter,
        &tmp.path().join("out"),
    )
    .unwrap_err();
    assert!(
        matches!(e, MergeError::AllModulesIgnored { ref modules, .. } if modules.len() == 4),
        "{e}"
    );
}

#[test]
fn an_adapter_without_any_lora_tensor_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &adapter_config("a_llama_qv"), &[]);
    let e = merge_into(
        &fixtures().join("a_llama_qv/base"),
        &adapter,
        &tmp.path().join("out"),
    )
    .unwrap_err();
    assert!(matches!(e, MergeError::NothingToMerge { .. }), "{e}");
}

#[test]
fn use_dora_without_magnitude_vectors_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors: Vec<T> = adapter_tensors("e_llama_dora")
        .into_iter()
        .filter(|t| !t.name.contains("lora_magnitude_vector"))
        .collect();
    let adapter = tmp.path().join("adapter");
    write_adapter(&adapter, &adapter_config("e_llama_dora"), &tensors);
    let e = merge_into(
        &fixtures().join("e_llama_dora/base"),
        &adapter,
        &tmp.path().join("out"),
    )
    .unwrap_err();
    assert!(matches!(e, MergeError::DoraWithoutMagnitude { .. }), "{e}");
}
