//! What a card says about the base model, the adapter and the training run, read from the files a
//! fine-tuning run leaves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json::{read_optional, read_required, Fields, JsonFile};
use crate::CardError;

/// The base model, from its `config.json` and its safetensors headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseModelInfo {
    /// `architectures[0]`, e.g. `LlamaForCausalLM`.
    pub architecture: Option<String>,
    /// `model_type`, e.g. `llama`.
    pub model_type: Option<String>,
    /// `hidden_size` (`n_embd`, `d_model`).
    pub hidden_size: Option<u64>,
    /// `num_hidden_layers` (`n_layer`, `num_layers`).
    pub num_layers: Option<u64>,
    /// `num_attention_heads` (`n_head`).
    pub num_attention_heads: Option<u64>,
    /// `num_key_value_heads`, when the config states it.
    pub num_key_value_heads: Option<u64>,
    /// `intermediate_size` (`n_inner`).
    pub intermediate_size: Option<u64>,
    /// `vocab_size`.
    pub vocab_size: Option<u64>,
    /// `max_position_embeddings` (`n_positions`).
    pub max_position_embeddings: Option<u64>,
    /// `tie_word_embeddings`.
    pub tie_word_embeddings: Option<bool>,
    /// `dtype`, or the older `torch_dtype`.
    pub dtype: Option<String>,
    /// Elements over all tensors of the safetensors weights (`None` without safetensors weights).
    pub parameter_count: Option<u64>,
    /// The weight files, relative to the folder.
    pub weight_files: Vec<String>,
    /// `license` from the front matter of the folder's `README.md`, when there is one.
    pub license: Option<String>,
    /// `_name_or_path` from `config.json`: the Hub id or path the model was loaded from, when
    /// transformers recorded it.
    #[serde(default)]
    pub name_or_path: Option<String>,
}

/// Keys tried in order for each field: Transformers' names first, then GPT-2 style names.
const HIDDEN: &[&str] = &["hidden_size", "n_embd", "d_model"];
const LAYERS: &[&str] = &["num_hidden_layers", "n_layer", "num_layers"];
const HEADS: &[&str] = &["num_attention_heads", "n_head"];
const INTERMEDIATE: &[&str] = &["intermediate_size", "n_inner"];
const POSITIONS: &[&str] = &["max_position_embeddings", "n_positions"];

impl BaseModelInfo {
    /// Reads `dir/config.json` (required) and the headers of the safetensors weights
    /// (`model.safetensors.index.json` + shards, or `model.safetensors`; none is fine).
    ///
    /// Multimodal configs that keep the language model under `text_config` are read from there
    /// for fields missing at the top level.
    pub fn read(dir: &Path) -> Result<BaseModelInfo, CardError> {
        let file = read_required(&dir.join("config.json"))?;
        let top = Fields::of(&file);
        let text_config = top.object("text_config")?;
        let text = text_config.map(|obj| top.nested(obj, "text_config.".to_owned()));
        let layers: Vec<&Fields<'_>> = std::iter::once(&top).chain(text.as_ref()).collect();
        let pick_u64 = |keys: &[&str]| first_of(&layers, keys, Fields::u64);
        let pick_str = |keys: &[&str]| first_of(&layers, keys, Fields::string);
        let architecture = top.strings("architectures")?.into_iter().next();
        let (parameter_count, weight_files) = read_weights(dir)?;
        Ok(BaseModelInfo {
            architecture,
            model_type: top.string("model_type")?,
            hidden_size: pick_u64(HIDDEN)?,
            num_layers: pick_u64(LAYERS)?,
            num_attention_heads: pick_u64(HEADS)?,
            num_key_value_heads: pick_u64(&["num_key_value_heads"])?,
            intermediate_size: pick_u64(INTERMEDIATE)?,
            vocab_size: pick_u64(&["vocab_size"])?,
            max_position_embeddings: pick_u64(POSITIONS)?,
            tie_word_embeddings: top.bool("tie_word_embeddings")?,
            dtype: pick_str(&["dtype", "torch_dtype"])?,
            parameter_count,
            weight_files,
            license: read_readme_license(&dir.join("README.md"))?,
            name_or_path: top.string("_name_or_path")?,
        })
    }
}

