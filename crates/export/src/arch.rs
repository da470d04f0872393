//! Architecture tables: which HF architectures are converted, their hyperparameter keys and
//! their tensor names, as `convert_hf_to_gguf.py` (llama.cpp 0c1e57098, `conversion/llama.py`,
//! `conversion/qwen.py`, `conversion/gpt2.py`, `conversion/gemma.py`, `conversion/phi.py`,
//! `conversion/base.py` `TextModel`) writes them.

use loraforge_gguf::Metadata;
use serde_json::{Map, Value as Json};

use crate::error::ConvertError;
use crate::vocab::VocabKind;

/// HF `architectures[0]` values this converter handles, and the GGUF architecture of each.
pub const SUPPORTED_ARCHITECTURES: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "llama"),
    ("MistralForCausalLM", "llama"),
    ("Qwen2ForCausalLM", "qwen2"),
    ("GPT2LMHeadModel", "gpt2"),
    ("GemmaForCausalLM", "gemma"),
    ("Gemma2ForCausalLM", "gemma2"),
    ("Phi3ForCausalLM", "phi3"),
];

/// A GGUF architecture family the converter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    /// `llama` (Llama, Mistral): Q/K rows permuted for ggml's NORM rope.
    Llama,
    /// `qwen2`: q/k/v biases, NEOX rope, no permutation.
    Qwen2,
    /// `gpt2`: Conv1D weights stored `[in, out]`, transposed on conversion.
    Gpt2,
    /// `gemma`: norms stored as `w` for `(1 + w)`, written as `w + 1`; `lm_head` dropped.
    Gemma,
    /// `gemma2`: as `gemma`, plus post-attention / post-FFN norms and logit softcapping.
    Gemma2,
    /// `phi3`: fused `qkv_proj` / `gate_up_proj`, LongRoPE factor tensors for 128k models.
    Phi3,
}

impl Arch {
    pub(crate) fn from_hf(name: &str) -> Result<Arch, ConvertError> {
        match name {
            "LlamaForCausalLM" | "MistralForCausalLM" => Ok(Arch::Llama),
            "Qwen2ForCausalLM" => Ok(Arch::Qwen2),
            "GPT2LMHeadModel" => Ok(Arch::Gpt2),
            "GemmaForCausalLM" => Ok(Arch::Gemma),
            "Gemma2ForCausalLM" => Ok(Arch::Gemma2),
            "Phi3ForCausalLM" => Ok(Arch::Phi3),
            other => Err(ConvertError::UnsupportedArchitecture {
                arch: other.to_string(),
                supported: SUPPORTED_ARCHITECTURES
                    .iter()
                    .map(|(h, g)| format!("{h} ({g})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    pub(crate) fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gpt2 => "gpt2",
            Arch::Gemma => "gemma",
            Arch::Gemma2 => "gemma2",
            Arch::Phi3 => "phi3",
        }
    }

    pub(crate) fn vocab_kind(self) -> VocabKind {
        match self {
            Arch::Llama => VocabKind::LlamaLike,
            Arch::Qwen2 => VocabKind::Qwen2,
            Arch::Gpt2 => VocabKind::Gpt2,
            Arch::Gemma => VocabKind::Gemma,
            Arch::Gemma2 => VocabKind::Gemma2,
            Arch::Phi3 => VocabKind::Phi3,
        }
    }

    /// Gemma's RMSNorm multiplies by `1 + w`; the reference writes `w + 1`.
    pub(crate) fn norm_plus_one(self) -> bool {
        matches!(self, Arch::Gemma | Arch::Gemma2)
    }
}

/// The hyperparameters the converter needs, read once from `config.json`.
#[derive(Debug, Clone)]
pub(crate) struct Hparams {
    pub raw: Map<String, Json>,
    pub block_count: usize,
    pub n_head: Option<usize>,
    pub n_head_kv: Option<usize>,
    pub hidden: Option<usize>,
    pub vocab_size: Option<usize>,
}

/// `find_hparam`: the value of the first key present (even when that value is `null`).
fn find<'a>(hp: &'a Map<String, Json>, keys: &[&str]) -> Option<&'a Json> {
    keys.iter()
        .find_map(|k| hp.get(*k))
        .filter(|v| !v.is_null())
}

fn as_usize(v: Option<&Json>) -> Option<usize> {
    v.and_then(|v| v.as_u64())
        .and_then(|v| usize::try_from(v).ok())
}

fn as_u32(key: &str, v: &Json) -> Result<u32, ConvertError> {
    v.as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| ConvertError::MissingHparam {
            key: key.to_string(),
            expected: "a non-negative integer",
        })
}

fn as_f32(key: &str, v: &Json) -> Result<f32, ConvertError> {
    v.as_f64()
        .map(|f| f as f32)
        .ok_or_else(|| ConvertError::MissingHparam {
            key: key.to_string(),
            expected: "a number",
        })
}

impl Hparams {
    pub(crate) fn new(mut raw: Map<String, Json>, arch: Arch) -> Result<Hparams, ConvertError> {
        if let Some(tc) = raw.get("text_config").and_then(|t| t.as_object()).cloned() {
            for (k, v) in tc {
                raw.insert(k, v);
            }
        }
        let block_count = as_usize(find(
            &raw,
            &["n_layers", "num_hidden_layers", "n_layer", "num_layers"],
        ))
        .ok_or(ConvertError::MissingHparam {
            key: "num_hidden_layers".into(),
            expected: "a non-negative integer",
        })?;
        let n_head = as_usize(find(&raw, &["num_attention_heads", "n_head", "n_heads"]));
        let n_head_kv = as_usize(find(&raw, &["num_key_value_heads", "n_kv_heads"]));
        let hidden = as_usize(find(&raw, &["hidden_size", "n_embd", "dim"]));
        let vocab_size = as_usize(raw.get("vocab_size"));
        if matches!(arch, Arch::Llama | Arch::Qwen2) {
            for key in ["num_local_experts", "num_experts", "n_routed_experts"] {
                if raw.get(key).is_some_and(|v| !v.is_null()) {
                    return Err(ConvertError::UnsupportedFeature(format!(
                        "mixture-of-experts models ({key} in config.json)"
                    )));
                }
            }
            if n_head.is_none() {
                return Err(ConvertError::MissingHparam {
                    key: "num_attention_heads".into(),
                    expected: "a positive integer",
                });
            }
            if hidden.is_none() {
                return Err(ConvertError::MissingHparam {
                    key: "hidden_size".into(),
                    expected: "a positive integer",
                });
            }
        }
        if n_head == Some(0) || n_head_kv == Some(0) {
            return Err(ConvertError::MissingHparam {
                key: "num_attention_heads / num_key_value_heads".into(),
                expected: "a positive integer",
            });
        }
        Ok(Hparams {
            raw,
            block_count,
            n_head,
            n_head_kv,
            hidden,
            vocab_size,
        })
    }

