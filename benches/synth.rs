//! Synthetic, deterministic Hugging Face models for loraforge's benchmarks.
//!
//! [`generate_llama`] writes a Llama folder of any size (default: TinyLlama-1.1B's shape, hidden
//! 2048, 22 layers, ffn 5632, vocab 32000, 32 heads / 4 kv heads, bf16, ≈ 2.2 GB) with
//! `config.json`, `generation_config.json` and safetensors laid out like `save_pretrained`;
//! tensors are streamed chunk by chunk (memory stays at a few MB). [`generate_adapter`] writes a
//! matching PEFT LoRA adapter (`all-linear`, rank `r`, f32 tensors, non-zero `B`).
//! Values are pseudo-random (xorshift, seeded per tensor name), weight-like (≈ N(0, 0.02)); norm
//! weights ≈ 1.
//!
//! ```no_run
//! use loraforge_benches::{generate_adapter, generate_llama, SynthSpec};
//! let spec = SynthSpec::tiny_test();
//! let dir = std::env::temp_dir().join("synth-doc");
//! generate_llama(&dir.join("base"), &spec).unwrap();
//! generate_adapter(&dir.join("adapter"), &spec, 16).unwrap();
//! ```
#![deny(missing_docs)]

#[path = "measure.rs"]
pub mod measure;

use std::path::{Path, PathBuf};

use loraforge_hf_model::{
    encode_f32, Dtype, HfModelError, SafetensorsShardWriter, TensorSpec, WrittenFile,
};

/// Shape and storage of a synthetic Llama.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// Hidden size.
    pub hidden: usize,
    /// Number of decoder layers.
    pub layers: usize,
    /// MLP intermediate size.
    pub ffn: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (GQA).
    pub kv_heads: usize,
    /// Weight dtype.
    pub dtype: Dtype,
    /// Tie `lm_head` to `embed_tokens` (then `lm_head.weight` is not stored).
    pub tie_word_embeddings: bool,
    /// Seed of the values.
    pub seed: u64,
    /// Shard size in bytes (transformers' default 5 GB).
    pub max_shard_size: u64,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self::tinyllama()
    }
}

impl SynthSpec {
    /// TinyLlama-1.1B's shape in bf16 (≈ 2.2 GB, untied lm_head as in TinyLlama).
    pub fn tinyllama() -> Self {
        SynthSpec {
            hidden: 2048,
            layers: 22,
            ffn: 5632,
            vocab: 32000,
            heads: 32,
            kv_heads: 4,
            dtype: Dtype::BF16,
            tie_word_embeddings: false,
            seed: 0x5EED,
            max_shard_size: 5_000_000_000,
        }
    }

    /// A few-MB model of the same structure, for quick checks.
    pub fn tiny_test() -> Self {
        SynthSpec {
            hidden: 64,
            layers: 2,
            ffn: 96,
            vocab: 256,
            heads: 4,
            kv_heads: 2,
            ..Self::tinyllama()
        }
    }

    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// `(module path, out_features, in_features)` of every linear layer LoRA `all-linear` targets.
    pub fn linear_modules(&self) -> Vec<(String, usize, usize)> {
        let kv = self.kv_heads * self.head_dim();
        let mut out = Vec::new();
        for l in 0..self.layers {
            let p = format!("model.layers.{l}");
            out.push((format!("{p}.self_attn.q_proj"), self.hidden, self.hidden));
            out.push((format!("{p}.self_attn.k_proj"), kv, self.hidden));
            out.push((format!("{p}.self_attn.v_proj"), kv, self.hidden));
            out.push((format!("{p}.self_attn.o_proj"), self.hidden, self.hidden));
            out.push((format!("{p}.mlp.gate_proj"), self.ffn, self.hidden));
            out.push((format!("{p}.mlp.up_proj"), self.ffn, self.hidden));
            out.push((format!("{p}.mlp.down_proj"), self.hidden, self.ffn));
        }
        out
    }

