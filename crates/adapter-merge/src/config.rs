//! `adapter_config.json`: the LoraConfig fields that decide what a merge does, resolved as
//! PEFT 0.21.2 resolves them (`tuners/lora/config.py`, `tuners/tuners_utils.py`,
//! `utils/other.py get_pattern_key`).

use std::path::{Path, PathBuf};

use regex::Regex;
use serde_json::Value;

use crate::MergeError;

/// File name of the adapter config.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// PEFT's default LoRA targets per `config.json` `model_type`, used when `target_modules` is
/// absent (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`, `peft/utils/constants.py` at
/// huggingface/peft 00073fe). PEFT refuses a model type missing from this table.
pub const DEFAULT_LORA_TARGETS: &[(&str, &[&str])] = &[
    ("t5", &["q", "v"]),
    ("mt5", &["q", "v"]),
    ("bart", &["q_proj", "v_proj"]),
    ("gpt2", &["c_attn"]),
    ("bloom", &["query_key_value"]),
    ("blip-2", &["q", "v", "q_proj", "v_proj"]),
    ("opt", &["q_proj", "v_proj"]),
    ("gptj", &["q_proj", "v_proj"]),
    ("gpt_neox", &["query_key_value"]),
    ("gpt_neo", &["q_proj", "v_proj"]),
    ("bert", &["query", "value"]),
    ("roberta", &["query", "value"]),
    ("xlm-roberta", &["query", "value"]),
    ("electra", &["query", "value"]),
    ("deberta-v2", &["query_proj", "value_proj"]),
    ("deberta", &["in_proj"]),
    ("layoutlm", &["query", "value"]),
    ("llama", &["q_proj", "v_proj"]),
    ("llama4", &["q_proj", "v_proj"]),
    ("chatglm", &["query_key_value"]),
    ("gpt_bigcode", &["c_attn"]),
    ("mpt", &["Wqkv"]),
    ("RefinedWebModel", &["query_key_value"]),
    ("RefinedWeb", &["query_key_value"]),
    ("falcon", &["query_key_value"]),
    ("btlm", &["c_proj", "c_attn"]),
    ("codegen", &["qkv_proj"]),
    ("mistral", &["q_proj", "v_proj"]),
    ("mixtral", &["q_proj", "v_proj"]),
    ("stablelm", &["q_proj", "v_proj"]),
    ("phi", &["q_proj", "v_proj", "fc1", "fc2"]),
    ("gemma", &["q_proj", "v_proj"]),
    ("gemma2", &["q_proj", "v_proj"]),
    ("gemma3_text", &["q_proj", "v_proj"]),
    ("qwen2", &["q_proj", "v_proj"]),
    ("qwen3", &["q_proj", "v_proj"]),
];

/// `target_modules` / `exclude_modules`: a list of names (matched as a full name or a
/// `.`-separated suffix), or one regex that must match the whole module name.
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleSelector {
    /// Module names or suffixes.
    Names(Vec<String>),
    /// A regex matched against the whole module name (Python `re.fullmatch`).
    Regex(String),
    /// `"all-linear"`: every linear layer except the output layer.
    AllLinear,
}

/// The adapter's LoRA configuration.
#[derive(Debug, Clone)]
pub struct AdapterConfig {
    /// Where it was read from.
    pub path: PathBuf,
    /// `peft_type` (`"LORA"` for everything loraforge merges).
    pub peft_type: Option<String>,
    /// `task_type`, e.g. `"CAUSAL_LM"`.
    pub task_type: Option<String>,
    /// The base the adapter was trained on.
    pub base_model_name_or_path: Option<String>,
    /// Default rank.
    pub r: u64,
    /// Default alpha.
    pub lora_alpha: f64,
    /// `scaling = alpha / sqrt(r)` instead of `alpha / r`.
    pub use_rslora: bool,
    /// DoRA.
    pub use_dora: bool,
    /// Per-module rank overrides, in file order.
    pub rank_pattern: Vec<(String, u64)>,
    /// Per-module alpha overrides, in file order.
    pub alpha_pattern: Vec<(String, f64)>,
    /// Which modules carry LoRA.
    pub target_modules: Option<ModuleSelector>,
    /// Which modules are excluded.
    pub exclude_modules: Option<ModuleSelector>,
    /// Only these layer indices (with list `target_modules`).
    pub layers_to_transform: Option<Vec<u64>>,
    /// Name(s) of the layer list (`layers`, `h`, …).
    pub layers_pattern: Option<Vec<String>>,
    /// Base weights stored `[in, out]` (GPT-2 `Conv1D`).
    pub fan_in_fan_out: bool,
    /// `"none"`, `"all"` or `"lora_only"`.
    pub bias: String,
    /// A bias on `lora_B`.
    pub lora_bias: bool,
    /// Modules saved in full and replacing the base's.
    pub modules_to_save: Vec<String>,
    /// `init_lora_weights` (a bool or a method name).
    pub init_lora_weights: Value,
    /// `lora_dropout` (informational).
    pub lora_dropout: f64,
    /// The raw JSON.
    pub raw: Value,
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn selector(
    path: &Path,
    field: &str,
    v: Option<&Value>,
) -> Result<Option<ModuleSelector>, MergeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "all-linear" && field == "target_modules" => {
            Ok(Some(ModuleSelector::AllLinear))
        }
        Some(Value::String(s)) => Ok(Some(ModuleSelector::Regex(s.clone()))),
        Some(v @ Value::Array(_)) => string_list(v)
            .map(|l| Some(ModuleSelector::Names(l)))
            .ok_or_else(|| MergeError::AdapterConfig {
                path: path.to_path_buf(),
                reason: format!("{field} is not a list of strings"),
            }),
        Some(_) => Err(MergeError::AdapterConfig {
            path: path.to_path_buf(),
            reason: format!("{field} must be a string or a list of strings"),
        }),
    }
}

