//! The registry's own record of each entry (`entry.json`): what the store needs to run the
//! lifecycle. The human-facing description lives beside it in the model card (`card.json`,
//! `README.md`).

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use loraforge_naming::{DeployedName, QuantType, SavedName, TechnicalName, TrainName, TrainedName};
use serde::{Deserialize, Serialize};

/// A registered base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseRecord {
    /// The technical name (`qw2.5-7-i`).
    pub technical_name: TechnicalName,
    /// A display name (from `config.json`'s `_name_or_path`, else the folder name).
    pub model_name: String,
    /// The Hugging Face folder used for merges: the store's copy, or the user's folder.
    pub model_dir: PathBuf,
    /// Whether `model_dir` is a copy inside the store (else a reference to the user's folder).
    pub copied: bool,
    /// The folder the user registered.
    pub source: PathBuf,
    /// `architectures[0]` from `config.json`.
    pub architecture: Option<String>,
    /// Whether a deployment template (`template.Modelfile`) is stored.
    pub has_template: bool,
    /// Registration UUID.
    pub uuid: uuid::Uuid,
    /// Registration time.
    pub added: DateTime<Utc>,
}

/// A registered trained model (a LoRA adapter for a base).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedRecord {
    /// Its generated name.
    pub name: TrainedName,
    /// The training UUID (its first 4 hex are in the name).
    pub uuid: uuid::Uuid,
    /// The base technical name.
    pub base: TechnicalName,
    /// The train name as normalized.
    pub train_name: TrainName,
    /// The date in the name: the training run's date when recorded, else the registration date.
    pub date: NaiveDate,
    /// Where the date came from (`trainer_state.json`, `registration`…).
    pub date_source: String,
    /// The folder the user registered.
    pub source: PathBuf,
    /// The checkpoint chosen (`None` = the final adapter at the folder's root).
    pub checkpoint: Option<u64>,
    /// Whether the adapter files are still in the store (`trained rm` removes them).
    pub adapter_present: bool,
    /// Registration time.
    pub added: DateTime<Utc>,
}

/// One file of a saved model with its checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the model folder.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256, lowercase hex.
    pub sha256: String,
    /// The file's modification time (nanoseconds since the Unix epoch) the store set when it
    /// recorded the checksum: a file with this size and time is not hashed again. Absent in
    /// records written before stamps, and for files the store did not write itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ns: Option<u64>,
}

/// A saved (merged, standalone) model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedRecord {
    /// Its generated name.
    pub name: SavedName,
    /// The saving UUID.
    pub uuid: uuid::Uuid,
    /// The trained model it was made from.
    pub trained: TrainedName,
    /// The trained model's UUID.
    pub trained_uuid: uuid::Uuid,
    /// The base technical name.
    pub base: TechnicalName,
    /// The output dtype (`bf16`, `f16`, `f32`).
    pub dtype: String,
    /// The weight files written, with checksums.
    pub files: Vec<FileRecord>,
    /// The job that made it.
    pub job: Option<String>,
    /// Seconds the merge took.
    pub merge_seconds: f64,
    /// Creation time.
    pub created: DateTime<Utc>,
}

/// A model deployed to an Ollama server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployedRecord {
    /// Its generated name (also the Ollama model name).
    pub name: DeployedName,
    /// The deploying UUID.
    pub uuid: uuid::Uuid,
    /// The saved model deployed.
    pub saved: SavedName,
    /// The Ollama server.
    pub host: String,
    /// The name Ollama knows it by.
    pub ollama_model: String,
    /// Upload digest: `sha256:…` of the GGUF file sent to the server (its blob name).
    pub digest: String,
    /// Model digest: the manifest digest the server lists for the model in `/api/tags`
    /// (`ollama list`'s ID); `None` when it did not list it, or for older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_digest: Option<String>,
    /// Model layer digest: `sha256:…` of the weights layer the server stored. From Ollama 0.30
    /// the server rewrites every GGUF (`llama-quantize COPY`), so it differs from `digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_layer_digest: Option<String>,
    /// The version the server reported when deploying.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// What the deploy noticed and the user should know.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The quantization (`no_quantization`, `q8_0`, `q4_K_M`, `q4_K_S`).
    pub quant: QuantType,
    /// Whether Ollama quantized it (`--server-quantize`) rather than loraforge.
    pub server_quantize: bool,
    /// The Modelfile text sent (template, system, parameters).
    pub modelfile: String,
    /// Seconds spent exporting the GGUF (0 when reused from the cache).
    pub export_seconds: f64,
    /// Seconds spent uploading and creating.
    pub deploy_seconds: f64,
    /// The job that made it, when it ran as a job (recovery matches a dead job to its result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Deployment time.
    pub created: DateTime<Utc>,
}
