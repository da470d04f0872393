//! `loraforge-model-card`: model cards gathered from the files a fine-tuning run leaves, with the
//! model's lineage, rendered as versioned JSON and as a Hugging Face style `README.md`.
//!
//! Principal types:
//! - [`ModelCard`]: built by [`ModelCard::for_base`] / [`ModelCard::for_training`] /
//!   [`ModelCard::gather`] from a base model folder (`config.json`, safetensors headers, README
//!   license), an adapter folder (`adapter_config.json`) and the trainer files next to it
//!   (`training_args.json`, `trainer_state.json`, TensorBoard event files for the date);
//! - [`LineageStep`]: one stage of base → trained → saved → deployed, with full UUID, UTC date,
//!   what the step did, dtype, quantization, [`FileChecksum`]s and [`ToolInfo`];
//!   [`ModelCard::push_step`] checks each step's name against the naming rules and its parent;
//! - rendering: [`ModelCard::to_json`] / [`ModelCard::from_json`] (schema [`SCHEMA`]) and
//!   [`ModelCard::to_readme`].
//!
//! Missing optional files are fine (the fields stay empty); malformed ones give a
//! [`CardError`] that names the file and field.
//!
//! ```
//! use loraforge_model_card::{LineageStep, ModelCard, Stage};
//! use uuid::Uuid;
//!
//! let dir = std::env::temp_dir().join(format!("lf-card-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("config.json"),
//!     r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64}"#).unwrap();
//!
//! let mut card = ModelCard::for_base(&dir)?;
//! assert_eq!(card.base.hidden_size, Some(64));
//! card.push_step(LineageStep::new(Stage::Base, "tiny-llama", Uuid::new_v4(), "registered"))?;
//! let json = card.to_json()?;
//! assert!(json.starts_with("{\n  \"schema\": \"loraforge.model-card/1\""));
//! assert_eq!(ModelCard::from_json(&json)?, card);
//! assert!(card.to_readme().contains("# tiny-llama"));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok::<(), loraforge_model_card::CardError>(())
//! ```
#![deny(missing_docs)]

mod error;
mod hub;
mod json;
mod lineage;
mod render;
mod sources;
mod trainer;

use std::path::Path;

use loraforge_naming::{DeployedName, SavedName, TechnicalName, TrainedName, UuidPrefix};
use serde::{Deserialize, Serialize};

pub use error::CardError;
pub use hub::{BaseModelRelation, HubReadme};
pub use lineage::{
    checksum_dir, checksum_files, sha256_file, FileChecksum, LineageStep, Stage, ToolInfo,
};
pub use sources::{
    find_checkpoints, AdapterInfo, BaseModelInfo, Checkpoint, CheckpointEval, EvaluationSummary,
    StepValue, TargetModules, TrainingArgs, TrainingDate,
};
pub use trainer::TrainerFolder;

/// The schema identifier written into every card; bumped when the JSON shape changes.
pub const SCHEMA: &str = "loraforge.model-card/1";
/// The card's file name in an entry's folder.
pub const CARD_FILE: &str = "card.json";
/// The rendered README's file name.
pub const README_FILE: &str = "README.md";

/// Where [`ModelCard::gather`] reads from.
#[derive(Debug, Clone, Copy)]
pub struct CardSources<'a> {
    /// The base model folder (`config.json` required).
    pub base_dir: &'a Path,
    /// The adapter folder (`adapter_config.json` required when given).
    pub adapter_dir: Option<&'a Path>,
    /// Where `training_args.json`, `trainer_state.json` and `runs/` are looked for; defaults to
    /// `adapter_dir`. For a trainer output folder with `checkpoint-N/` subfolders, pass the
    /// chosen checkpoint (its own `trainer_state.json` describes the run up to that step).
    pub trainer_dir: Option<&'a Path>,
}