/// The first value found under any of `keys`, trying each of `layers` in turn.
fn first_of<'a, T>(
    layers: &[&Fields<'a>],
    keys: &[&str],
    get: impl Fn(&Fields<'a>, &str) -> Result<Option<T>, CardError>,
) -> Result<Option<T>, CardError> {
    for fields in layers {
        for key in keys {
            if let Some(v) = get(fields, key)? {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

fn read_weights(dir: &Path) -> Result<(Option<u64>, Vec<String>), CardError> {
    use loraforge_hf_model::{HfModel, HfModelError};
    match HfModel::open(dir) {
        Ok(model) => {
            let files = model
                .weight_files()
                .iter()
                .map(|p| {
                    p.strip_prefix(dir)
                        .unwrap_or(p)
                        .to_string_lossy()
                        .replace('\\', "/")
                })
                .collect();
            Ok((Some(model.parameter_count()), files))
        }
        Err(HfModelError::NoWeights { .. }) => Ok((None, Vec::new())),
        Err(source) => Err(CardError::Weights {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// The `license:` value of a Hugging Face README's YAML front matter, if any.
fn read_readme_license(path: &Path) -> Result<Option<String>, CardError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A README that is not UTF-8 is not a model card; ignore it like a missing one.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(None),
        Err(source) => {
            return Err(CardError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Ok(None);
    }
    for line in lines {
        if line.trim_end() == "---" {
            break;
        }
        if let Some(value) = line.strip_prefix("license:") {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'').trim();
            if !value.is_empty() {
                return Ok(Some(value.to_owned()));
            }
        }
    }
    Ok(None)
}

/// `target_modules` of a PEFT config: a list of module names, or one string (a regex, or
/// `all-linear`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module name suffixes.
    List(Vec<String>),
    /// A regex over full module names, or `all-linear`.
    Pattern(String),
}

/// The adapter, from its `adapter_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// `peft_type`, e.g. `LORA`.
    pub peft_type: Option<String>,
    /// `task_type`, e.g. `CAUSAL_LM`.
    pub task_type: Option<String>,
    /// `r`, the default rank.
    pub r: Option<u64>,
    /// `lora_alpha`, the default alpha.
    pub lora_alpha: Option<f64>,
    /// The default scaling: `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub scaling: Option<f64>,
    /// `use_rslora`.
    pub use_rslora: bool,
    /// `use_dora`.
    pub use_dora: bool,
    /// `target_modules`.
    pub target_modules: Option<TargetModules>,
    /// `rank_pattern`: module regex → rank.
    pub rank_pattern: BTreeMap<String, u64>,
    /// `alpha_pattern`: module regex → alpha.
    pub alpha_pattern: BTreeMap<String, f64>,
    /// `lora_dropout`.
    pub lora_dropout: Option<f64>,
    /// `modules_to_save` (fully trained modules stored with the adapter).
    pub modules_to_save: Vec<String>,
    /// `layers_to_transform` (empty: all layers).
    pub layers_to_transform: Vec<u64>,
    /// `fan_in_fan_out` (GPT-2 `Conv1D` weights).
    pub fan_in_fan_out: bool,
    /// `base_model_name_or_path` as the trainer recorded it.
    pub base_model_name_or_path: Option<String>,
    /// `peft_version`.
    pub peft_version: Option<String>,
}

impl AdapterInfo {
    /// Reads `dir/adapter_config.json` (required).
    pub fn read(dir: &Path) -> Result<AdapterInfo, CardError> {
        let file = read_required(&dir.join("adapter_config.json"))?;
        let f = Fields::of(&file);
        let r = f.u64("r")?;
        let lora_alpha = f.f64("lora_alpha")?;
        let use_rslora = f.bool("use_rslora")?.unwrap_or(false);
        let scaling = match (r, lora_alpha) {
            (Some(r), Some(alpha)) if r > 0 => Some(if use_rslora {
                alpha / (r as f64).sqrt()
            } else {
                alpha / r as f64
            }),
            _ => None,
        };
        let target_modules = match f.get("target_modules") {
            None => None,
            Some(Value::String(s)) => Some(TargetModules::Pattern(s.clone())),
            Some(Value::Array(_)) => Some(TargetModules::List(f.strings("target_modules")?)),
            Some(v) => {
                return Err(f.bad("target_modules", "a list of strings or a string", v));
            }
        };
        let mut rank_pattern = BTreeMap::new();
        if let Some(obj) = f.object("rank_pattern")? {
            let inner = f.nested(obj, "rank_pattern.".to_owned());
            for key in obj.keys() {
                if let Some(v) = inner.u64(key)? {
                    rank_pattern.insert(key.clone(), v);
                }
            }
        }
        let mut alpha_pattern = BTreeMap::new();
        if let Some(obj) = f.object("alpha_pattern")? {
            let inner = f.nested(obj, "alpha_pattern.".to_owned());
            for key in obj.keys() {
                if let Some(v) = inner.f64(key)? {
                    alpha_pattern.insert(key.clone(), v);
                }
            }
        }
        let layers_to_transform = match f.get("layers_to_transform") {
            None => Vec::new(),
            Some(v) if v.is_u64() => vec![f.u64("layers_to_transform")?.unwrap_or(0)],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .ok_or_else(|| f.bad("layers_to_transform", "layer indices", v))
                })
                .collect::<Result<_, _>>()?,
            Some(v) => return Err(f.bad("layers_to_transform", "layer indices", v)),
        };
        Ok(AdapterInfo {
            peft_type: f.string("peft_type")?,
            task_type: f.string("task_type")?,
            r,
            lora_alpha,
            scaling,
            use_rslora,
            use_dora: f.bool("use_dora")?.unwrap_or(false),
            target_modules,
            rank_pattern,
            alpha_pattern,
            lora_dropout: f.f64("lora_dropout")?,
            modules_to_save: f.strings("modules_to_save")?,
            layers_to_transform,
            fan_in_fan_out: f.bool("fan_in_fan_out")?.unwrap_or(false),
            base_model_name_or_path: f.string("base_model_name_or_path")?,
            peft_version: f.string("peft_version")?,
        })
    }
}

/// The useful part of Transformers' `training_args.json` (`TrainingArguments.to_json_string()`),
/// plus the whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingArgs {
    /// `learning_rate`.
    pub learning_rate: Option<f64>,
    /// `num_train_epochs` (ignored by the trainer when `max_steps` > 0).
    pub num_train_epochs: Option<f64>,
    /// `max_steps` (-1: train for `num_train_epochs`).
    pub max_steps: Option<i64>,
    /// `per_device_train_batch_size`.
    pub per_device_train_batch_size: Option<u64>,
    /// `gradient_accumulation_steps`.
    pub gradient_accumulation_steps: Option<u64>,
    /// `lr_scheduler_type`.
    pub lr_scheduler_type: Option<String>,
    /// `warmup_steps`.
    pub warmup_steps: Option<f64>,
    /// `warmup_ratio` (older Transformers).
    pub warmup_ratio: Option<f64>,
    /// `weight_decay`.
    pub weight_decay: Option<f64>,
    /// `optim`.
    pub optim: Option<String>,
    /// `max_grad_norm`.
    pub max_grad_norm: Option<f64>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `bf16` mixed precision.
    pub bf16: Option<bool>,
    /// `fp16` mixed precision.
    pub fp16: Option<bool>,
    /// `eval_strategy` (`evaluation_strategy` in older Transformers).
    pub eval_strategy: Option<String>,
    /// `save_steps`.
    pub save_steps: Option<f64>,
    /// The whole file, except keys ending in `token` (`hub_token` and the like are secrets).
    pub raw: Map<String, Value>,
}

impl TrainingArgs {
    /// Reads `dir/training_args.json`; `Ok(None)` when there is none (`training_args.bin` is a
    /// pickle and is never read).
    pub fn read(dir: &Path) -> Result<Option<TrainingArgs>, CardError> {
        let Some(file) = read_optional(&dir.join("training_args.json"), true)? else {
            return Ok(None);
        };
        let f = Fields::of(&file);
        let eval_strategy = match f.string("eval_strategy")? {
            Some(s) => Some(s),
            None => f.string("evaluation_strategy")?,
        };
        let raw = file
            .obj
            .iter()
            .filter(|(k, _)| !k.to_ascii_lowercase().ends_with("token"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Some(TrainingArgs {
            learning_rate: f.f64("learning_rate")?,
            num_train_epochs: f.f64("num_train_epochs")?,
            max_steps: f.i64("max_steps")?,
            per_device_train_batch_size: f.u64("per_device_train_batch_size")?,
            gradient_accumulation_steps: f.u64("gradient_accumulation_steps")?,
            lr_scheduler_type: f.string("lr_scheduler_type")?,
            warmup_steps: f.f64("warmup_steps")?,
            warmup_ratio: f.f64("warmup_ratio")?,
            weight_decay: f.f64("weight_decay")?,
            optim: f.string("optim")?,
            max_grad_norm: f.f64("max_grad_norm")?,
            seed: f.u64("seed")?,
            bf16: f.bool("bf16")?,
            fp16: f.bool("fp16")?,
            eval_strategy,
            save_steps: f.f64("save_steps")?,
            raw,
        }))
    }
}

/// A value logged at a training step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepValue {
    /// `step`.
    pub step: u64,
    /// `epoch` at that step.
    pub epoch: Option<f64>,
    /// The value.
    pub value: f64,
}

/// The saved checkpoint with the lowest `eval_loss` at its step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointEval {
    /// The checkpoint folder name, `checkpoint-N`.
    pub checkpoint: String,
    /// `N`.
    pub step: u64,
    /// `eval_loss` logged at step `N`.
    pub eval_loss: f64,
}

/// The evaluation summary, from `trainer_state.json`'s counters and `log_history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationSummary {
    /// `global_step`: optimizer steps done.
    pub global_step: Option<u64>,
    /// `max_steps`.
    pub max_steps: Option<u64>,
    /// `epoch`: epochs done (fractional).
    pub epoch: Option<f64>,
    /// The last logged training `loss`.
    pub final_loss: Option<StepValue>,
    /// `train_loss` of the end-of-training entry (the mean over the run).
    pub train_loss: Option<f64>,
    /// The last logged `eval_loss`.
    pub final_eval_loss: Option<StepValue>,
    /// The lowest logged `eval_loss` (the earliest, on ties).
    pub best_eval_loss: Option<StepValue>,
    /// `best_metric` as the trainer recorded it (needs `metric_for_best_model`).
    pub best_metric: Option<f64>,
    /// `best_model_checkpoint` as the trainer recorded it.
    pub best_model_checkpoint: Option<String>,
    /// Among the `checkpoint-N` folders next to this state (up to `global_step`), the one with
    /// the lowest `eval_loss` logged at step `N`; computed even when the trainer did not track
    /// a best model.
    pub best_checkpoint_by_eval_loss: Option<CheckpointEval>,
    /// Every `eval_loss`, one per step (the last entry of a step wins).
    pub eval_history: Vec<StepValue>,
}

impl EvaluationSummary {
    /// Reads `dir/trainer_state.json`; `Ok(None)` when there is none.
    ///
    /// Checkpoints for [`best_checkpoint_by_eval_loss`](Self::best_checkpoint_by_eval_loss) are
    /// looked for in `dir`, and in its parent when `dir` is itself a `checkpoint-N` folder.
    pub fn read(dir: &Path) -> Result<Option<EvaluationSummary>, CardError> {
        let Some(file) = read_optional(&dir.join("trainer_state.json"), true)? else {
            return Ok(None);
        };
        let mut summary = summarize(&file)?;
        let limit = summary.global_step.unwrap_or(u64::MAX);
        let checkpoints = checkpoint_steps(dir)?;
        summary.best_checkpoint_by_eval_loss = checkpoints
            .into_iter()
            .filter(|(step, _)| *step <= limit)
            .filter_map(|(step, name)| {
                let eval = summary.eval_history.iter().find(|e| e.step == step)?;
                Some(CheckpointEval {
                    checkpoint: name,
                    step,
                    eval_loss: eval.value,
                })
            })
            .fold(None, |best: Option<CheckpointEval>, c| match best {
                Some(b) if b.eval_loss <= c.eval_loss => Some(b),
                _ => Some(c),
            });
        Ok(Some(summary))
    }
}

fn summarize(file: &JsonFile) -> Result<EvaluationSummary, CardError> {
    let f = Fields::of(file);
    let mut final_loss = None;
    let mut train_loss = None;
    let mut eval_history: Vec<StepValue> = Vec::new();
    for (i, entry) in f.array("log_history")?.iter().enumerate() {
        let Value::Object(obj) = entry else {
            return Err(f.bad(&format!("log_history[{i}]"), "an object", entry));
        };
        let e = f.nested(obj, format!("log_history[{i}]."));
        let Some(step) = e.u64("step")? else {
            continue;
        };
        let epoch = e.f64("epoch")?;
        if let Some(loss) = e.f64("loss")? {
            final_loss = Some(StepValue {
                step,
                epoch,
                value: loss,
            });
        }
        if let Some(loss) = e.f64("train_loss")? {
            train_loss = Some(loss);
        }
        if let Some(loss) = e.f64("eval_loss")? {
            let point = StepValue {
                step,
                epoch,
                value: loss,
            };
            match eval_history.iter_mut().find(|p| p.step == step) {
                Some(existing) => *existing = point,
                None => eval_history.push(point),
            }
        }
    }
    let final_eval_loss = eval_history.last().copied();
    let best_eval_loss = eval_history
        .iter()
        .copied()
        .fold(None, |best: Option<StepValue>, p| match best {
            Some(b) if b.value <= p.value => Some(b),
            _ => Some(p),
        });
    Ok(EvaluationSummary {
        global_step: f.u64("global_step")?,
        max_steps: f.u64("max_steps")?,
        epoch: f.f64("epoch")?,
        final_loss,
        train_loss,
        final_eval_loss,
        best_eval_loss,
        best_metric: f.f64("best_metric")?,
        best_model_checkpoint: f.string("best_model_checkpoint")?,
        best_checkpoint_by_eval_loss: None,
        eval_history,
    })
}

/// The step of a `checkpoint-N` folder name.
fn checkpoint_step(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A `checkpoint-N` subfolder of a trainer output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `N`, the global step it was saved at.
    pub step: u64,
    /// The folder.
    pub dir: PathBuf,
}

/// The `checkpoint-N` subfolders of a trainer output folder, sorted by step (empty when none).
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("lf-ckpt-doc-{}", std::process::id()));
/// # for n in ["checkpoint-200", "checkpoint-50", "checkpoint-x", "runs"] {
/// #     std::fs::create_dir_all(dir.join(n)).unwrap();
/// # }
/// let steps: Vec<u64> = loraforge_model_card::find_checkpoints(&dir)?
///     .iter().map(|c| c.step).collect();
/// assert_eq!(steps, [50, 200]);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), loraforge_model_card::CardError>(())
/// ```
pub fn find_checkpoints(dir: &Path) -> Result<Vec<Checkpoint>, CardError> {
    let mut found = Vec::new();
    for entry in read_dir(dir)? {
        let name = entry.file_name();
        let Some(step) = name.to_str().and_then(checkpoint_step) else {
            continue;
        };
        let path = entry.path();
        if path.is_dir() {
            found.push(Checkpoint { step, dir: path });
        }
    }
    found.sort_by(|a, b| a.step.cmp(&b.step).then_with(|| a.dir.cmp(&b.dir)));
    Ok(found)
}

