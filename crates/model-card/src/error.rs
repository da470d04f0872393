//! The one error type of this crate.

use std::path::PathBuf;

use loraforge_naming::NameError;

use crate::Stage;

/// Why a model card could not be gathered, read or extended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CardError {
    /// A required file is missing (the base `config.json`, or `adapter_config.json` of an adapter).
    #[error("{path} is missing")]
    MissingFile {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("I/O error on {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a card file in place (its staged temporary, or the rename) failed.
    #[error(transparent)]
    Write(#[from] loraforge_staging::StagingError),
    /// A JSON file is not valid JSON.
    #[error("{path} is not valid JSON")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A JSON file is valid JSON but not a JSON object.
    #[error("{path} is not a JSON object")]
    NotAnObject {
        /// The file.
        path: PathBuf,
    },
    /// A field has the wrong type.
    #[error("{path}: field {field:?} should be {expected}, found {found}")]
    BadField {
        /// The file.
        path: PathBuf,
        /// The field (dotted for nested fields, e.g. `log_history[3].step`).
        field: String,
        /// What was expected.
        expected: &'static str,
        /// A short rendering of what was found.
        found: String,
    },
    /// The base model's weights could not be read (malformed safetensors header or index).
    #[error("cannot read the weights of {dir}")]
    Weights {
        /// The base model folder.
        dir: PathBuf,
        /// The cause, naming the file.
        #[source]
        source: loraforge_hf_model::HfModelError,
    },
    /// A card's JSON does not carry the schema this version reads.
    #[error("model card schema is {found:?}; this loraforge reads {expected:?}")]
    UnsupportedSchema {
        /// The `schema` field found (empty when absent).
        found: String,
        /// The schema this crate reads and writes.
        expected: &'static str,
    },
    /// A card's JSON has the right schema but the wrong shape.
    #[error("model card JSON does not match schema {schema}")]
    CardJson {
        /// The schema.
        schema: &'static str,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A lineage step's name is not a valid name for its stage.
    #[error("lineage step {stage}: {name:?} is not a valid {stage} name")]
    StepName {
        /// The step's stage.
        stage: Stage,
        /// The rejected name.
        name: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// `--checkpoint N` names a checkpoint the trainer folder does not have.
    #[error("{dir}: {}", match available.as_slice() {
        [] => format!("--checkpoint {step} given but the folder has no checkpoint-N subfolders"),
        steps => format!("no checkpoint-{step}; available checkpoints: {}", steps.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    })]
    NoSuchCheckpoint {
        /// The trainer output folder.
        dir: PathBuf,
        /// The step asked for.
        step: u64,
        /// The steps of the `checkpoint-N` folders present, ascending.
        available: Vec<u64>,
    },
    /// A folder is neither a PEFT adapter folder nor a trainer output folder.
    #[error("{dir}: neither a PEFT adapter folder (no adapter_config.json) nor a trainer output folder (no checkpoint-N/ subfolders)")]
    NotAnAdapterFolder {
        /// The folder.
        dir: PathBuf,
    },
    /// The chosen adapter folder has no `adapter_config.json`.
    #[error("{dir}: no adapter_config.json: not a PEFT adapter folder")]
    NoAdapterConfig {
        /// The adapter folder.
        dir: PathBuf,
    },
    /// The chosen adapter folder has no `adapter_model.safetensors`.
    #[error("{dir}: {}", if *pickle_only {
        "only adapter_model.bin (a pickle) is present; convert it to safetensors first, e.g. `PeftModel.from_pretrained(base, dir).save_pretrained(dir, safe_serialization=True)`"
    } else {
        "no adapter_model.safetensors"
    })]
    NoAdapterWeights {
        /// The adapter folder.
        dir: PathBuf,
        /// Whether `adapter_model.bin` is there instead.
        pickle_only: bool,
    },
    /// A lineage step does not follow the previous one.
    #[error("lineage step {stage} {name:?} cannot follow {previous}: {reason}")]
    LineageOrder {
        /// The new step's stage.
        stage: Stage,
        /// The new step's name.
        name: String,
        /// The previous step (stage and name), or "nothing".
        previous: String,
        /// What is inconsistent.
        reason: &'static str,
    },
}

impl CardError {
    /// True when the input files are at fault (missing, malformed, not what was asked for),
    /// false when something failed underneath (I/O) or the caller broke a lineage rule.
    pub fn is_user_error(&self) -> bool {
        match self {
            CardError::MissingFile { .. }
            | CardError::Json { .. }
            | CardError::NotAnObject { .. }
            | CardError::BadField { .. }
            | CardError::Weights { .. }
            | CardError::UnsupportedSchema { .. }
            | CardError::NoSuchCheckpoint { .. }
            | CardError::NotAnAdapterFolder { .. }
            | CardError::NoAdapterConfig { .. }
            | CardError::NoAdapterWeights { .. } => true,
            CardError::Write(e) => e.is_user_error(),
            CardError::Io { .. }
            | CardError::CardJson { .. }
            | CardError::StepName { .. }
            | CardError::LineageOrder { .. } => false,
        }
    }

    /// What to do next, when there is something specific to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            CardError::NoSuchCheckpoint { available, .. } if !available.is_empty() => Some(
                "pass one of the available steps to --checkpoint, or leave it out for the final adapter".into(),
            ),
            CardError::UnsupportedSchema { .. } => {
                Some("the card was written by another loraforge version; use that version, or register the model again".into())
            }
            CardError::Write(e) => e.hint(),
            _ => None,
        }
    }
}
