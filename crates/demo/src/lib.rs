//! Generates a small but real fine-tuning result for demos and tests: a llama-architecture Hugging
//! Face base model (config.json, bf16 safetensors, a trained byte-level BPE `tokenizer.json`,
//! `tokenizer_config.json` with a ChatML chat template), a trainer output folder with a PEFT LoRA
//! adapter (non-zero A/B), two checkpoints, `trainer_state.json` and `training_args.json`, and an
//! Ollama deployment template for the base.
//!
//! Weights are seeded pseudo-random values, so every run generates the same bytes.
//!
//! ```
//! let dir = tempfile::tempdir()?;
//! let demo = loraforge_demo::generate(dir.path(), &loraforge_demo::DemoSpec::default())?;
//! assert!(demo.base_dir.join("config.json").is_file());
//! assert!(demo.trainer_dir.join("checkpoint-20/adapter_config.json").is_file());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

/// Errors while generating the demo files.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Writing a file failed.
    #[error("cannot write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Training or saving the tokenizer failed.
    #[error("cannot build the demo tokenizer: {0}")]
    Tokenizer(String),
    /// Serializing safetensors failed.
    #[error("cannot serialize {path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// The shape of the generated model.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// Hidden size (a multiple of 256 keeps k-quants on their main path).
    pub hidden: usize,
    /// MLP size.
    pub intermediate: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (GQA).
    pub kv_heads: usize,
    /// Tokenizer vocabulary size (BPE training target, special tokens included).
    pub vocab: usize,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha.
    pub alpha: usize,
}

impl Default for DemoSpec {
    fn default() -> Self {
        DemoSpec {
            hidden: 256,
            intermediate: 512,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            vocab: 512,
            rank: 8,
            alpha: 16,
        }
    }
}

/// Where the generated files are.
#[derive(Debug, Clone)]
pub struct DemoFiles {
    /// The base model folder.
    pub base_dir: PathBuf,
    /// The trainer output folder (final adapter at the root, `checkpoint-10/`, `checkpoint-20/`).
    pub trainer_dir: PathBuf,
    /// The base model's Ollama deployment template.
    pub template: PathBuf,
}

/// The chat template (ChatML) stored in `tokenizer_config.json`.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The Ollama deployment template for the demo base (the same ChatML format in Go template syntax).
pub const DEPLOYMENT_TEMPLATE: &str = r#"# Deployment template for the loraforge demo base model (ChatML).
TEMPLATE """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
SYSTEM """You are a concise assistant for loraforge's demo."""
PARAMETER temperature 0.7
PARAMETER top_p 0.9
PARAMETER stop "<|im_start|>"
"#;

const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

const CORPUS: &str = "loraforge takes a fine-tuned model from training to Ollama. \
The adapter is merged into the base model, exported to GGUF, quantized and deployed. \
A low-rank update adds the product of two small matrices to each weight. \
Quantization stores blocks of weights with a shared scale and small integers. \
The quick brown fox jumps over the lazy dog while the model learns to answer questions. \
Hello! How can I help you today? Please explain what a LoRA adapter is. \
Sure: a LoRA adapter is a pair of matrices A and B whose product, scaled, updates a frozen weight. \
Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 and punctuation , . ; : ! ? ( ) [ ] { } are common. ";

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), DemoError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::write(path, text).map_err(io_error(path))
}

/// A small deterministic generator (SplitMix64) with Box–Muller normals: the demo must not
/// depend on a random crate's stream staying stable.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self, std: f64) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos() * std) as f32
    }
}

struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn bf16_tensor(shape: &[usize], mut value: impl FnMut() -> f32) -> Tensor {
    let count: usize = shape.iter().product();
    let bytes = (0..count)
        .flat_map(|_| half::bf16::from_f32(value()).to_le_bytes())
        .collect();
    Tensor {
        dtype: Dtype::BF16,
        shape: shape.to_vec(),
        bytes,
    }
}

fn f32_tensor(shape: &[usize], mut value: impl FnMut() -> f32) -> Tensor {
    let count: usize = shape.iter().product();
    let bytes = (0..count).flat_map(|_| value().to_le_bytes()).collect();
    Tensor {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes,
    }
}

fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), DemoError> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| DemoError::Safetensors {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, &Some(metadata), path).map_err(|e| {
        DemoError::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })
}