/// Everything loraforge knows about a model. Field order is the JSON order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The license, when known (the base README's front matter, or set by the caller).
    pub license: Option<String>,
    /// The user's train name, in full (a trained name may carry a shortened copy).
    pub train_name: Option<String>,
    /// The base model.
    pub base: BaseModelInfo,
    /// The adapter, for trained models and everything made from them.
    pub adapter: Option<AdapterInfo>,
    /// The training arguments, when `training_args.json` was there.
    pub training_args: Option<TrainingArgs>,
    /// The evaluation summary, when `trainer_state.json` was there.
    pub evaluation: Option<EvaluationSummary>,
    /// When training ran, when a trainer file records it (see [`TrainingDate::find`]).
    pub training_date: Option<TrainingDate>,
    /// Base → trained → saved → deployed, oldest first.
    pub lineage: Vec<LineageStep>,
}

impl ModelCard {
    /// A card for a base model folder.
    pub fn for_base(base_dir: &Path) -> Result<ModelCard, CardError> {
        ModelCard::gather(&CardSources {
            base_dir,
            adapter_dir: None,
            trainer_dir: None,
        })
    }

    /// A card for an adapter trained on a base, with trainer files looked for in `adapter_dir`.
    pub fn for_training(base_dir: &Path, adapter_dir: &Path) -> Result<ModelCard, CardError> {
        ModelCard::gather(&CardSources {
            base_dir,
            adapter_dir: Some(adapter_dir),
            trainer_dir: None,
        })
    }

    /// Reads every source; the lineage starts empty.
    pub fn gather(sources: &CardSources<'_>) -> Result<ModelCard, CardError> {
        let base = BaseModelInfo::read(sources.base_dir)?;
        let adapter = sources.adapter_dir.map(AdapterInfo::read).transpose()?;
        let trainer_dir = sources.trainer_dir.or(sources.adapter_dir);
        let (training_args, evaluation, training_date) = match trainer_dir {
            Some(dir) => (
                TrainingArgs::read(dir)?,
                EvaluationSummary::read(dir)?,
                TrainingDate::find(dir)?,
            ),
            None => (None, None, None),
        };
        Ok(ModelCard {
            schema: SCHEMA.to_owned(),
            license: base.license.clone(),
            train_name: None,
            base,
            adapter,
            training_args,
            evaluation,
            training_date,
            lineage: Vec::new(),
        })
    }

    /// The latest lineage step (the entry this card describes).
    pub fn current(&self) -> Option<&LineageStep> {
        self.lineage.last()
    }

    /// The latest step's name.
    pub fn name(&self) -> Option<&str> {
        self.current().map(|s| s.name.as_str())
    }