    /// `head_dim`, or `hidden_size / num_attention_heads` (transformers' Llama default).
    fn head_dim(&self) -> Option<usize> {
        as_usize(self.raw.get("head_dim")).or_else(|| Some(self.hidden? / self.n_head?))
    }

    /// Rope parameters merged as the reference's `TextModel.__init__` does.
    fn rope_parameters(&self) -> Map<String, Json> {
        let mut rp = self
            .raw
            .get("rope_parameters")
            .filter(|v| !v.is_null())
            .or_else(|| self.raw.get("rope_scaling").filter(|v| !v.is_null()))
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default();
        if !rp.contains_key("full_attention") && !rp.contains_key("sliding_attention") {
            if !rp.contains_key("rope_theta") {
                if let Some(t) = find(
                    &self.raw,
                    &[
                        "global_rope_theta",
                        "rope_global_theta",
                        "rope_theta_global",
                        "rope_theta",
                        "rotary_emb_base",
                    ],
                ) {
                    rp.insert("rope_theta".into(), t.clone());
                }
            }
            if !rp.contains_key("rope_type") {
                if let Some(t) = rp.get("type").cloned() {
                    rp.insert("rope_type".into(), t);
                }
            }
            if !rp.contains_key("partial_rotary_factor") {
                if let Some(v) = find(
                    &self.raw,
                    &["partial_rotary_factor", "rope_pct", "rope_percent"],
                ) {
                    rp.insert("partial_rotary_factor".into(), v.clone());
                }
            }
            if !rp.contains_key("original_max_position_embeddings") {
                if let Some(v) = self.raw.get("original_max_position_embeddings") {
                    rp.insert("original_max_position_embeddings".into(), v.clone());
                }
            }
        }
        rp
    }

    /// `rope_parameters.get("full_attention", rope_parameters)`.
    fn full_attention_rope(&self) -> Map<String, Json> {
        let rp = self.rope_parameters();
        match rp.get("full_attention").and_then(|f| f.as_object()) {
            Some(full) => full.clone(),
            None => rp,
        }
    }

    /// `find_hparam(keys)` of a key the reference requires.
    fn require(&self, keys: &[&str]) -> Result<&Json, ConvertError> {
        find(&self.raw, keys).ok_or_else(|| ConvertError::MissingHparam {
            key: keys.join(" / "),
            expected: "a value in config.json",
        })
    }

