//! Resolving an adapter against a base: which base tensor each adapter tensor updates, how, and
//! every consistency check that must pass before anything is written.

use std::collections::{BTreeMap, HashMap};

use loraforge_hf_model::{HfModel, SafetensorsFile, TensorView};

use crate::config::{AdapterConfig, ModuleSelector};
use crate::update::Layout;
use crate::MergeError;

/// Prefix PEFT puts on every adapter key.
pub(crate) const KEY_PREFIX: &str = "base_model.model.";

/// A LoRA update of one base tensor.
#[derive(Debug, Clone)]
pub(crate) struct LoraPlan {
    pub a_key: String,
    pub b_key: String,
    pub rank: usize,
    pub scaling: f32,
    pub layout: Layout,
    pub embedding: bool,
    pub magnitude_key: Option<String>,
}

/// Where a tensor's starting value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The base model's tensor of the same name.
    Base,
    /// A full replacement stored in the adapter (`modules_to_save`, saved biases, saved
    /// embedding layers).
    Adapter(String),
}

/// What happens to one output tensor.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub source: Source,
    pub lora: Option<LoraPlan>,
    /// `lora_B.bias` key and the scaling to add it with.
    pub bias_add: Option<(String, f32)>,
}

impl Job {
    pub fn is_copy(&self) -> bool {
        self.source == Source::Base && self.lora.is_none() && self.bias_add.is_none()
    }
}

/// The resolved merge.
#[derive(Debug)]
pub(crate) struct Plan {
    pub jobs: HashMap<String, Job>,
    /// LoRA modules present in the adapter file that the config does not target (PEFT ignores
    /// them when loading).
    pub ignored_modules: Vec<String>,
}

#[derive(Default)]
struct ModuleKeys {
    a: Option<String>,
    b: Option<String>,
    b_bias: Option<String>,
    magnitude: Option<String>,
    emb_a: Option<String>,
    emb_b: Option<String>,
}

fn shape_of(v: &TensorView<'_>) -> Vec<usize> {
    v.shape.to_vec()
}

/// Finds the tensor that holds a tied output layer's weights.
fn tied_embedding(base: &HfModel) -> Option<String> {
    let tied = base
        .config()
        .get("tie_word_embeddings")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    if !tied {
        return None;
    }
    base.tensor_names()
        .into_iter()
        .find(|n| {
            n.ends_with("embed_tokens.weight")
                || n.ends_with("wte.weight")
                || n.ends_with("word_embeddings.weight")
        })
        .map(str::to_string)
}

