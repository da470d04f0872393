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