    fn require_u32(&self, keys: &[&str]) -> Result<u32, ConvertError> {
        as_u32(keys[0], self.require(keys)?)
    }

    fn require_f32(&self, keys: &[&str]) -> Result<f32, ConvertError> {
        as_f32(keys[0], self.require(keys)?)
    }

    /// Phi-3's rotary dimensions: `int(partial_rotary_factor * hidden) // heads`.
    fn phi3_rope_dims(&self) -> Result<u32, ConvertError> {
        let n_embd = self.require_u32(&["hidden_size", "n_embd"])?;
        let n_head = self.require_u32(&["num_attention_heads", "n_head"])?;
        let pct = match self.rope_parameters().get("partial_rotary_factor") {
            Some(v) => v.as_f64().ok_or(ConvertError::MissingHparam {
                key: "partial_rotary_factor".into(),
                expected: "a number",
            })?,
            None => 1.0,
        };
        let rotary = (pct * f64::from(n_embd)).trunc();
        if !(0.0..=f64::from(u32::MAX)).contains(&rotary) || n_head == 0 {
            return Err(ConvertError::MissingHparam {
                key: "partial_rotary_factor".into(),
                expected: "a factor in [0, 1]",
            });
        }
        Ok(rotary as u32 / n_head)
    }
}

/// `set_gguf_parameters` for `arch`, in the reference's key order (`general.file_type`
/// included).
pub(crate) fn hparam_metadata(
    arch: Arch,
    hp: &Hparams,
    file_type: u32,
    warnings: &mut Vec<String>,
) -> Result<Metadata, ConvertError> {
    let a = arch.gguf_name();
    let mut md = Metadata::new();
    let raw = &hp.raw;
    if arch == Arch::Gpt2 {
        md.set(format!("{a}.block_count"), hp.block_count as u32);
        // The stock script reads `n_ctx`, which transformers no longer writes; n_positions is
        // the same number (the reference fixtures were made with n_ctx = n_positions).
        let ctx = find(raw, &["n_ctx", "n_positions"]).ok_or(ConvertError::MissingHparam {
            key: "n_ctx / n_positions".into(),
            expected: "a non-negative integer",
        })?;
        md.set(format!("{a}.context_length"), as_u32("n_positions", ctx)?);
        let n_embd = raw.get("n_embd").ok_or(ConvertError::MissingHparam {
            key: "n_embd".into(),
            expected: "a non-negative integer",
        })?;
        let n_embd = as_u32("n_embd", n_embd)?;
        md.set(format!("{a}.embedding_length"), n_embd);
        md.set(
            format!("{a}.feed_forward_length"),
            n_embd.checked_mul(4).ok_or(ConvertError::MissingHparam {
                key: "n_embd".into(),
                expected: "a size whose 4x fits in u32",
            })?,
        );
        let n_head = raw.get("n_head").ok_or(ConvertError::MissingHparam {
            key: "n_head".into(),
            expected: "a non-negative integer",
        })?;
        md.set(
            format!("{a}.attention.head_count"),
            as_u32("n_head", n_head)?,
        );
        let eps = raw
            .get("layer_norm_epsilon")
            .ok_or(ConvertError::MissingHparam {
                key: "layer_norm_epsilon".into(),
                expected: "a number",
            })?;
        md.set(
            format!("{a}.attention.layer_norm_epsilon"),
            as_f32("layer_norm_epsilon", eps)?,
        );
        md.set("general.file_type", file_type);
        return Ok(md);
    }
    if matches!(arch, Arch::Gemma | Arch::Gemma2) {
        return gemma_metadata(arch, hp, file_type);
    }
    if arch == Arch::Phi3 {
        return phi3_metadata(hp, file_type);
    }

    md.set(format!("{a}.block_count"), hp.block_count as u32);
    let ctx_keys = [
        "max_position_embeddings",
        "n_ctx",
        "n_positions",
        "max_length",
        "max_sequence_length",
        "model_max_length",
    ];
    if let Some(v) = find(raw, &ctx_keys) {
        md.set(
            format!("{a}.context_length"),
            as_u32("max_position_embeddings", v)?,
        );
    }
    if let Some(v) = find(raw, &["hidden_size", "n_embd", "dim"]) {
        md.set(format!("{a}.embedding_length"), as_u32("hidden_size", v)?);
    }
    let ff_keys = [
        "prefix_dense_intermediate_size",
        "dense_intermediate_size",
        "intermediate_size",
        "n_inner",
        "hidden_dim",
    ];
    if let Some(v) = find(raw, &ff_keys) {
        md.set(
            format!("{a}.feed_forward_length"),
            as_u32("intermediate_size", v)?,
        );
    }
    if let Some(v) = find(raw, &["num_attention_heads", "n_head", "n_heads"]) {
        md.set(
            format!("{a}.attention.head_count"),
            as_u32("num_attention_heads", v)?,
        );
    }
    if let Some(v) = find(raw, &["num_key_value_heads", "n_kv_heads"]) {
        md.set(
            format!("{a}.attention.head_count_kv"),
            as_u32("num_key_value_heads", v)?,
        );
    }
    if raw.get("is_causal") == Some(&Json::Bool(false)) {
        md.set(format!("{a}.attention.causal"), false);
    }
    let mut rp = hp.rope_parameters();
    if let Some(full) = rp
        .get("full_attention")
        .and_then(|f| f.as_object())
        .cloned()
    {
        rp = full;
    }
    if rp.get("rope_theta").is_none() {
        // transformers' Llama/Qwen2 configs default rope_theta to 10000.0 when absent.
        rp.insert("rope_theta".into(), Json::from(10000.0));
    }
    if let Some(rt) = rp.get("rope_type").and_then(|t| t.as_str()) {
        let factor = rp.get("factor").and_then(|f| f.as_f64());
        match (rt, factor) {
            ("linear", Some(f)) => {
                md.set(format!("{a}.rope.scaling.type"), "linear");
                md.set(format!("{a}.rope.scaling.factor"), f as f32);
            }
            ("yarn", Some(f)) => {
                md.set(format!("{a}.rope.scaling.type"), "yarn");
                md.set(format!("{a}.rope.scaling.factor"), f as f32);
                let orig = rp.get("original_max_position_embeddings").ok_or(
                    ConvertError::MissingHparam {
                        key: "rope_scaling.original_max_position_embeddings".into(),
                        expected: "an integer",
                    },
                )?;
                md.set(
                    format!("{a}.rope.scaling.original_context_length"),
                    as_u32("original_max_position_embeddings", orig)?,
                );
                for (k, gk) in [
                    ("extrapolation_factor", "rope.scaling.yarn_ext_factor"),
                    ("attention_factor", "rope.scaling.yarn_attn_factor"),
                    ("beta_fast", "rope.scaling.yarn_beta_fast"),
                    ("beta_slow", "rope.scaling.yarn_beta_slow"),
                ] {
                    let v = rp.get(k).or_else(|| {
                        if k == "attention_factor" {
                            rp.get("attn_factor")
                        } else {
                            None
                        }
                    });
                    if let Some(v) = v.filter(|v| !v.is_null()) {
                        md.set(format!("{a}.{gk}"), as_f32(k, v)?);
                    }
                }
            }
            ("su" | "longrope", _) => {
                return Err(ConvertError::UnsupportedFeature(format!(
                    "rope_type {rt:?} (LongRoPE needs per-model factor tensors)"
                )))
            }
            ("default" | "dynamic", _) | ("linear" | "yarn", None) => {}
            (t, _) if t.eq_ignore_ascii_case("llama3") => {}
            (t, _) => warnings.push(format!("unknown RoPE type {t:?} in config.json: ignored")),
        }
    }
    if let Some(t) = rp.get("rope_theta").filter(|v| !v.is_null()) {
        md.set(format!("{a}.rope.freq_base"), as_f32("rope_theta", t)?);
    }
    if let Some(v) = find(raw, &["rms_norm_eps", "norm_eps"]) {
        md.set(
            format!("{a}.attention.layer_norm_rms_epsilon"),
            as_f32("rms_norm_eps", v)?,
        );
    }
    if let Some(v) = find(
        raw,
        &["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"],
    ) {
        md.set(
            format!("{a}.attention.layer_norm_epsilon"),
            as_f32("layer_norm_eps", v)?,
        );
    }
    let head_dim = match arch {
        // transformers 5 LlamaConfig always carries head_dim (default hidden / heads).
        Arch::Llama => hp.head_dim(),
        _ => as_usize(raw.get("head_dim")),
    };
    if let Some(hd) = head_dim {
        md.set(format!("{a}.attention.key_length"), hd as u32);
        md.set(format!("{a}.attention.value_length"), hd as u32);
    }
    md.set("general.file_type", file_type);
    if arch == Arch::Llama {
        let vs = raw.get("vocab_size").ok_or(ConvertError::MissingHparam {
            key: "vocab_size".into(),
            expected: "a non-negative integer",
        })?;
        md.set(format!("{a}.vocab_size"), as_u32("vocab_size", vs)?);
        let rd = hp.head_dim().ok_or(ConvertError::MissingHparam {
            key: "head_dim or hidden_size/num_attention_heads".into(),
            expected: "a positive integer",
        })?;
        md.set(format!("{a}.rope.dimension_count"), rd as u32);
    }
    Ok(md)
}

/// `GemmaModel` / `Gemma2Model.set_gguf_parameters` (they do not call the base class).
fn gemma_metadata(arch: Arch, hp: &Hparams, file_type: u32) -> Result<Metadata, ConvertError> {
    let a = arch.gguf_name();
    let mut md = Metadata::new();
    let u = |k: &str| hp.require_u32(&[k]);
    md.set(format!("{a}.context_length"), u("max_position_embeddings")?);
    md.set(format!("{a}.embedding_length"), u("hidden_size")?);
    md.set(format!("{a}.block_count"), hp.block_count as u32);
    md.set(format!("{a}.feed_forward_length"), u("intermediate_size")?);
    md.set(
        format!("{a}.attention.head_count"),
        u("num_attention_heads")?,
    );
    // `hparams["num_key_value_heads"] if "num_key_value_heads" in hparams else heads`.
    let kv = if hp.raw.contains_key("num_key_value_heads") {
        u("num_key_value_heads")?
    } else {
        u("num_attention_heads")?
    };
    md.set(format!("{a}.attention.head_count_kv"), kv);
    md.set(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        hp.require_f32(&["rms_norm_eps"])?,
    );
    let head_dim = u("head_dim")?;
    md.set(format!("{a}.attention.key_length"), head_dim);
    md.set(format!("{a}.attention.value_length"), head_dim);
    md.set("general.file_type", file_type);
    if arch == Arch::Gemma2 {
        md.set(
            format!("{a}.attn_logit_softcapping"),
            hp.require_f32(&["attn_logit_softcapping"])?,
        );
        md.set(
            format!("{a}.final_logit_softcapping"),
            hp.require_f32(&["final_logit_softcapping"])?,
        );
        md.set(
            format!("{a}.attention.sliding_window"),
            u("sliding_window")?,
        );
    }
    Ok(md)
}

/// `Phi3MiniModel.set_gguf_parameters` (it does not call the base class).
fn phi3_metadata(hp: &Hparams, file_type: u32) -> Result<Metadata, ConvertError> {
    let a = Arch::Phi3.gguf_name();
    let mut md = Metadata::new();
    md.set(
        format!("{a}.context_length"),
        hp.require_u32(&["n_positions", "max_position_embeddings"])?,
    );
    let orig = phi3_original_context(hp)?;
    md.set(format!("{a}.rope.scaling.original_context_length"), orig);
    md.set(
        format!("{a}.embedding_length"),
        hp.require_u32(&["hidden_size", "n_embd"])?,
    );
    md.set(
        format!("{a}.feed_forward_length"),
        hp.require_u32(&["intermediate_size"])?,
    );
    md.set(format!("{a}.block_count"), hp.block_count as u32);
    md.set(
        format!("{a}.attention.head_count"),
        hp.require_u32(&["num_attention_heads", "n_head"])?,
    );
    md.set(
        format!("{a}.attention.head_count_kv"),
        hp.require_u32(&["num_key_value_heads", "n_head_kv"])?,
    );
    md.set(
        format!("{a}.attention.layer_norm_rms_epsilon"),
        hp.require_f32(&["rms_norm_eps"])?,
    );
    md.set(format!("{a}.rope.dimension_count"), hp.phi3_rope_dims()?);
    let theta = hp
        .full_attention_rope()
        .get("rope_theta")
        .filter(|v| !v.is_null())
        .cloned()
        .ok_or(ConvertError::MissingHparam {
            key: "rope_theta".into(),
            expected: "a number",
        })?;
    md.set(format!("{a}.rope.freq_base"), as_f32("rope_theta", &theta)?);
    md.set("general.file_type", file_type);
    // A missing or null sliding_window is written as 0 (how llama.cpp tells Phi-4 apart).
    let sw = match hp.raw.get("sliding_window").filter(|v| !v.is_null()) {
        Some(v) => as_u32("sliding_window", v)?,
        None => 0,
    };
    md.set(format!("{a}.attention.sliding_window"), sw);
    Ok(md)
}

/// `rope_parameters["original_max_position_embeddings"]` (required by the Phi-3 converter).
fn phi3_original_context(hp: &Hparams) -> Result<u32, ConvertError> {
    let rp = hp.rope_parameters();
    let v = rp
        .get("original_max_position_embeddings")
        .filter(|v| !v.is_null())
        .ok_or(ConvertError::MissingHparam {
            key: "original_max_position_embeddings".into(),
            expected: "an integer",
        })?;
    as_u32("original_max_position_embeddings", v)
}

/// Phi-3 LongRoPE (`Phi3MiniModel.generate_extra_tensors`): `rope.scaling.attn_factor` and the
/// `rope_factors_long` / `rope_factors_short` tensors, or `None` when the config has no
/// `long_factor` (4k models).
pub(crate) struct Phi3RopeFactors {
    pub attn_factor: f32,
    pub long: Vec<f32>,
    pub short: Vec<f32>,
}

pub(crate) fn phi3_rope_factors(hp: &Hparams) -> Result<Option<Phi3RopeFactors>, ConvertError> {
    let rp = hp.rope_parameters();
    let long = match rp.get("long_factor") {
        None | Some(Json::Null) => return Ok(None),
        Some(Json::Array(a)) if a.is_empty() => return Ok(None),
        Some(v) => v,
    };
    let max_pos = hp.require(&["n_positions", "max_position_embeddings"])?;
    let max_pos = max_pos.as_f64().ok_or(ConvertError::MissingHparam {
        key: "max_position_embeddings".into(),
        expected: "a number",
    })?;
    let orig = f64::from(phi3_original_context(hp)?);
    let scale = max_pos / orig;
    let rope_type = rp
        .get("rope_type")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_lowercase();
    let attn_factor = match rope_type.as_str() {
        "" => {
            return Err(ConvertError::MissingHparam {
                key: "rope_scaling.type".into(),
                expected: "\"longrope\", \"su\" or \"yarn\"",
            })
        }
        "su" | "longrope" if scale > 1.0 => (1.0 + scale.ln() / orig.ln()).sqrt(),
        "yarn" if scale > 1.0 => 0.1 * scale.ln() + 1.0,
        "su" | "longrope" | "yarn" => 1.0,
        other => {
            return Err(ConvertError::UnsupportedFeature(format!(
                "Phi-3 rope scaling type {other:?}"
            )))
        }
    };
    let factors = |key: &str, v: Option<&Json>| -> Result<Vec<f32>, ConvertError> {
        let bad = || ConvertError::MissingHparam {
            key: format!("rope_scaling.{key}"),
            expected: "a list of numbers",
        };
        v.and_then(|v| v.as_array())
            .ok_or_else(bad)?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32).ok_or_else(bad))
            .collect()
    };
    let long = factors("long_factor", Some(long))?;
    let short = factors("short_factor", rp.get("short_factor"))?;
    let rope_dims = hp.phi3_rope_dims()?;
    // The reference compares with `rope_dims / 2` as a float: odd dimensions never match.
    if long.len() != short.len() || rope_dims % 2 != 0 || long.len() != (rope_dims / 2) as usize {
        return Err(ConvertError::MissingHparam {
            key: "rope_scaling.long_factor / short_factor".into(),
            expected: "two lists of rope dimension count / 2 numbers",
        });
    }
    Ok(Some(Phi3RopeFactors {
        attn_factor: attn_factor as f32,
        long,
        short,
    }))
}

