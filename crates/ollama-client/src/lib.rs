//! `loraforge-ollama-client`: an async client for the Ollama REST API, enough to deploy a local
//! GGUF file as an Ollama model and manage it afterwards.
//!
//! loraforge serves nothing itself: "deploy" forwards a saved model to an Ollama server. This
//! crate holds everything that talks to that server:
//!
//! * [`OllamaHost`] parses `OLLAMA_HOST` exactly as Ollama does; [`Client`] + [`ClientOptions`]
//!   (timeouts, retries) wrap the endpoints: version, tags, show, ps, copy, delete, blob
//!   `HEAD`/`POST`, create (NDJSON progress into a [`loraforge_progress::Reporter`]), and
//!   non-streaming generate/chat.
//! * [`validate_model_name`] applies Ollama's model-name rules, so a bad name is refused before
//!   anything is uploaded.
//! * [`Modelfile`] parses a deployment template (FROM, TEMPLATE, SYSTEM, PARAMETER, MESSAGE,
//!   LICENSE, ADAPTER …) and maps it onto a [`CreateRequest`].
//! * [`deploy_gguf`] / [`deploy`] run the whole flow: validate, put the blob (HEAD, upload only
//!   when missing, streamed from disk), create, verify with show.
//!
//! Errors are one [`ClientError`] enum: an unreachable server carries a hint to start
//! `ollama serve` or set `OLLAMA_HOST`; HTTP errors carry Ollama's own message.
//!
//! ```
//! use loraforge_ollama_client::{validate_model_name, CreateRequest, Modelfile, OllamaHost};
//!
//! let host = OllamaHost::parse("https://example.com/ollama");
//! assert_eq!(host.to_string(), "https://example.com:443/ollama");
//!
//! assert!(validate_model_name("my-model:q4_K_M").is_ok());
//! assert!(validate_model_name("my model").is_err());
//!
//! let template = Modelfile::parse(
//!     "TEMPLATE \"\"\"{{ .Prompt }}\"\"\"\nPARAMETER stop <|eot_id|>\nPARAMETER num_ctx 4096\n",
//! )?;
//! let mut request = CreateRequest { model: "my-model".into(), ..Default::default() };
//! template.apply_to(&mut request);
//! assert_eq!(request.template.as_deref(), Some("{{ .Prompt }}"));
//! assert_eq!(request.parameters["stop"], serde_json::json!(["<|eot_id|>"]));
//! assert_eq!(request.parameters["num_ctx"], serde_json::json!(4096));
//! # Ok::<(), loraforge_ollama_client::ModelfileError>(())
//! ```
#![deny(missing_docs)]

mod client;
mod deploy;
mod error;
mod host;
mod modelfile;
mod name;
mod types;
mod version;

pub use client::{
    is_valid_digest, normalize_digest, sha256_file, BlobUpload, Client, ClientOptions,
    CreateOutcome,
};
pub use deploy::{
    deploy, deploy_gguf, DeployOutcome, DeployRequest, DEPLOY_FILE_NAME, SERVER_QUANTIZE_TYPES,
};
pub use error::ClientError;
pub use host::{OllamaHost, DEFAULT_HOST, DEFAULT_PORT};
pub use modelfile::{parse_commands, Command, Modelfile, ModelfileError, ParamValue};
pub use name::{
    validate_model_name, ModelName, NameError, NamePart, DEFAULT_NAMESPACE, DEFAULT_NAME_HOST,
    DEFAULT_TAG,
};
pub use types::{
    ChatRequest, ChatResponse, CopyRequest, CreateRequest, DeleteRequest, GenerateRequest,
    GenerateResponse, ListModel, ListResponse, Message, Metrics, ModelDetails, ProcessResponse,
    ProgressResponse, RunningModel, ShowRequest, ShowResponse, VersionResponse,
};
pub use version::{ServerVersion, COPY_REWRITE_SINCE, MIN_BF16_QUANTIZE, MIN_JSON_CREATE};