impl AdapterConfig {
    /// Reads `<dir>/adapter_config.json`.
    pub fn load(dir: &Path) -> Result<AdapterConfig, MergeError> {
        let path = dir.join(ADAPTER_CONFIG_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MergeError::NotAnAdapter {
                    dir: dir.to_path_buf(),
                })
            }
            Err(source) => return Err(MergeError::Io { path, source }),
        };
        let raw: Value = serde_json::from_slice(&text).map_err(|e| MergeError::AdapterConfig {
            path: path.clone(),
            reason: format!("not valid JSON: {e}"),
        })?;
        Self::from_json(&path, raw)
    }

    /// Parses a config already read as JSON (`path` is used in error messages).
    pub fn from_json(path: &Path, raw: Value) -> Result<AdapterConfig, MergeError> {
        let bad = |reason: String| MergeError::AdapterConfig {
            path: path.to_path_buf(),
            reason,
        };
        if !raw.is_object() {
            return Err(bad("not a JSON object".into()));
        }
        let get = |k: &str| raw.get(k).filter(|v| !v.is_null());
        let str_field = |k: &str| get(k).and_then(|v| v.as_str()).map(str::to_string);
        let bool_field = |k: &str| get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        let r = match get("r") {
            None => 8,
            Some(v) => v
                .as_u64()
                .filter(|&r| r > 0)
                .ok_or_else(|| bad(format!("r = {v} is not a positive integer")))?,
        };
        let lora_alpha = match get("lora_alpha") {
            None => 8.0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad(format!("lora_alpha = {v} is not a number")))?,
        };
        let mut rank_pattern = Vec::new();
        if let Some(m) = get("rank_pattern") {
            let m = m
                .as_object()
                .ok_or_else(|| bad("rank_pattern is not an object".into()))?;
            for (k, v) in m {
                let r = v.as_u64().filter(|&r| r > 0).ok_or_else(|| {
                    bad(format!(
                        "rank_pattern[{k:?}] = {v} is not a positive integer"
                    ))
                })?;
                rank_pattern.push((k.clone(), r));
            }
        }
        let mut alpha_pattern = Vec::new();
        if let Some(m) = get("alpha_pattern") {
            let m = m
                .as_object()
                .ok_or_else(|| bad("alpha_pattern is not an object".into()))?;
            for (k, v) in m {
                let a = v
                    .as_f64()
                    .ok_or_else(|| bad(format!("alpha_pattern[{k:?}] = {v} is not a number")))?;
                alpha_pattern.push((k.clone(), a));
            }
        }
        let layers_to_transform = match get("layers_to_transform") {
            None => None,
            Some(Value::Number(n)) => Some(vec![n
                .as_u64()
                .ok_or_else(|| bad("layers_to_transform is not a layer index".into()))?]),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| v.as_u64())
                    .collect::<Option<Vec<u64>>>()
                    .ok_or_else(|| {
                        bad("layers_to_transform is not a list of layer indices".into())
                    })?,
            ),
            Some(_) => return Err(bad("layers_to_transform must be an int or a list".into())),
        };
        let layers_pattern = match get("layers_pattern") {
            None => None,
            Some(Value::String(s)) => Some(vec![s.clone()]),
            Some(v) => Some(
                string_list(v)
                    .ok_or_else(|| bad("layers_pattern is not a string or list".into()))?,
            ),
        };
        let modules_to_save = match get("modules_to_save") {
            None => Vec::new(),
            Some(v) => string_list(v)
                .ok_or_else(|| bad("modules_to_save is not a list of strings".into()))?,
        };
        Ok(AdapterConfig {
            path: path.to_path_buf(),
            peft_type: str_field("peft_type"),
            task_type: str_field("task_type"),
            base_model_name_or_path: str_field("base_model_name_or_path"),
            r,
            lora_alpha,
            use_rslora: bool_field("use_rslora"),
            use_dora: bool_field("use_dora"),
            rank_pattern,
            alpha_pattern,
            target_modules: selector(path, "target_modules", get("target_modules"))?,
            exclude_modules: selector(path, "exclude_modules", get("exclude_modules"))?,
            layers_to_transform,
            layers_pattern,
            fan_in_fan_out: bool_field("fan_in_fan_out"),
            bias: str_field("bias").unwrap_or_else(|| "none".into()),
            lora_bias: bool_field("lora_bias"),
            modules_to_save,
            init_lora_weights: get("init_lora_weights")
                .cloned()
                .unwrap_or(Value::Bool(true)),
            lora_dropout: get("lora_dropout").and_then(|v| v.as_f64()).unwrap_or(0.0),
            raw,
        })
    }

    /// Refuses configurations whose merge onto the pristine base would be wrong or that loraforge
    /// does not implement (PiSSA / OLoRA / CorDA / LoftQ initialisations rewrite the base).
    pub fn check_mergeable(&self) -> Result<(), MergeError> {
        if let Some(t) = &self.peft_type {
            if t != "LORA" {
                return Err(MergeError::Unsupported {
                    what: format!("peft_type {t:?} (only LORA adapters can be merged)"),
                });
            }
        }
        if let Value::String(init) = &self.init_lora_weights {
            let lower = init.to_ascii_lowercase();
            if lower.starts_with("pissa")
                || lower == "olora"
                || lower == "corda"
                || lower == "loftq"
            {
                return Err(MergeError::BaseRewritingInit {
                    method: init.clone(),
                });
            }
        }
        for (field, what) in [
            (
                "target_parameters",
                "LoRA on raw parameters (target_parameters)",
            ),
            ("layer_replication", "layer_replication"),
            ("trainable_token_indices", "trainable_token_indices"),
        ] {
            if self.raw.get(field).is_some_and(|v| !v.is_null()) {
                return Err(MergeError::Unsupported {
                    what: what.to_string(),
                });
            }
        }
        if self.raw.get("use_qalora").and_then(|v| v.as_bool()) == Some(true) {
            return Err(MergeError::Unsupported {
                what: "QA-LoRA (use_qalora)".into(),
            });
        }
        Ok(())
    }

    /// Fills in `target_modules` when the file has none, as PEFT does when it loads such an
    /// adapter: the default targets of the base's `model_type` ([`DEFAULT_LORA_TARGETS`]); a
    /// model type without defaults is refused (PEFT: "Please specify `target_modules`").
    pub fn resolve_default_targets(&mut self, model_type: Option<&str>) -> Result<(), MergeError> {
        if self.target_modules.is_some() {
            return Ok(());
        }
        let defaults = model_type.and_then(|t| {
            DEFAULT_LORA_TARGETS
                .iter()
                .find(|(name, _)| *name == t)
                .map(|(_, targets)| targets)
        });
        match defaults {
            Some(targets) => {
                self.target_modules = Some(ModuleSelector::Names(
                    targets.iter().map(|t| t.to_string()).collect(),
                ));
                Ok(())
            }
            None => Err(MergeError::NoDefaultTargets {
                path: self.path.clone(),
                model_type: model_type.map(str::to_string),
            }),
        }
    }

    /// Rank for a module (`rank_pattern`: first key whose regex `(.*\.)?(KEY)$` matches wins).
    pub fn rank_for(&self, module: &str) -> Result<u64, MergeError> {
        for (key, r) in &self.rank_pattern {
            if pattern_matches(&self.path, key, module)? {
                return Ok(*r);
            }
        }
        Ok(self.r)
    }

    /// Alpha for a module (`alpha_pattern`, same matching as [`Self::rank_for`]).
    pub fn alpha_for(&self, module: &str) -> Result<f64, MergeError> {
        for (key, a) in &self.alpha_pattern {
            if pattern_matches(&self.path, key, module)? {
                return Ok(*a);
            }
        }
        Ok(self.lora_alpha)
    }

    /// PEFT's `scaling` for a module of rank `r`: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub fn scaling_for(&self, module: &str, r: u64) -> Result<f64, MergeError> {
        let alpha = self.alpha_for(module)?;
        Ok(if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        })
    }

    /// Whether PEFT would put a LoRA layer on `module` (path relative to the base model, e.g.
    /// `model.layers.0.self_attn.q_proj`). `output_layer` is the name of the output embedding
    /// (`lm_head`), which `all-linear` leaves out.
    pub fn targets(&self, module: &str, output_layer: &str) -> Result<bool, MergeError> {
        if let Some(ex) = &self.exclude_modules {
            let excluded = match ex {
                ModuleSelector::Regex(re) => full_match(&self.path, re, module)?,
                ModuleSelector::Names(names) => names
                    .iter()
                    .any(|n| module == n || module.ends_with(&format!(".{n}"))),
                ModuleSelector::AllLinear => false,
            };
            if excluded {
                return Ok(false);
            }
        }
        let Some(target) = &self.target_modules else {
            return Ok(false);
        };
        match target {
            ModuleSelector::Regex(re) => full_match(&self.path, re, module),
            ModuleSelector::AllLinear => {
                let last = module.rsplit('.').next().unwrap_or(module);
                Ok(last != output_layer)
            }
            ModuleSelector::Names(names) => {
                if names.iter().any(|n| n == module) {
                    return Ok(true);
                }
                let found = names.iter().any(|n| module.ends_with(&format!(".{n}")));
                if !found {
                    return Ok(false);
                }
                let Some(layers) = &self.layers_to_transform else {
                    return Ok(true);
                };
                if layers.is_empty() {
                    return Ok(true);
                }
                let index = match &self.layers_pattern {
                    Some(patterns) if !patterns.is_empty() => {
                        let mut found = None;
                        for p in patterns {
                            let re = compile(&self.path, &format!(r"^.*\.{p}\.(\d+)\."))?;
                            if let Some(c) = re.captures(module) {
                                found = c.get(1).map(|m| m.as_str().to_string());
                                break;
                            }
                        }
                        found
                    }
                    _ => compile(&self.path, r"^.*\.[^.]*\.(\d+)\.")?
                        .captures(module)
                        .and_then(|c| c.get(1).map(|m| m.as_str().to_string())),
                };
                Ok(match index.and_then(|i| i.parse::<u64>().ok()) {
                    Some(i) => layers.contains(&i),
                    None => false,
                })
            }
        }
    }
}