/// Llama 3 rope scaling factors (`LlamaModel.generate_extra_tensors`), or `None` when the
/// config does not use `rope_type = "llama3"`.
pub(crate) fn llama3_rope_factors(hp: &Hparams) -> Option<Vec<f32>> {
    let mut rp = hp.rope_parameters();
    if let Some(full) = rp
        .get("full_attention")
        .and_then(|f| f.as_object())
        .cloned()
    {
        rp = full;
    }
    let rt = rp.get("rope_type").and_then(|t| t.as_str())?;
    if !rt.eq_ignore_ascii_case("llama3") {
        return None;
    }
    let base = rp
        .get("rope_theta")
        .and_then(|v| v.as_f64())
        .unwrap_or(10000.0) as f32;
    let dim = hp.head_dim()?;
    let get = |k: &str, d: f64| rp.get(k).and_then(|v| v.as_f64()).unwrap_or(d) as f32;
    let factor = get("factor", 8.0);
    let low = get("low_freq_factor", 1.0);
    let high = get("high_freq_factor", 4.0);
    let old_ctx = get("original_max_position_embeddings", 8192.0);
    let low_wavelen = old_ctx / low;
    let high_wavelen = old_ctx / high;
    let mut out = Vec::with_capacity(dim / 2);
    for i in (0..dim).step_by(2) {
        let freq = 1.0f32 / base.powf(i as f32 / dim as f32);
        let wavelen = 2.0 * std::f32::consts::PI / freq;
        if wavelen < high_wavelen {
            out.push(1.0);
        } else if wavelen > low_wavelen {
            out.push(factor);
        } else {
            let smooth = (old_ctx / wavelen - low) / (high - low);
            out.push(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
    Some(out)
}

/// How a tensor's data is rearranged on the way to GGUF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transform {
    None,
    /// `LlamaModel.permute` with this many heads (rows interleaved per head).
    Permute(usize),
    /// 2-D transpose (GPT-2 Conv1D weights).
    Transpose,
    /// `data + 1` (Gemma norms), computed in the tensor's own precision as torch does it: in
    /// f32 for f32 and bf16 tensors (the reference upcasts bf16 first), in f16 for f16 ones.
    AddOne,
}

/// How one architecture names its tensors: `tensor_mapping.py`'s rows for it, as data.
struct TensorNames {
    /// Prefix of every tensor name, stripped when present (`model.`, `transformer.`).
    root: &'static str,
    /// Prefix of per-layer tensors after the root, followed by the layer number (`layers.`, `h.`).
    layers: &'static str,
    /// Whole-model tensors: HF stem → GGUF name.
    top: &'static [(&'static str, &'static str)],
    /// Per-layer tensors: HF part (after `layers.N.`) → GGUF name (after `blk.N.`).
    layer: &'static [(&'static str, &'static str)],
}

const LLAMA_TOP: &[(&str, &str)] = &[
    ("embed_tokens", "token_embd"),
    ("norm", "output_norm"),
    ("lm_head", "output"),
];

const LLAMA_LAYER: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// Gemma: Llama's names, with Phi-3's fused projections accepted too (the reference's table
/// is shared), and no `lm_head` (dropped before mapping: the embeddings are tied).
const GEMMA_LAYER: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("self_attn.qkv_proj", "attn_qkv"),
    ("mlp.gate_up_proj", "ffn_up"),
];

/// Gemma 2: post-attention / pre- and post-FFN norms.
const GEMMA2_LAYER: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "post_attention_norm"),
    ("pre_feedforward_layernorm", "ffn_norm"),
    ("post_feedforward_layernorm", "post_ffw_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("self_attn.qkv_proj", "attn_qkv"),
    ("mlp.gate_up_proj", "ffn_up"),
];