    /// Appends a lineage step after checking it:
    /// - its name is valid for its stage (technical name, trained, saved or deployed name);
    /// - the 4-hex UUID prefix in a generated name is its UUID's;
    /// - it is the stage right after the previous step's, and its name extends the previous
    ///   step's name (a trained name starts with its base's technical name, and so on);
    /// - a deployed step's quantization matches its name (it is filled in when `None`).
    ///
    /// The first step may be any stage (a card can start at a trained model).
    pub fn push_step(&mut self, mut step: LineageStep) -> Result<(), CardError> {
        let previous = self.lineage.last();
        let fail = |reason: &'static str| CardError::LineageOrder {
            stage: step.stage,
            name: step.name.clone(),
            previous: previous.map_or_else(
                || "nothing".to_owned(),
                |p| format!("{} {:?}", p.stage, p.name),
            ),
            reason,
        };
        let name_err = |source| CardError::StepName {
            stage: step.stage,
            name: step.name.clone(),
            source,
        };
        // (own UUID prefix, parent's name as it appears in this name)
        let (prefix, parent): (Option<UuidPrefix>, Option<String>) = match step.stage {
            Stage::Base => {
                TechnicalName::new(&step.name).map_err(name_err)?;
                (None, None)
            }
            Stage::Trained => {
                let n: TrainedName = step.name.parse().map_err(name_err)?;
                (Some(n.uuid_prefix()), Some(n.base().to_string()))
            }
            Stage::Saved => {
                let n: SavedName = step.name.parse().map_err(name_err)?;
                (Some(n.uuid_prefix()), Some(n.trained().to_string()))
            }
            Stage::Deployed => {
                let n: DeployedName = step.name.parse().map_err(name_err)?;
                match step.quantization {
                    None => step.quantization = Some(n.quant()),
                    Some(q) if q != n.quant() => {
                        return Err(fail("its quantization differs from the one in its name"))
                    }
                    Some(_) => {}
                }
                (Some(n.uuid_prefix()), Some(n.saved().to_string()))
            }
        };
        if let Some(prefix) = prefix {
            if prefix != UuidPrefix::of(&step.uuid) {
                return Err(fail("the UUID prefix in its name is not its UUID's"));
            }
        }
        if let Some(prev) = previous {
            let expected_next = match prev.stage {
                Stage::Base => Some(Stage::Trained),
                Stage::Trained => Some(Stage::Saved),
                Stage::Saved => Some(Stage::Deployed),
                Stage::Deployed => None,
            };
            if expected_next != Some(step.stage) {
                return Err(fail(
                    "stages go base → trained → saved → deployed, one each",
                ));
            }
            if parent.as_deref() != Some(prev.name.as_str()) {
                return Err(fail("its name does not extend the previous step's name"));
            }
        }
        self.lineage.push(step);
        Ok(())
    }

    /// A copy of this card with one more lineage step (for a saved model made from a trained
    /// one, or a deployment of a saved one).
    pub fn derive(&self, step: LineageStep) -> Result<ModelCard, CardError> {
        let mut card = self.clone();
        card.push_step(step)?;
        Ok(card)
    }

    /// The card as pretty-printed JSON (two-space indent, fields in declaration order, maps
    /// sorted by key, a final newline).
    pub fn to_json(&self) -> Result<String, CardError> {
        let mut text =
            serde_json::to_string_pretty(self).map_err(|source| CardError::CardJson {
                schema: SCHEMA,
                source,
            })?;
        text.push('\n');
        Ok(text)
    }

    /// Reads a card written by [`to_json`](Self::to_json): the `schema` must be [`SCHEMA`], and
    /// the lineage is re-checked step by step as in [`push_step`](Self::push_step).
    pub fn from_json(text: &str) -> Result<ModelCard, CardError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|source| CardError::CardJson {
                schema: SCHEMA,
                source,
            })?;
        let found = value
            .get("schema")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        if found != SCHEMA {
            return Err(CardError::UnsupportedSchema {
                found: found.to_owned(),
                expected: SCHEMA,
            });
        }
        let mut card: ModelCard =
            serde_json::from_value(value).map_err(|source| CardError::CardJson {
                schema: SCHEMA,
                source,
            })?;
        let steps = std::mem::take(&mut card.lineage);
        for step in steps {
            card.push_step(step)?;
        }
        Ok(card)
    }

    /// The card as a Hugging Face style `README.md`: YAML front matter (`base_model` when the
    /// adapter records a Hub id, `library_name` by stage, `license` when known, `tags`), then
    /// model details, training, evaluation and lineage sections (empty ones left out).
    pub fn to_readme(&self) -> String {
        render::readme(self)
    }

    /// Writes [`CARD_FILE`] and [`README_FILE`] into `dir`, each through a temporary file in
    /// `dir` renamed into place.
    pub fn write_to_dir(&self, dir: &Path) -> Result<(), CardError> {
        write_atomically(&dir.join(README_FILE), self.to_readme().as_bytes())?;
        write_atomically(&dir.join(CARD_FILE), self.to_json()?.as_bytes())
    }

    /// Reads [`CARD_FILE`] from `dir`.
    pub fn read_from_dir(dir: &Path) -> Result<ModelCard, CardError> {
        let path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| CardError::Io {
            path: path.clone(),
            source,
        })?;
        ModelCard::from_json(&text)
    }
}

/// Writes `bytes` whole: a staged sibling, fsynced, renamed over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CardError> {
    Ok(loraforge_staging::write_file(path, bytes)?)
}