/// The trainer output folder around `dir` when `dir` is itself a `checkpoint-N` folder.
fn checkpoint_parent(dir: &Path) -> Option<&Path> {
    checkpoint_step(dir.file_name()?.to_str()?)?;
    dir.parent()
}

/// `checkpoint-N` folders in `dir` (or in its parent when `dir` is one), sorted by step.
fn checkpoint_steps(dir: &Path) -> Result<Vec<(u64, String)>, CardError> {
    Ok(find_checkpoints(checkpoint_parent(dir).unwrap_or(dir))?
        .into_iter()
        .map(|c| {
            let name = c
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (c.step, name)
        })
        .collect())
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, CardError> {
    let io = |source| CardError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)
}

/// When training ran, and which file says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingDate {
    /// The day (UTC).
    pub date: NaiveDate,
    /// The time (UTC) the evidence records.
    pub time: DateTime<Utc>,
    /// The file the date comes from, relative to the trainer folder.
    pub source: String,
}

impl TrainingDate {
    /// Finds the training date recorded by trainer files in `dir` (or its parent, when `dir`
    /// is a `checkpoint-N` folder), `Ok(None)` when nothing records one.
    ///
    /// Transformers' `trainer_state.json`, `training_args.json` and `*_results.json` record no
    /// date, and file modification times change with every copy, so neither is used. The
    /// evidence used is TensorBoard's event files, which Transformers writes under
    /// `runs/<run>/` when TensorBoard reporting is on: they are named
    /// `events.out.tfevents.<unix seconds>.<host>…` after the moment logging began. The
    /// earliest such file gives the date. (`logging_dir`'s default `runs/Nov23_13-03-12_host`
    /// has no year, so it is not used either.)
    pub fn find(dir: &Path) -> Result<Option<TrainingDate>, CardError> {
        let mut best: Option<(i64, String)> = None;
        for root in std::iter::once(dir).chain(checkpoint_parent(dir)) {
            let runs = root.join("runs");
            if !runs.is_dir() {
                continue;
            }
            for run in read_dir(&runs)? {
                if !run.path().is_dir() {
                    continue;
                }
                for event in read_dir(&run.path())? {
                    let name = event.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let Some(secs) = tfevents_seconds(name) else {
                        continue;
                    };
                    if best.as_ref().is_none_or(|(b, _)| secs < *b) {
                        let run_name = run.file_name().to_string_lossy().into_owned();
                        best = Some((secs, format!("runs/{run_name}/{name}")));
                    }
                }
            }
        }
        Ok(best.and_then(|(secs, source)| {
            let time = DateTime::<Utc>::from_timestamp(secs, 0)?;
            Some(TrainingDate {
                date: time.date_naive(),
                time,
                source,
            })
        }))
    }
}

/// The Unix seconds in a TensorBoard event file name.
fn tfevents_seconds(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("events.out.tfevents.")?;
    let digits = rest.split('.').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names() {
        assert_eq!(checkpoint_step("checkpoint-100"), Some(100));
        assert_eq!(checkpoint_step("checkpoint-"), None);
        assert_eq!(checkpoint_step("checkpoint-1a"), None);
        assert_eq!(checkpoint_step("ckpt-1"), None);
    }

    #[test]
    fn tfevents_names() {
        assert_eq!(
            tfevents_seconds("events.out.tfevents.1700000000.host.1234.0"),
            Some(1_700_000_000)
        );
        assert_eq!(tfevents_seconds("events.out.tfevents.x.host"), None);
        assert_eq!(tfevents_seconds("other"), None);
    }
}