/// Train the byte-level BPE tokenizer and write `tokenizer.json`; returns the vocabulary size and
/// the ids of [`SPECIAL_TOKENS`].
fn write_tokenizer(dir: &Path, spec: &DemoSpec) -> Result<(usize, Vec<u32>), DemoError> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, TokenizerBuilder};

    let tok_err = |e: Box<dyn std::error::Error + Send + Sync>| DemoError::Tokenizer(e.to_string());
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(spec.vocab)
        .min_frequency(1)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(
            SPECIAL_TOKENS
                .iter()
                .map(|t| AddedToken::from(t.to_string(), true))
                .collect(),
        )
        .build();
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<tokenizers::normalizers::NormalizerWrapper>)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_post_processor(Some(ByteLevel::new(false, true, false)))
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(tok_err)?;
    let corpus: Vec<String> = CORPUS.split(". ").map(|s| format!("{s}. ")).collect();
    tokenizer
        .train(&mut trainer, corpus.iter().cycle().take(corpus.len() * 8))
        .map_err(tok_err)?;
    let path = dir.join("tokenizer.json");
    tokenizer
        .save(path.to_string_lossy().as_ref(), true)
        .map_err(tok_err)?;
    let ids = SPECIAL_TOKENS
        .iter()
        .map(|t| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| DemoError::Tokenizer(format!("special token {t} missing")))
        })
        .collect::<Result<Vec<u32>, _>>()?;
    Ok((tokenizer.get_vocab_size(true), ids))
}

fn write_base(dir: &Path, spec: &DemoSpec) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let (vocab, special_ids) = write_tokenizer(dir, spec)?;
    let eos_id = special_ids[2];
    let head_dim = spec.hidden / spec.heads;
    write_json(
        &dir.join("config.json"),
        &json!({
            "_name_or_path": "loraforge-demo/tiny-llama",
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": serde_json::Value::Null,
            "eos_token_id": eos_id,
            "head_dim": head_dim,
            "hidden_act": "silu",
            "hidden_size": spec.hidden,
            "initializer_range": 0.02,
            "intermediate_size": spec.intermediate,
            "max_position_embeddings": 2048,
            "mlp_bias": false,
            "model_type": "llama",
            "num_attention_heads": spec.heads,
            "num_hidden_layers": spec.layers,
            "num_key_value_heads": spec.kv_heads,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-5,
            "rope_scaling": serde_json::Value::Null,
            "rope_theta": 10000.0,
            "tie_word_embeddings": false,
            "dtype": "bfloat16",
            "transformers_version": "4.46.0",
            "use_cache": true,
            "vocab_size": vocab
        }),
    )?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({ "eos_token_id": eos_id, "transformers_version": "4.46.0" }),
    )?;
    let added: serde_json::Map<String, serde_json::Value> = SPECIAL_TOKENS
        .iter()
        .zip(&special_ids)
        .map(|(token, id)| {
            (
                id.to_string(),
                json!({"content": token, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}),
            )
        })
        .collect();
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "add_bos_token": false,
            "add_prefix_space": false,
            "added_tokens_decoder": added,
            "bos_token": serde_json::Value::Null,
            "chat_template": CHAT_TEMPLATE,
            "clean_up_tokenization_spaces": false,
            "eos_token": "<|im_end|>",
            "model_max_length": 2048,
            "pad_token": "<|endoftext|>",
            "tokenizer_class": "PreTrainedTokenizerFast"
        }),
    )?;

    let mut rng = Rng(0x10AF_0A6E);
    let (h, f, kv) = (spec.hidden, spec.intermediate, spec.kv_heads * head_dim);
    let mut tensors = vec![(
        "model.embed_tokens.weight".to_string(),
        bf16_tensor(&[vocab, h], || rng.normal(0.02)),
    )];
    for layer in 0..spec.layers {
        let p = format!("model.layers.{layer}");
        let shapes: [(&str, [usize; 2]); 7] = [
            ("self_attn.q_proj", [h, h]),
            ("self_attn.k_proj", [kv, h]),
            ("self_attn.v_proj", [kv, h]),
            ("self_attn.o_proj", [h, h]),
            ("mlp.gate_proj", [f, h]),
            ("mlp.up_proj", [f, h]),
            ("mlp.down_proj", [h, f]),
        ];
        for (module, shape) in shapes {
            tensors.push((
                format!("{p}.{module}.weight"),
                bf16_tensor(&shape, || rng.normal(0.02)),
            ));
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            tensors.push((
                format!("{p}.{norm}.weight"),
                bf16_tensor(&[h], || 1.0 + rng.normal(0.01)),
            ));
        }
    }
    tensors.push((
        "model.norm.weight".to_string(),
        bf16_tensor(&[h], || 1.0 + rng.normal(0.01)),
    ));
    tensors.push((
        "lm_head.weight".to_string(),
        bf16_tensor(&[vocab, h], || rng.normal(0.02)),
    ));
    write_safetensors(&dir.join("model.safetensors"), &tensors)
}