/// Builds and validates the plan.
pub(crate) fn build_plan(
    base: &HfModel,
    adapter: &SafetensorsFile,
    config: &AdapterConfig,
) -> Result<Plan, MergeError> {
    let adapter_path = adapter.header().path.clone();
    let tied = tied_embedding(base);
    check_something_targeted(base, config, tied.is_some())?;
    let mut modules: BTreeMap<String, ModuleKeys> = BTreeMap::new();
    let mut replacements: Vec<(String, String)> = Vec::new(); // (base tensor, adapter key)
    let mut unmatched: Vec<String> = Vec::new();
    for key in adapter.tensor_names() {
        let Some(path) = key.strip_prefix(KEY_PREFIX) else {
            unmatched.push(key.to_string());
            continue;
        };
        let suffixes: [(&str, u8); 9] = [
            (".lora_A.weight", 0),
            (".lora_B.weight", 1),
            (".lora_B.bias", 2),
            (".lora_magnitude_vector.weight", 3),
            (".lora_magnitude_vector", 3),
            (".lora_embedding_A", 4),
            (".lora_embedding_B", 5),
            (".base_layer.weight", 6),
            (".base_layer.bias", 7),
        ];
        let mut handled = false;
        for (suffix, kind) in suffixes {
            if let Some(module) = path.strip_suffix(suffix) {
                let entry = modules.entry(module.to_string()).or_default();
                let k = Some(key.to_string());
                match kind {
                    0 => entry.a = k,
                    1 => entry.b = k,
                    2 => entry.b_bias = k,
                    3 => entry.magnitude = k,
                    4 => entry.emb_a = k,
                    5 => entry.emb_b = k,
                    6 => replacements.push((format!("{module}.weight"), key.to_string())),
                    _ => replacements.push((format!("{module}.bias"), key.to_string())),
                }
                handled = true;
                break;
            }
        }
        if !handled {
            // modules_to_save copies and `bias="all"` biases are stored under the plain name.
            let plain = path.replace(".modules_to_save.", ".");
            replacements.push((plain, key.to_string()));
        }
    }

    let mut jobs: HashMap<String, Job> = base
        .tensor_names()
        .into_iter()
        .map(|n| {
            (
                n.to_string(),
                Job {
                    source: Source::Base,
                    lora: None,
                    bias_add: None,
                },
            )
        })
        .collect();

    for (tensor, key) in &replacements {
        match jobs.get_mut(tensor) {
            Some(job) => {
                let b = base.tensor(tensor)?;
                let a = adapter.tensor(key)?;
                if a.shape != b.shape {
                    return Err(MergeError::ReplacementShape {
                        key: key.clone(),
                        tensor: tensor.clone(),
                        adapter_shape: shape_of(&a),
                        base_shape: shape_of(&b),
                        adapter_base: config.base_model_name_or_path.clone(),
                    });
                }
                job.source = Source::Adapter(key.clone());
            }
            None => unmatched.push(key.clone()),
        }
    }

    let mut ignored_modules = Vec::new();
    for (module, keys) in &modules {
        let is_embedding = keys.emb_a.is_some() || keys.emb_b.is_some();
        let (a_key, b_key) = if is_embedding {
            (keys.emb_a.clone(), keys.emb_b.clone())
        } else {
            (keys.a.clone(), keys.b.clone())
        };
        let has_lora = a_key.is_some() || b_key.is_some();
        if !has_lora {
            if keys.magnitude.is_some() || keys.b_bias.is_some() {
                return Err(MergeError::IncompleteModule {
                    module: module.clone(),
                    missing: "lora_A/lora_B".into(),
                });
            }
            continue;
        }
        let (Some(a_key), Some(b_key)) = (a_key, b_key) else {
            return Err(MergeError::IncompleteModule {
                module: module.clone(),
                missing: if keys.a.is_none() && keys.emb_a.is_none() {
                    "lora_A".into()
                } else {
                    "lora_B".into()
                },
            });
        };
        if !config.targets(module, "lm_head")? {
            ignored_modules.push(module.clone());
            continue;
        }
        let mut tensor = format!("{module}.weight");
        if !jobs.contains_key(&tensor) {
            match (&tied, module.rsplit('.').next()) {
                (Some(emb), Some("lm_head")) => tensor = emb.clone(),
                _ => {
                    unmatched.push(a_key.clone());
                    unmatched.push(b_key.clone());
                    continue;
                }
            }
        }
        let a = adapter.tensor(&a_key)?;
        let b = adapter.tensor(&b_key)?;
        let w = base.tensor(&tensor)?;
        // `a_shape` is A's shape, or the magnitude vector's when that one does not fit.
        let lora_shape = |a_shape: &TensorView<'_>| MergeError::LoraShape {
            tensor: tensor.clone(),
            weight_shape: shape_of(&w),
            a_shape: shape_of(a_shape),
            b_shape: shape_of(&b),
            adapter_base: config.base_model_name_or_path.clone(),
        };
        if a.shape.len() != 2 || b.shape.len() != 2 || w.shape.len() != 2 {
            return Err(lora_shape(&a));
        }
        let rank = a.shape[0];
        if b.shape[1] != rank {
            return Err(MergeError::RankMismatch {
                module: module.clone(),
                a_shape: shape_of(&a),
                b_shape: shape_of(&b),
            });
        }
        let config_rank = config.rank_for(module)?;
        if config_rank != rank as u64 {
            return Err(MergeError::ConfigRankMismatch {
                module: module.clone(),
                config_rank,
                tensor_rank: rank,
            });
        }
        let transposed = is_embedding || config.fan_in_fan_out;
        let (rows, cols) = (w.shape[0], w.shape[1]);
        let fits = if transposed {
            a.shape[1] == rows && b.shape[0] == cols
        } else {
            a.shape[1] == cols && b.shape[0] == rows
        };
        if !fits {
            return Err(lora_shape(&a));
        }
        let magnitude_key = match &keys.magnitude {
            None if config.use_dora => {
                return Err(MergeError::DoraWithoutMagnitude {
                    module: module.clone(),
                })
            }
            None => None,
            Some(k) => {
                if transposed {
                    return Err(MergeError::Unsupported {
                        what: format!("DoRA on {module} (fan_in_fan_out or embedding layer)"),
                    });
                }
                let m = adapter.tensor(k)?;
                if m.shape != [rows] {
                    return Err(lora_shape(&m));
                }
                Some(k.clone())
            }
        };
        let scaling = config.scaling_for(module, rank as u64)? as f32;
        let Some(job) = jobs.get_mut(&tensor) else {
            continue;
        };
        if job.lora.is_some() {
            return Err(MergeError::DoubleUpdate {
                tensor: tensor.clone(),
            });
        }
        job.lora = Some(LoraPlan {
            a_key,
            b_key,
            rank,
            scaling,
            layout: if transposed {
                Layout::Transposed
            } else {
                Layout::Normal
            },
            embedding: is_embedding,
            magnitude_key,
        });
        if let Some(bias_key) = &keys.b_bias {
            let bias_tensor = format!("{module}.bias");
            let Some(bjob) = jobs.get_mut(&bias_tensor) else {
                return Err(MergeError::LoraBiasWithoutBase {
                    module: module.clone(),
                });
            };
            let bb = adapter.tensor(bias_key)?;
            let base_bias = base.tensor(&bias_tensor)?;
            if bb.shape != base_bias.shape {
                return Err(MergeError::ReplacementShape {
                    key: bias_key.clone(),
                    tensor: bias_tensor,
                    adapter_shape: shape_of(&bb),
                    base_shape: shape_of(&base_bias),
                    adapter_base: config.base_model_name_or_path.clone(),
                });
            }
            bjob.bias_add = Some((bias_key.clone(), scaling));
        }
    }
    if !unmatched.is_empty() {
        unmatched.sort();
        unmatched.dedup();
        return Err(MergeError::UnmatchedAdapterTensors {
            adapter: adapter_path,
            base: base.dir().to_path_buf(),
            keys: unmatched,
            adapter_base: config.base_model_name_or_path.clone(),
        });
    }
    if jobs.values().all(Job::is_copy) {
        if !ignored_modules.is_empty() {
            return Err(MergeError::AllModulesIgnored {
                adapter: adapter_path,
                modules: ignored_modules,
            });
        }
        return Err(MergeError::NothingToMerge {
            adapter: adapter_path,
            base: base.dir().to_path_buf(),
        });
    }
    Ok(Plan {
        jobs,
        ignored_modules,
    })
}

/// PEFT's `inject_adapter` refuses a config whose targets match no module of the model; the
/// modules here are the base's weight-bearing ones (plus `lm_head` when tied to the embedding).
fn check_something_targeted(
    base: &HfModel,
    config: &AdapterConfig,
    tied: bool,
) -> Result<(), MergeError> {
    let mut modules: Vec<&str> = base
        .tensor_names()
        .into_iter()
        .filter_map(|n| n.rsplit_once('.').map(|(module, _)| module))
        .collect();
    if tied {
        modules.push("lm_head");
    }
    for module in modules {
        if config.targets(module, "lm_head")? {
            return Ok(());
        }
    }
    Err(MergeError::NoModuleTargeted {
        path: config.path.clone(),
        base: base.dir().to_path_buf(),
        targets: match &config.target_modules {
            None => "(none)".into(),
            Some(ModuleSelector::Names(names)) => format!("{names:?}"),
            Some(ModuleSelector::Regex(re)) => format!("{re:?}"),
            Some(ModuleSelector::AllLinear) => "\"all-linear\"".into(),
        },
    })
}
