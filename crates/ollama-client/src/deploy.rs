//! Deploying a local GGUF file as an Ollama model: validate, upload, create, verify.

use std::collections::BTreeMap;
use std::path::Path;

use loraforge_progress::Reporter;

use crate::client::{normalize_digest, Client};
use crate::error::ClientError;
use crate::modelfile::Modelfile;
use crate::name::{validate_model_name, ModelName};
use crate::types::{CreateRequest, ListModel, ShowResponse};
use crate::version::{COPY_REWRITE_SINCE, MIN_BF16_QUANTIZE, MIN_JSON_CREATE};

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
    /// The GGUF's file type (`F16`, `BF16`, `F32`, `Q8_0` …) when the caller knows it: with
    /// `quantize`, Ollama refuses anything but F16/BF16/F32, and BF16 needs Ollama ≥ 0.22.0.
    pub source_type: Option<&'a str>,
}

/// What a successful deploy did.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployOutcome {
    /// The model name as created.
    pub model: String,
    /// Upload digest: `sha256:<hex>` of the GGUF file that was sent (the blob's name).
    pub upload_digest: String,
    /// Model digest: the manifest digest `/api/tags` lists for the model (what `ollama list`
    /// shows as its ID); `None` when the server did not list it.
    pub model_digest: Option<String>,
    /// Model layer digest: `sha256:<hex>` of the weights layer the server stored, read from
    /// `show`'s Modelfile. From Ollama 0.30 it differs from the upload digest, because the server
    /// rewrites every GGUF with `llama-quantize COPY` (and when it quantizes).
    pub model_layer_digest: Option<String>,
    /// The version the server reported.
    pub server_version: String,
    /// Things the user should know (an old server's template fallback, a create confirmed
    /// after a dropped connection …).
    pub notes: Vec<String>,
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
            source_type: None,
        },
        reporter,
    )
    .await
}

/// Validates the name (and digest, quantize type and file) before any network call, checks the
/// server's version (JSON create needs ≥ 0.5.5; quantizing a BF16 source ≥ 0.22.0), puts the
/// GGUF blob (HEAD first, upload only when missing, streamed from disk), creates the model with
/// `files: {"model.gguf": digest}` plus the template's fields (stop sequences from `extra_stop`
/// appended when missing), reads the model digest from `/api/tags` and confirms with `show`.
///
/// When the create's connection breaks and `show` then finds the model, the deploy counts as
/// done only when `/api/tags` lists another digest for the name than before the create
/// ([`ClientError::CreateUnconfirmed`] otherwise).
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
    let source_type = request.source_type.map(str::to_ascii_uppercase);
    if let (Some(_), Some(source)) = (&quantize, &source_type) {
        if !matches!(source.as_str(), "F16" | "BF16" | "F32") {
            return Err(ClientError::QuantizeSourceType {
                path: request.gguf_path.to_owned(),
                source_type: source.clone(),
            });
        }
    }
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

    let version = client.server_version().await?;
    client.require_version(
        &version,
        MIN_JSON_CREATE,
        "creating a model from an uploaded GGUF",
    )?;
    if quantize.is_some() && source_type.as_deref() == Some("BF16") {
        client.require_version(&version, MIN_BF16_QUANTIZE, "quantizing a BF16 model")?;
    }
    let mut notes = Vec::new();
    match version.1 {
        None => notes.push(format!(
            "the server reports version {:?}, a development build or an unknown format: its features were not checked",
            version.0
        )),
        Some(v) if v < COPY_REWRITE_SINCE && request.modelfile.template.is_none() => {
            notes.push(format!(
                "Ollama {v} uses the plain template {{{{ .Prompt }}}} for a model without a TEMPLATE \
                 (Ollama 0.30 and newer render the GGUF's own chat template): chat replies may be poor"
            ))
        }
        Some(v) if request.modelfile.template.is_none() => notes.push(format!(
            "no TEMPLATE was sent: Ollama {v} renders the GGUF's tokenizer.chat_template (Jinja) \
             for chat; a GGUF without one gets no chat formatting"
        )),
        Some(_) => {}
    }

    // What the name held before: after a dropped connection `show` alone cannot tell a new
    // model from an earlier one of the same name, the listed manifest digest can.
    let previous_digest = listed_digest(client, request.model_name).await;
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
    let model_digest = listed_digest(client, request.model_name).await;
    if outcome.confirmed_after_drop {
        if let Some(digest) = previous_digest.filter(|d| Some(d) == model_digest.as_ref()) {
            return Err(ClientError::CreateUnconfirmed {
                model: request.model_name.to_owned(),
                digest,
            });
        }
        notes.push(format!(
            "the connection broke before the server confirmed the create; the server shows {} so it was created",
            request.model_name
        ));
    }

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
        upload_digest: blob.digest,
        model_digest,
        model_layer_digest: model_layer_digest(&show.modelfile),
        server_version: version.0,
        notes,
        uploaded: blob.uploaded,
        bytes_sent: blob.bytes_sent,
        request: create,
        statuses: outcome.statuses,
        show,
    })
}

/// The manifest digest `/api/tags` lists for `name`, if the server lists it.
async fn listed_digest(client: &Client, name: &str) -> Option<String> {
    let list = client.list().await.ok()?;
    find_listed(&list.models, name).map(|m| m.digest.clone())
}

/// The `/api/tags` entry of `name` (names compare case-insensitively with defaults filled in,
/// as Ollama looks them up).
fn find_listed<'a>(models: &'a [ListModel], name: &str) -> Option<&'a ListModel> {
    let want = ModelName::parse(name).ok()?;
    models.iter().find(|m| {
        ModelName::parse(&m.name).is_ok_and(|have| {
            have.host.eq_ignore_ascii_case(&want.host)
                && have.namespace.eq_ignore_ascii_case(&want.namespace)
                && have.model.eq_ignore_ascii_case(&want.model)
                && have.tag.eq_ignore_ascii_case(&want.tag)
        })
    })
}

/// `sha256:<hex>` of the weights layer from the `FROM <models>/blobs/sha256-<hex>` line that
/// `show` puts in the Modelfile it generates.
fn model_layer_digest(modelfile: &str) -> Option<String> {
    modelfile.lines().find_map(|line| {
        let from = line.strip_prefix("FROM ")?.trim();
        let file = from.rsplit(['/', '\\']).next()?;
        let hex = file
            .strip_prefix("sha256-")
            .or_else(|| file.strip_prefix("sha256:"))?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_digest_from_show_modelfile() {
        let hex = "ab".repeat(32);
        let text = format!("# Modelfile generated by \"ollama show\"\nFROM /root/.ollama/models/blobs/sha256-{hex}\nTEMPLATE x\n");
        assert_eq!(model_layer_digest(&text), Some(format!("sha256:{hex}")));
        assert_eq!(model_layer_digest("FROM llama3:latest\n"), None);
    }
}