    /// Every tensor of the model, in Llama's state-dict order.
    pub fn tensor_specs(&self) -> Vec<TensorSpec> {
        let spec = |name: String, shape: Vec<usize>| TensorSpec {
            name,
            dtype: self.dtype,
            shape,
        };
        let mut v = vec![spec(
            "model.embed_tokens.weight".into(),
            vec![self.vocab, self.hidden],
        )];
        let linears = self.linear_modules();
        for l in 0..self.layers {
            for (m, o, i) in linears.iter().skip(l * 7).take(7) {
                v.push(spec(format!("{m}.weight"), vec![*o, *i]));
            }
            let p = format!("model.layers.{l}");
            v.push(spec(
                format!("{p}.input_layernorm.weight"),
                vec![self.hidden],
            ));
            v.push(spec(
                format!("{p}.post_attention_layernorm.weight"),
                vec![self.hidden],
            ));
        }
        v.push(spec("model.norm.weight".into(), vec![self.hidden]));
        if !self.tie_word_embeddings {
            v.push(spec("lm_head.weight".into(), vec![self.vocab, self.hidden]));
        }
        v
    }

    /// Bytes of tensor data.
    pub fn data_bytes(&self) -> u64 {
        self.tensor_specs()
            .iter()
            .filter_map(|s| s.byte_len())
            .sum()
    }

    /// `config.json` as transformers writes it for this shape.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": 1,
            "dtype": self.dtype_name(),
            "eos_token_id": 2,
            "head_dim": self.head_dim(),
            "hidden_act": "silu",
            "hidden_size": self.hidden,
            "initializer_range": 0.02,
            "intermediate_size": self.ffn,
            "max_position_embeddings": 2048,
            "mlp_bias": false,
            "model_type": "llama",
            "num_attention_heads": self.heads,
            "num_hidden_layers": self.layers,
            "num_key_value_heads": self.kv_heads,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": null,
            "rope_theta": 10000.0,
            "tie_word_embeddings": self.tie_word_embeddings,
            "transformers_version": "5.23.0",
            "use_cache": true,
            "vocab_size": self.vocab
        })
    }

    fn dtype_name(&self) -> &'static str {
        self.dtype.config_name()
    }
}

/// Deterministic weight-like values.
struct Noise(u64);

impl Noise {
    fn for_tensor(seed: u64, name: &str) -> Self {
        let mut h = seed ^ 0xCBF2_9CE4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        Noise(h | 1)
    }

    #[inline]
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    /// ≈ N(0, std): sum of two uniforms (triangular), scaled.
    #[inline]
    fn weight(&mut self, std: f32) -> f32 {
        (self.uniform() + self.uniform()) * std * 2.45
    }
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct SynthOutput {
    /// The folder.
    pub dir: PathBuf,
    /// Files written (relative paths, sizes, SHA-256).
    pub files: Vec<WrittenFile>,
    /// Bytes of tensor data.
    pub data_bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HfModelError + '_ {
    move |source| HfModelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn stream_tensors(
    dir: &Path,
    specs: Vec<TensorSpec>,
    max_shard_size: u64,
    seed: u64,
    value: impl Fn(&str, &mut Noise) -> f32,
) -> Result<Vec<WrittenFile>, HfModelError> {
    let params = specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>() as u64)
        .sum();
    let by_name: std::collections::HashMap<String, TensorSpec> =
        specs.iter().map(|s| (s.name.clone(), s.clone())).collect();
    let mut writer = SafetensorsShardWriter::new(dir, specs, max_shard_size, params)?;
    writer.set_sync(false);
    let order: Vec<String> = writer.write_order().iter().map(|s| s.to_string()).collect();
    const CHUNK: usize = 1 << 20;
    let mut vals = Vec::with_capacity(CHUNK);
    let mut bytes = Vec::new();
    for name in order {
        let spec = &by_name[&name];
        let count: usize = spec.shape.iter().product();
        let mut noise = Noise::for_tensor(seed, &name);
        let mut done = 0;
        while done < count {
            let n = CHUNK.min(count - done);
            vals.clear();
            vals.extend((0..n).map(|_| value(&name, &mut noise)));
            bytes.resize(n * spec.dtype.size(), 0);
            encode_f32(spec.dtype, &vals, &mut bytes);
            writer.write_chunk(&bytes)?;
            done += n;
        }
    }
    writer.finish()
}

/// Writes a synthetic Llama model folder into `dir` (created; must not contain a model).
pub fn generate_llama(dir: &Path, spec: &SynthSpec) -> Result<SynthOutput, HfModelError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut files = stream_tensors(
        dir,
        spec.tensor_specs(),
        spec.max_shard_size,
        spec.seed,
        |name, noise| {
            if name.ends_with("norm.weight") {
                1.0 + noise.weight(0.05)
            } else {
                noise.weight(0.02)
            }
        },
    )?;
    for (name, value) in [
        ("config.json", spec.config_json()),
        (
            "generation_config.json",
            serde_json::json!({"bos_token_id": 1, "eos_token_id": 2, "transformers_version": "5.23.0"}),
        ),
    ] {
        let path = dir.join(name);
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        std::fs::write(&path, &text).map_err(io(&path))?;
        files.push(WrittenFile {
            path: name.into(),
            size: text.len() as u64,
            sha256: None,
        });
    }
    Ok(SynthOutput {
        dir: dir.to_path_buf(),
        files,
        data_bytes: spec.data_bytes(),
    })
}