fn compile(path: &Path, re: &str) -> Result<Regex, MergeError> {
    Regex::new(re).map_err(|e| MergeError::AdapterConfig {
        path: path.to_path_buf(),
        reason: format!("pattern {re:?} is not a regex loraforge can evaluate: {e}"),
    })
}

fn full_match(path: &Path, re: &str, s: &str) -> Result<bool, MergeError> {
    Ok(compile(path, &format!("^(?:{re})$"))?.is_match(s))
}

fn pattern_matches(path: &Path, key: &str, module: &str) -> Result<bool, MergeError> {
    Ok(compile(path, &format!(r"^(.*\.)?({key})$"))?.is_match(module))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(json: &str) -> AdapterConfig {
        AdapterConfig::from_json(
            Path::new("adapter_config.json"),
            serde_json::from_str(json).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn layers_to_transform_with_pattern() {
        let c = cfg(
            r#"{"r":8,"lora_alpha":32,"target_modules":["q_proj"],"layers_to_transform":[0,2],"layers_pattern":"layers"}"#,
        );
        assert!(c
            .targets("model.layers.0.self_attn.q_proj", "lm_head")
            .unwrap());
        assert!(!c
            .targets("model.layers.1.self_attn.q_proj", "lm_head")
            .unwrap());
        assert!(c
            .targets("model.layers.2.self_attn.q_proj", "lm_head")
            .unwrap());
        assert!(!c
            .targets("model.layers.2.self_attn.k_proj", "lm_head")
            .unwrap());
    }

    #[test]
    fn regex_targets_and_excludes() {
        let c = cfg(
            r#"{"target_modules":".*\\.(q|v)_proj","exclude_modules":["layers.1.self_attn.q_proj"]}"#,
        );
        assert!(c
            .targets("model.layers.0.self_attn.q_proj", "lm_head")
            .unwrap());
        assert!(!c
            .targets("model.layers.1.self_attn.q_proj", "lm_head")
            .unwrap());
        assert!(!c
            .targets("model.layers.0.self_attn.k_proj", "lm_head")
            .unwrap());
        let all = cfg(r#"{"target_modules":"all-linear"}"#);
        assert!(all
            .targets("model.layers.0.mlp.up_proj", "lm_head")
            .unwrap());
        assert!(!all.targets("lm_head", "lm_head").unwrap());
    }

    #[test]
    fn refuses_base_rewriting_inits() {
        for init in ["pissa", "pissa_niter_4", "olora", "corda", "loftq"] {
            let c = cfg(&format!(r#"{{"init_lora_weights":"{init}"}}"#));
            assert!(matches!(
                c.check_mergeable(),
                Err(MergeError::BaseRewritingInit { .. })
            ));
        }
        assert!(cfg(r#"{"init_lora_weights":"gaussian"}"#)
            .check_mergeable()
            .is_ok());
    }
}