fn write_adapter(dir: &Path, spec: &DemoSpec, seed: u64) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let head_dim = spec.hidden / spec.heads;
    let kv = spec.kv_heads * head_dim;
    write_json(
        &dir.join("adapter_config.json"),
        &json!({
            "alpha_pattern": {},
            "auto_mapping": serde_json::Value::Null,
            "base_model_name_or_path": "loraforge-demo/tiny-llama",
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": serde_json::Value::Null,
            "layers_to_transform": serde_json::Value::Null,
            "lora_alpha": spec.alpha,
            "lora_dropout": 0.05,
            "modules_to_save": serde_json::Value::Null,
            "peft_type": "LORA",
            "r": spec.rank,
            "rank_pattern": {},
            "revision": serde_json::Value::Null,
            "target_modules": ["q_proj", "v_proj"],
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": false
        }),
    )?;
    let mut rng = Rng(seed);
    let mut tensors = Vec::new();
    for layer in 0..spec.layers {
        for (module, out) in [("q_proj", spec.hidden), ("v_proj", kv)] {
            let key = format!("base_model.model.model.layers.{layer}.self_attn.{module}");
            tensors.push((
                format!("{key}.lora_A.weight"),
                f32_tensor(&[spec.rank, spec.hidden], || rng.normal(0.05)),
            ));
            tensors.push((
                format!("{key}.lora_B.weight"),
                f32_tensor(&[out, spec.rank], || rng.normal(0.01)),
            ));
        }
    }
    write_safetensors(&dir.join("adapter_model.safetensors"), &tensors)
}

fn trainer_state(steps: u64) -> serde_json::Value {
    let mut history = Vec::new();
    for step in (5..=steps).step_by(5) {
        let loss = 2.5 / (1.0 + step as f64 / 10.0);
        history.push(json!({"epoch": step as f64 / 20.0, "grad_norm": 1.2, "learning_rate": 2e-4, "loss": (loss * 1e4).round() / 1e4, "step": step}));
        if step % 10 == 0 {
            history.push(json!({"epoch": step as f64 / 20.0, "eval_loss": ((loss + 0.1) * 1e4).round() / 1e4, "eval_runtime": 0.5, "step": step}));
        }
    }
    json!({
        "best_global_step": steps,
        "best_metric": 2.5 / (1.0 + steps as f64 / 10.0) + 0.1,
        "best_model_checkpoint": format!("output/checkpoint-{steps}"),
        "epoch": steps as f64 / 20.0,
        "eval_steps": 10,
        "global_step": steps,
        "log_history": history,
        "logging_steps": 5,
        "max_steps": 20,
        "num_train_epochs": 1,
        "save_steps": 10,
        "train_batch_size": 4
    })
}

/// Generate the demo base model, trainer output and deployment template under `root`.
pub fn generate(root: &Path, spec: &DemoSpec) -> Result<DemoFiles, DemoError> {
    let base_dir = root.join("tiny-llama");
    let trainer_dir = root.join("trainer-output");
    write_base(&base_dir, spec)?;
    for (step, seed) in [(10u64, 11u64), (20, 20)] {
        let checkpoint = trainer_dir.join(format!("checkpoint-{step}"));
        write_adapter(&checkpoint, spec, seed)?;
        write_json(&checkpoint.join("trainer_state.json"), &trainer_state(step))?;
    }
    // The final adapter equals the last checkpoint, as Trainer.save_model leaves it.
    write_adapter(&trainer_dir, spec, 20)?;
    write_json(&trainer_dir.join("trainer_state.json"), &trainer_state(20))?;
    write_json(
        &trainer_dir.join("training_args.json"),
        &json!({
            "learning_rate": 2e-4, "num_train_epochs": 1, "max_steps": 20,
            "per_device_train_batch_size": 4, "gradient_accumulation_steps": 1,
            "lr_scheduler_type": "linear", "warmup_steps": 2, "seed": 42,
            "bf16": true, "output_dir": "output", "optim": "adamw_torch"
        }),
    )?;
    let template = root.join("tiny-llama.Modelfile");
    std::fs::write(&template, DEPLOYMENT_TEMPLATE).map_err(io_error(&template))?;
    Ok(DemoFiles {
        base_dir,
        trainer_dir,
        template,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_files_are_real_and_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let spec = DemoSpec::default();
        let demo = generate(dir.path(), &spec).unwrap();
        let tokenizer =
            tokenizers::Tokenizer::from_file(demo.base_dir.join("tokenizer.json")).unwrap();
        let vocab = tokenizer.get_vocab_size(true);
        let encoding = tokenizer
            .encode("<|im_start|>user\nHello<|im_end|>", false)
            .unwrap();
        assert_eq!(
            tokenizer.token_to_id("<|im_start|>"),
            Some(encoding.get_ids()[0])
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(demo.base_dir.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["vocab_size"], vocab);
        assert_eq!(
            config["eos_token_id"],
            tokenizer.token_to_id("<|im_end|>").unwrap()
        );
        let bytes = std::fs::read(demo.base_dir.join("model.safetensors")).unwrap();
        let weights = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(
            weights.tensor("model.embed_tokens.weight").unwrap().shape(),
            [vocab, 256]
        );
        let bytes = std::fs::read(demo.trainer_dir.join("adapter_model.safetensors")).unwrap();
        let adapter = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let b = adapter
            .tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")
            .unwrap();
        assert!(
            b.data().iter().any(|&byte| byte != 0),
            "LoRA B must be non-zero"
        );
    }
}
