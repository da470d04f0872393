//! `MergedTensors` hands out the bytes `merge` writes: every tensor of every PEFT fixture case
//! streamed in an arbitrary order equals the tensor in PEFT's own merged folder.
#![allow(clippy::unwrap_used)]

use loraforge_adapter_merge::{MergeError, MergeOptions, MergedTensors, OutputDtype};
use loraforge_hf_model::HfModel;
use loraforge_progress::NoProgress;

mod common;
use common::fixtures;

#[test]
fn streamed_tensors_are_peft_merged_tensors() {
    for case in [
        "a_llama_qv",
        "b_llama_alllinear_rslora",
        "c_qwen2_rank_pattern",
        "d_llama_modules_to_save",
        "e_llama_dora",
    ] {
        let dir = fixtures().join(case);
        let options = MergeOptions::new(dir.join("base"), dir.join("adapter"), "unused");
        let merged = MergedTensors::open(&options, &NoProgress).unwrap();
        let expected = HfModel::open(&dir.join("expected")).unwrap();
        let mut names: Vec<String> = merged
            .tensor_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.reverse(); // any order
        assert!(merged.tensors_changed() > 0, "{case}");
        for name in &names {
            let mut bytes = Vec::new();
            let done = merged
                .stream(name, &mut |piece: &[u8]| {
                    bytes.extend_from_slice(piece);
                    true
                })
                .unwrap();
            assert!(done);
            let want = expected.tensor(name).unwrap();
            assert_eq!(
                merged.output_dtype(name).unwrap(),
                want.dtype,
                "{case} {name}"
            );
            assert!(
                bytes == want.data,
                "{case}: {name} differs from PEFT's merge"
            );
        }
    }
}

#[test]
fn a_sink_can_stop_the_stream_and_inf_is_refused() {
    let dir = fixtures().join("a_llama_qv");
    let mut options = MergeOptions::new(dir.join("base"), dir.join("adapter"), "unused");
    options.dtype = OutputDtype::F32;
    let merged = MergedTensors::open(&options, &NoProgress).unwrap();
    let name = "model.layers.0.self_attn.q_proj.weight";
    assert!(merged.changes(name));
    let mut calls = 0;
    let done = merged
        .stream(name, &mut |_: &[u8]| {
            calls += 1;
            false
        })
        .unwrap();
    assert!(!done);
    assert_eq!(calls, 1);
    assert_eq!(
        merged.output_dtype(name).unwrap(),
        loraforge_hf_model::Dtype::F32
    );
    // a config of another dtype is rewritten, as merge writes it
    let config: serde_json::Value = serde_json::from_slice(&merged.config_json().unwrap()).unwrap();
    assert_eq!(config["dtype"], "float32");

    // An adapter whose B is infinite: the merged q_proj is refused, named.
    let tmp = tempfile::tempdir().unwrap();
    let adapter = tmp.path().join("adapter");
    let config = common::adapter_config("a_llama_qv");
    let mut tensors = common::adapter_tensors("a_llama_qv");
    for t in tensors.iter_mut().filter(|t| t.name.contains("lora_B")) {
        let huge = vec![f32::INFINITY; t.data.len() / t.dtype.size()];
        loraforge_hf_model::encode_f32(t.dtype, &huge, &mut t.data);
    }
    common::write_adapter(&adapter, &config, &tensors);
    let merged = MergedTensors::open(
        &MergeOptions::new(dir.join("base"), &adapter, "unused"),
        &NoProgress,
    )
    .unwrap();
    let err = merged.stream(name, &mut |_: &[u8]| true).unwrap_err();
    assert!(
        matches!(&err, MergeError::NonFinite { tensor, .. } if tensor == name),
        "{err}"
    );
}