/// Writes a PEFT LoRA adapter for a model of `spec`: `target_modules="all-linear"`, rank `r`,
/// `lora_alpha = 2r`, f32 tensors (`A` Kaiming-uniform-like, `B` small and non-zero).
pub fn generate_adapter(
    dir: &Path,
    spec: &SynthSpec,
    r: usize,
) -> Result<SynthOutput, HfModelError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut specs = Vec::new();
    for (m, out, inp) in spec.linear_modules() {
        specs.push(TensorSpec {
            name: format!("base_model.model.{m}.lora_A.weight"),
            dtype: Dtype::F32,
            shape: vec![r, inp],
        });
        specs.push(TensorSpec {
            name: format!("base_model.model.{m}.lora_B.weight"),
            dtype: Dtype::F32,
            shape: vec![out, r],
        });
    }
    let data_bytes = specs.iter().filter_map(|s| s.byte_len()).sum();
    let scratch = dir.join(".weights");
    std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
    let hidden = spec.hidden as f32;
    let files = stream_tensors(
        &scratch,
        specs,
        u64::MAX,
        spec.seed ^ 0xADA9,
        |name, noise| {
            if name.ends_with("lora_A.weight") {
                noise.uniform() * 2.0 / hidden.sqrt()
            } else {
                noise.weight(0.01)
            }
        },
    )?;
    let target = dir.join("adapter_model.safetensors");
    let from = scratch.join("model.safetensors");
    std::fs::rename(&from, &target).map_err(io(&from))?;
    std::fs::remove_dir(&scratch).map_err(io(&scratch))?;
    let config = serde_json::json!({
        "base_model_name_or_path": "synthetic/llama",
        "bias": "none",
        "fan_in_fan_out": false,
        "init_lora_weights": true,
        "lora_alpha": 2 * r,
        "lora_dropout": 0.05,
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": r,
        "rank_pattern": {},
        "alpha_pattern": {},
        "target_modules": "all-linear",
        "task_type": "CAUSAL_LM",
        "use_dora": false,
        "use_rslora": false
    });
    let path = dir.join("adapter_config.json");
    let text = serde_json::to_string_pretty(&config).unwrap_or_default();
    std::fs::write(&path, &text).map_err(io(&path))?;
    let mut files: Vec<WrittenFile> = files
        .into_iter()
        .map(|mut f| {
            f.path = "adapter_model.safetensors".into();
            f
        })
        .collect();
    files.push(WrittenFile {
        path: "adapter_config.json".into(),
        size: text.len() as u64,
        sha256: None,
    });
    Ok(SynthOutput {
        dir: dir.to_path_buf(),
        files,
        data_bytes,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tinyllama_shape_is_1_1b_parameters() {
        let s = SynthSpec::tinyllama();
        let params: u64 = s
            .tensor_specs()
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum();
        // TinyLlama-1.1B has 1,100,048,384 parameters
        assert_eq!(params, 1_100_048_384);
        assert_eq!(s.data_bytes(), 2 * params);
    }

    #[test]
    fn small_model_opens_and_adapter_matches() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SynthSpec::tiny_test();
        generate_llama(&dir.path().join("base"), &spec).unwrap();
        generate_adapter(&dir.path().join("adapter"), &spec, 4).unwrap();
        let m = loraforge_hf_model::HfModel::open(&dir.path().join("base")).unwrap();
        assert_eq!(m.tensor_names().len(), spec.tensor_specs().len());
        let out = dir.path().join("merged");
        let report = loraforge_adapter_merge::merge(
            &loraforge_adapter_merge::MergeOptions::new(
                dir.path().join("base"),
                dir.path().join("adapter"),
                &out,
            ),
            &loraforge_progress::NoProgress,
        )
        .unwrap();
        assert_eq!(report.tensors_changed, spec.linear_modules().len());
    }
}
