//! Deploying a local GGUF file as an Ollama model: validate, upload, create, verify.

use std::collections::BTreeMap;
use std::path::Path;

use loraforge_progress::Reporter;

use crate::client::{normalize_digest, Client};
use crate::error::ClientError;
use crate::modelfile::Modelfile;
use crate::name::validate_model_name;
use crate::types::{CreateRequest, ShowResponse};

/// The file name the GGUF is registered under in `files` (Ollama detects GGUF by the suffix).
pub const DEPLOY_FILE_NAME: &str = "model.gguf";

/// Quantization types Ollama's create accepts (≥ v0.6.9; `q4_K` is an alias of `q4_K_M`).
pub const SERVER_QUANTIZE_TYPES: &[&str] =
    &["F32", "F16", "BF16", "Q8_0", "Q4_K_S", "Q4_K_M", "Q4_K"];

/// Everything [`deploy`] needs.
#[derive(Debug, Clone, Copy)]
pub struct DeployRequest<'a> {
    /// Ollama model name (validated before anything is sent).
    pub model_name: &'a str,
    /// The GGUF file.
    pub gguf_path: &'a Path,
    /// Its `sha256:<hex>` digest when already known (recorded when the GGUF was written); the
    /// server re-verifies it while receiving the bytes, so a changed file is refused.
    pub known_digest: Option<&'a str>,
    /// Deployment template: TEMPLATE, SYSTEM, PARAMETER, MESSAGE, LICENSE … (FROM, ADAPTER and
    /// DRAFT are not used: the GGUF is the model).
    pub modelfile: &'a Modelfile,
    /// Stop sequences (the tokenizer's EOS/EOT text) added when the template's `stop` lacks them.
    pub extra_stop: &'a [String],
    /// Ask Ollama to quantize the uploaded model (`q8_0`, `q4_K_M`, `q4_K_S` …); `None` keeps it.
    pub quantize: Option<&'a str>,
}

/// What a successful deploy did.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployOutcome {
    /// The model name as created.
    pub model: String,
    /// `sha256:<hex>` of the uploaded GGUF.
    pub digest: String,
    /// False when the server already had the blob.
    pub uploaded: bool,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// The create request that was sent.
    pub request: CreateRequest,
    /// Status lines the server streamed during create.
    pub statuses: Vec<String>,
    /// `show` of the new model (confirms Ollama has it).
    pub show: ShowResponse,
}

/// Deploys `gguf_path` as `model_name` with the template from `modelfile` (see [`deploy`]).
pub async fn deploy_gguf(
    client: &Client,
    model_name: &str,
    gguf_path: &Path,
    known_digest: Option<&str>,
    modelfile: &Modelfile,
    extra_stop: &[String],
    reporter: &dyn Reporter,
) -> Result<DeployOutcome, ClientError> {
    deploy(
        client,
        &DeployRequest {
            model_name,
            gguf_path,
            known_digest,
            modelfile,
            extra_stop,
            quantize: None,
        },
        reporter,
    )
    .await
}

/// Validates the name (and digest, quantize type and file) before any network call, puts the
/// GGUF blob (HEAD first, upload only when missing), creates the model with
/// `files: {"model.gguf": digest}` plus the template's fields (stop sequences from `extra_stop`
/// appended when missing), then confirms with `show`.
pub async fn deploy(
    client: &Client,
    request: &DeployRequest<'_>,
    reporter: &dyn Reporter,
) -> Result<DeployOutcome, ClientError> {
    validate_model_name(request.model_name)?;
    let known = request.known_digest.map(normalize_digest).transpose()?;
    let quantize = match request.quantize {
        Some(q) if SERVER_QUANTIZE_TYPES.contains(&q.to_ascii_uppercase().as_str()) => {
            Some(q.to_owned())
        }
        Some(q) => {
            return Err(ClientError::UnsupportedQuantize {
                quantize: q.to_owned(),
            })
        }
        None => None,
    };
    let meta = tokio::fs::metadata(request.gguf_path)
        .await
        .map_err(|source| ClientError::Io {
            path: request.gguf_path.to_owned(),
            source,
        })?;
    if !meta.is_file() {
        return Err(ClientError::Io {
            path: request.gguf_path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
        });
    }

    let blob = client
        .push_blob(request.gguf_path, known.as_deref(), reporter)
        .await?;

    let mut create = CreateRequest {
        model: request.model_name.to_owned(),
        files: BTreeMap::from([(DEPLOY_FILE_NAME.to_owned(), blob.digest.clone())]),
        quantize,
        ..CreateRequest::default()
    };
    let mut template = request.modelfile.clone();
    template.add_stops(request.extra_stop);
    template.apply_to(&mut create);
    let outcome = client.create(&create, reporter).await?;

    let show = match client.show(request.model_name).await {
        Ok(show) => show,
        Err(e) if e.is_not_found() => {
            return Err(ClientError::NotCreated {
                model: request.model_name.to_owned(),
            })
        }
        Err(e) => return Err(e),
    };
    Ok(DeployOutcome {
        model: request.model_name.to_owned(),
        digest: blob.digest,
        uploaded: blob.uploaded,
        bytes_sent: blob.bytes_sent,
        request: create,
        statuses: outcome.statuses,
        show,
    })
}
