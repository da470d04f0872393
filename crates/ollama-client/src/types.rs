//! Request and response bodies of the Ollama REST API (`api/types.go`), the fields loraforge uses.
//! Unknown response fields are ignored; missing optional ones default.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat message (`MESSAGE` in a Modelfile, `messages` in create and chat).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: String,
}

/// `POST /api/create` body (Ollama ≥ 0.5.5 JSON form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// Name of the model to create.
    pub model: String,
    /// Existing model to build from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Relative file name → `sha256:<hex>` digest of an uploaded blob.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, String>,
    /// LoRA adapter files, same form as `files`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub adapters: BTreeMap<String, String>,
    /// Go prompt template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// System prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Runtime options (`temperature`, `num_ctx`, `stop` as a list …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    /// Few-shot history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<Message>,
    /// License texts, one layer each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub license: Vec<String>,
    /// Server-side quantization (`q8_0`, `q4_K_M`, `q4_K_S`, `f16` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantize: Option<String>,
    /// Minimum Ollama version (`REQUIRES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<String>,
    /// Renderer name (`RENDERER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer: Option<String>,
    /// Parser name (`PARSER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<String>,
    /// Stream NDJSON progress (the client always streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// One NDJSON progress line of create/pull/push.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressResponse {
    /// Free-form status text (`parsing GGUF`, `writing manifest`, `success` …).
    #[serde(default)]
    pub status: String,
    /// Layer digest the status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Total units (bytes) of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Completed units of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
}

/// `GET /api/version`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// Server version, e.g. `0.12.3`.
    pub version: String,
}

/// Model details shared by tags, show and ps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDetails {
    /// Parent model.
    #[serde(default)]
    pub parent_model: String,
    /// `gguf`.
    #[serde(default)]
    pub format: String,
    /// Architecture family (`llama` …).
    #[serde(default)]
    pub family: String,
    /// All families.
    #[serde(default)]
    pub families: Option<Vec<String>>,
    /// Parameter count as text (`8.0B`).
    #[serde(default)]
    pub parameter_size: String,
    /// Quantization level (`Q4_K_M`, `F16` …).
    #[serde(default)]
    pub quantization_level: String,
}

/// One entry of `GET /api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListModel {
    /// Display name (`name:tag`).
    pub name: String,
    /// Same as `name` in current servers.
    #[serde(default)]
    pub model: String,
    /// RFC 3339 modification time.
    #[serde(default)]
    pub modified_at: String,
    /// Total size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Manifest digest (hex).
    #[serde(default)]
    pub digest: String,
    /// Details.
    #[serde(default)]
    pub details: ModelDetails,
}

/// `GET /api/tags`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    /// Installed models.
    #[serde(default)]
    pub models: Vec<ListModel>,
}

/// `POST /api/show` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShowRequest {
    /// Model name.
    pub model: String,
    /// Fill token arrays in `model_info`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verbose: bool,
}

/// `POST /api/show` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShowResponse {
    /// License text.
    #[serde(default)]
    pub license: String,
    /// Generated Modelfile.
    #[serde(default)]
    pub modelfile: String,
    /// Parameters as Modelfile-like text lines.
    #[serde(default)]
    pub parameters: String,
    /// Prompt template.
    #[serde(default)]
    pub template: String,
    /// System prompt.
    #[serde(default)]
    pub system: String,
    /// Details.
    #[serde(default)]
    pub details: ModelDetails,
    /// Few-shot messages.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// GGUF metadata (`general.architecture` …).
    #[serde(default)]
    pub model_info: Map<String, Value>,
    /// `completion`, `tools` …
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// RFC 3339 modification time.
    #[serde(default)]
    pub modified_at: String,
}

/// One entry of `GET /api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningModel {
    /// Display name.
    pub name: String,
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Size in memory.
    #[serde(default)]
    pub size: u64,
    /// Manifest digest.
    #[serde(default)]
    pub digest: String,
    /// Details.
    #[serde(default)]
    pub details: ModelDetails,
    /// When it unloads.
    #[serde(default)]
    pub expires_at: String,
    /// Bytes in VRAM.
    #[serde(default)]
    pub size_vram: u64,
    /// Loaded context length.
    #[serde(default)]
    pub context_length: Option<u64>,
}

/// `GET /api/ps`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessResponse {
    /// Loaded models.
    #[serde(default)]
    pub models: Vec<RunningModel>,
}

/// `POST /api/copy` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRequest {
    /// Existing model.
    pub source: String,
    /// New name.
    pub destination: String,
}

/// `DELETE /api/delete` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    /// Model to delete.
    pub model: String,
}

/// `POST /api/generate` body (sent with `stream: false`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// Model name.
    pub model: String,
    /// Prompt.
    #[serde(default)]
    pub prompt: String,
    /// Override the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Override the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Send the prompt without templating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<bool>,
    /// Runtime options (`num_predict`, `temperature` …).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    /// Always `false` from this client.
    #[serde(default)]
    pub stream: bool,
    /// How long to keep the model loaded (`0` unloads after the call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
}

/// Timing and token counts shared by generate and chat responses (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Total time.
    #[serde(default)]
    pub total_duration: Option<u64>,
    /// Model load time.
    #[serde(default)]
    pub load_duration: Option<u64>,
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    /// Prompt evaluation time.
    #[serde(default)]
    pub prompt_eval_duration: Option<u64>,
    /// Generated tokens.
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// Generation time.
    #[serde(default)]
    pub eval_duration: Option<u64>,
}

/// `POST /api/generate` response (non-streaming).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerateResponse {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Timestamp.
    #[serde(default)]
    pub created_at: String,
    /// Generated text.
    #[serde(default)]
    pub response: String,
    /// Always true for a non-streaming call.
    #[serde(default)]
    pub done: bool,
    /// `stop`, `length` …
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Timings and counts.
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// `POST /api/chat` body (sent with `stream: false`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model name.
    pub model: String,
    /// Conversation.
    pub messages: Vec<Message>,
    /// Runtime options.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub options: Map<String, Value>,
    /// Always `false` from this client.
    #[serde(default)]
    pub stream: bool,
    /// How long to keep the model loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<Value>,
}

/// `POST /api/chat` response (non-streaming).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Model name.
    #[serde(default)]
    pub model: String,
    /// Timestamp.
    #[serde(default)]
    pub created_at: String,
    /// The assistant's reply.
    #[serde(default)]
    pub message: Message,
    /// Always true for a non-streaming call.
    #[serde(default)]
    pub done: bool,
    /// `stop`, `length` …
    #[serde(default)]
    pub done_reason: Option<String>,
    /// Timings and counts.
    #[serde(flatten)]
    pub metrics: Metrics,
}