/// Phi-3: fused projections (tensor_mapping.py: `# phi3`); separate q/k/v are accepted too.
const PHI3_LAYER: &[(&str, &str)] = &[
    ("input_layernorm", "attn_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("post_attention_layernorm", "ffn_norm"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("self_attn.qkv_proj", "attn_qkv"),
    ("mlp.gate_up_proj", "ffn_up"),
];

const GPT2_TOP: &[(&str, &str)] = &[
    ("wte", "token_embd"),
    ("wpe", "position_embd"),
    ("ln_f", "output_norm"),
    ("lm_head", "output"),
];

const GPT2_LAYER: &[(&str, &str)] = &[
    ("ln_1", "attn_norm"),
    ("attn.c_attn", "attn_qkv"),
    ("attn.c_proj", "attn_output"),
    ("ln_2", "ffn_norm"),
    ("mlp.c_fc", "ffn_up"),
    ("mlp.c_proj", "ffn_down"),
];

/// GPT-2's Conv1D weights, stored `[in, out]`: transposed to `[out, in]`.
const GPT2_CONV1D: &[&str] = &["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

impl Arch {
    fn tensor_names(self) -> TensorNames {
        let hf = |top, layer| TensorNames {
            root: "model.",
            layers: "layers.",
            top,
            layer,
        };
        match self {
            Arch::Llama | Arch::Qwen2 => hf(LLAMA_TOP, LLAMA_LAYER),
            Arch::Gemma => hf(&LLAMA_TOP[..2], GEMMA_LAYER),
            Arch::Gemma2 => hf(&LLAMA_TOP[..2], GEMMA2_LAYER),
            Arch::Phi3 => hf(LLAMA_TOP, PHI3_LAYER),
            Arch::Gpt2 => TensorNames {
                root: "transformer.",
                layers: "h.",
                top: GPT2_TOP,
                layer: GPT2_LAYER,
            },
        }
    }
}

fn lookup(table: &[(&str, &'static str)], key: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(hf, _)| *hf == key)
        .map(|(_, gguf)| *gguf)
}

/// The GGUF name of an HF tensor and its transform; `Ok(None)` for tensors the reference drops.
pub(crate) fn map_tensor(
    arch: Arch,
    hp: &Hparams,
    name: &str,
) -> Result<Option<(String, Transform)>, ConvertError> {
    if name.ends_with(".attention.masked_bias")
        || name.ends_with(".attention.bias")
        || name.ends_with(".rotary_emb.inv_freq")
    {
        return Ok(None);
    }
    let unmapped = || ConvertError::UnmappedTensor {
        tensor: name.to_string(),
        arch: arch.gguf_name().to_string(),
    };
    let (stem, suffix) = if let Some(s) = name.strip_suffix(".weight") {
        (s, "weight")
    } else if let Some(s) = name.strip_suffix(".bias") {
        (s, "bias")
    } else {
        return Err(unmapped());
    };
    if arch.norm_plus_one() && name == "lm_head.weight" {
        // GemmaModel.filter_tensors: lm_head is not used by llama.cpp (tied embeddings).
        return Ok(None);
    }
    let names = arch.tensor_names();
    let s = stem.strip_prefix(names.root).unwrap_or(stem);
    if arch == Arch::Gpt2 && (s.ends_with(".attn.bias") || s.ends_with(".attn.masked_bias")) {
        return Ok(None);
    }
    // Gemma's norms are stored as `w - 1`: written as `w + 1`.
    let add_one = arch.norm_plus_one() && name.ends_with("norm.weight");
    if let Some(top) = lookup(names.top, s) {
        let tr = if add_one {
            Transform::AddOne
        } else {
            Transform::None
        };
        return Ok(Some((format!("{top}.{suffix}"), tr)));
    }
    let rest = s.strip_prefix(names.layers).ok_or_else(unmapped)?;
    let (bid, part) = rest.split_once('.').ok_or_else(unmapped)?;
    let bid: usize = bid.parse().map_err(|_| unmapped())?;
    if bid >= hp.block_count {
        return Err(unmapped());
    }
    let g = lookup(names.layer, part).ok_or_else(unmapped)?;
    let tr = match arch {
        _ if add_one => Transform::AddOne,
        // convert_hf_to_gguf.py's LlamaModel permutes Q and K rows for ggml's RoPE layout.
        Arch::Llama if part == "self_attn.q_proj" => Transform::Permute(hp.n_head.unwrap_or(1)),
        Arch::Llama if part == "self_attn.k_proj" => {
            Transform::Permute(hp.n_head_kv.unwrap_or(hp.n_head.unwrap_or(1)))
        }
        Arch::Gpt2 if suffix == "weight" && GPT2_CONV1D.contains(&part) => Transform::Transpose,
        _ => Transform::None,
    };
    Ok(Some((format!("blk.{bid}.{g}.{suffix}"), tr)))
}

/// HF names every layer must have (to report incomplete weights before writing anything).
pub(crate) fn required_layer_tensors(arch: Arch, bid: usize) -> Vec<String> {
    let parts: &[&str] = match arch {
        Arch::Llama | Arch::Qwen2 | Arch::Gemma => &[
            "input_layernorm.weight",
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "post_attention_layernorm.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
        ],
        Arch::Gemma2 => &[
            "input_layernorm.weight",
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "post_attention_layernorm.weight",
            "pre_feedforward_layernorm.weight",
            "post_feedforward_layernorm.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
        ],
        Arch::Phi3 => &[
            "input_layernorm.weight",
            "self_attn.qkv_proj.weight",
            "self_attn.o_proj.weight",
            "post_attention_layernorm.weight",
            "mlp.gate_up_proj.weight",
            "mlp.down_proj.weight",
        ],
        Arch::Gpt2 => &[
            "ln_1.weight",
            "attn.c_attn.weight",
            "attn.c_proj.weight",
            "ln_2.weight",
            "mlp.c_fc.weight",
            "mlp.c_proj.weight",
        ],
    };
    let prefix = match arch {
        Arch::Llama | Arch::Qwen2 | Arch::Gemma | Arch::Gemma2 | Arch::Phi3 => {
            format!("model.layers.{bid}.")
        }
        Arch::Gpt2 => format!("transformer.h.{bid}."),
    };
    parts.iter().map(|p| format!("{prefix}{p}")).collect()
}

/// HF name of the token embedding.
pub(crate) fn embedding_names(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::Llama | Arch::Qwen2 | Arch::Gemma | Arch::Gemma2 | Arch::Phi3 => {
            &["model.embed_tokens.weight", "embed_tokens.weight"]
        }
        Arch::Gpt2 => &["transformer.wte.weight", "wte.weight"],
    }
}
