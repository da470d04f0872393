//! PEFT rules the fixtures do not exercise (fixtures README, "What PEFT 0.21.2 does"), checked
//! against a direct scalar evaluation of each rule: embedding LoRA (Δ rounded to the weight
//! dtype before the add), `lora_bias` (b' = round(b + s·b_B)), `bias="lora_only"` (replace).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use loraforge_adapter_merge::{merge, MergeOptions};
use loraforge_hf_model::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, Dtype, HfModel};
use loraforge_progress::NoProgress;

fn words(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

#[test]
fn embedding_lora_rounds_the_delta_to_the_weight_dtype_first() {
    let case = "a_llama_qv"; // bf16, embed_tokens [1000, 64], tied lm_head
    let (vocab, hidden, r) = (1000usize, 64usize, 4usize);
    let a = values(r * vocab, 3, 2.0);
    let b = values(hidden * r, 5, 0.5);
    let mut config = adapter_config(case);
    config["target_modules"] = serde_json::json!(["embed_tokens"]);
    config["r"] = r.into();
    config["lora_alpha"] = 8.into(); // s = 2
    let tensors = vec![
        T {
            name: "base_model.model.model.embed_tokens.lora_embedding_A".into(),
            dtype: Dtype::F32,
            shape: vec![r, vocab],
            data: f32_bytes(&a),
        },
        T {
            name: "base_model.model.model.embed_tokens.lora_embedding_B".into(),
            dtype: Dtype::F32,
            shape: vec![hidden, r],
            data: f32_bytes(&b),
        },
    ];
    let tmp = tempfile::tempdir().unwrap();
    write_adapter(&tmp.path().join("adapter"), &config, &tensors);
    let out = tmp.path().join("merged");
    let base_dir = fixtures().join(case).join("base");
    let report = merge(
        &MergeOptions::new(&base_dir, tmp.path().join("adapter"), &out),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.tensors_changed, 1);
    let base = HfModel::open(&base_dir).unwrap();
    let w = words(base.tensor("model.embed_tokens.weight").unwrap().data);
    let got_model = HfModel::open(&out).unwrap();
    let got = words(got_model.tensor("model.embed_tokens.weight").unwrap().data);
    for i in 0..vocab {
        for j in 0..hidden {
            // Δ[i, j] = s · Σ_k B[j, k] A[k, i]   (transpose(B @ A) · s)
            let mut acc = 0f32;
            for k in 0..r {
                acc = b[j * r + k].mul_add(a[k * vocab + i], acc);
            }
            let delta = bf16_to_f32(f32_to_bf16(acc * 2.0));
            let want = f32_to_bf16(bf16_to_f32(w[i * hidden + j]) + delta);
            assert_eq!(got[i * hidden + j], want, "[{i}, {j}]");
        }
    }
}

#[test]
fn lora_bias_adds_scaled_lora_b_bias_and_lora_only_bias_replaces() {
    let case = "c_qwen2_rank_pattern"; // f16, q/k/v have biases; layer 0 q_proj: s = 2
    let bias_key = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias";
    let bb = values(64, 9, 0.1);
    let mut tensors = adapter_tensors(case);
    tensors.push(T {
        name: bias_key.into(),
        dtype: Dtype::F32,
        shape: vec![64],
        data: f32_bytes(&bb),
    });
    let replacement = values(64, 13, 1.0);
    tensors.push(T {
        name: "base_model.model.model.layers.1.self_attn.k_proj.base_layer.bias".into(),
        dtype: Dtype::F16,
        shape: vec![32],
        data: replacement[..32]
            .iter()
            .flat_map(|v| f32_to_f16(*v).to_le_bytes())
            .collect(),
    });
    let mut config = adapter_config(case);
    config["lora_bias"] = true.into();
    config["bias"] = "lora_only".into();
    let tmp = tempfile::tempdir().unwrap();
    write_adapter(&tmp.path().join("adapter"), &config, &tensors);
    let out = tmp.path().join("merged");
    let base_dir = fixtures().join(case).join("base");
    merge(
        &MergeOptions::new(&base_dir, tmp.path().join("adapter"), &out),
        &NoProgress,
    )
    .unwrap();
    let base = HfModel::open(&base_dir).unwrap();
    let got = HfModel::open(&out).unwrap();
    let b0 = words(
        base.tensor("model.layers.0.self_attn.q_proj.bias")
            .unwrap()
            .data,
    );
    let g0 = words(
        got.tensor("model.layers.0.self_attn.q_proj.bias")
            .unwrap()
            .data,
    );
    for i in 0..64 {
        assert_eq!(
            g0[i],
            f32_to_f16(f16_to_f32(b0[i]) + 2.0 * bb[i]),
            "bias[{i}]"
        );
    }
    let g1 = words(
        got.tensor("model.layers.1.self_attn.k_proj.bias")
            .unwrap()
            .data,
    );
    for i in 0..32 {
        assert_eq!(g1[i], f32_to_f16(replacement[i]));
    }
    // the weights are still PEFT's
    let expected = HfModel::open(&fixtures().join(case).join("expected")).unwrap();
    assert_eq!(
        got.tensor("model.layers.0.self_attn.q_proj.weight")
            .unwrap()
            .data,
        expected
            .tensor("model.layers.0.self_attn.q_proj.weight")
            .unwrap()
            .data
    );
}
