//! Export a saved model to GGUF (cached by content) and deploy it to Ollama.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use loraforge_naming::QuantType;
use loraforge_ollama_client::{Client, ClientOptions, DeployRequest, Modelfile, OllamaHost};
use loraforge_progress::Reporter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cards;
use crate::error::{RegistryError, Result};
use crate::records::{DeployedRecord, SavedRecord};
use crate::registry::{fresh_uuid, owner_tag, Registry, ENTRY_FILE};
use crate::storage::{write_atomic, EntryKind};

/// How to deploy.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// The Ollama server (`OLLAMA_HOST` syntax); `None` = `OLLAMA_HOST`, else `127.0.0.1:11434`.
    pub host: Option<String>,
    /// Upload F16 and let Ollama quantize, instead of loraforge's quantizer.
    pub server_quantize: bool,
    /// Generate one token after creating the model.
    pub smoke_test: bool,
}

impl DeployOptions {
    /// The server these options point at: `host` when set, else `OLLAMA_HOST`, else the default.
    pub fn ollama_host(&self) -> OllamaHost {
        match &self.host {
            Some(text) => OllamaHost::parse(text),
            None => OllamaHost::from_env(),
        }
    }
}

/// A GGUF export of a saved model, in the store's export cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedGguf {
    /// The GGUF file.
    pub path: PathBuf,
    /// Lowercase hex sha256 of the file (the Ollama blob digest without `sha256:`).
    pub sha256: String,
    /// File size.
    pub bytes: u64,
    /// The GGUF file type written (`f16`, `bf16`, `q8_0`, `q4_K_M`, `q4_K_S`).
    pub file_type: String,
    /// Seconds spent exporting now (0 when the cache had it).
    pub seconds: f64,
    /// True when the cache already had it.
    #[serde(skip)]
    pub reused: bool,
}

/// Status of a deployed model on its server, for `deployed list --check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployedStatus {
    /// The server lists the model.
    Present,
    /// The server answered and does not have it.
    Missing,
    /// The server could not be reached.
    Unreachable,
}

/// How to produce a GGUF: the export target, and the name of the result's type (also the
/// cache key's).
struct ExportPlan {
    target: loraforge_export::ExportTarget,
    file_type: String,
}

impl ExportPlan {
    /// The export for a deployment quantization ([`loraforge_export::ExportTarget::for_quant`]).
    fn for_quant(quant: QuantType, saved_dtype: &str) -> ExportPlan {
        let file_type = match quant {
            // no_quantization keeps the saved dtype.
            QuantType::NoQuantization => saved_dtype.to_string(),
            other => other.as_str().to_string(),
        };
        ExportPlan {
            target: loraforge_export::ExportTarget::for_quant(quant),
            file_type,
        }
    }

    /// The F16 GGUF uploaded when Ollama is asked to quantize (`--server-quantize`).
    fn f16_for_server() -> ExportPlan {
        let f16 = loraforge_naming::FileType::F16;
        ExportPlan {
            target: loraforge_export::ExportTarget::Convert(f16),
            file_type: f16.to_string(),
        }
    }
}

/// The EOS/EOT token texts of a model folder, used as stop sequences when the template lacks them.
pub fn stop_tokens(model_dir: &Path) -> Vec<String> {
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(model_dir.join(name)).ok()?).ok()
    };
    let mut stops = Vec::new();
    let mut push = |text: &str| {
        if !text.is_empty() && !stops.iter().any(|s| s == text) {
            stops.push(text.to_string());
        }
    };
    if let Some(config) = read("tokenizer_config.json") {
        match config.get("eos_token") {
            Some(serde_json::Value::String(text)) => push(text),
            Some(object) => {
                if let Some(text) = object.get("content").and_then(|c| c.as_str()) {
                    push(text)
                }
            }
            None => {}
        }
    }
    // generation_config's eos ids may list more end tokens (Llama 3's <|eot_id|> …).
    let ids: Vec<u64> = read("generation_config.json")
        .and_then(|g| g.get("eos_token_id").cloned())
        .map(|v| match v {
            serde_json::Value::Array(items) => items.iter().filter_map(|i| i.as_u64()).collect(),
            other => other.as_u64().into_iter().collect(),
        })
        .unwrap_or_default();
    if !ids.is_empty() {
        if let Some(tokenizer) = read("tokenizer.json") {
            for added in tokenizer
                .get("added_tokens")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
            {
                let id = added.get("id").and_then(|i| i.as_u64());
                let content = added.get("content").and_then(|c| c.as_str());
                if let (Some(id), Some(content)) = (id, content) {
                    if ids.contains(&id) {
                        push(content);
                    }
                }
            }
        }
    }
    stops
}

impl Registry {
    /// Export a saved model to GGUF with the given quantization, reusing the store's cache when
    /// the same saved files were exported the same way before. The saved files are checked
    /// against the checksums recorded when they were saved.
    pub fn export_gguf(
        &self,
        saved: &str,
        quant: QuantType,
        reporter: &dyn Reporter,
    ) -> Result<ExportedGguf> {
        let record = self.saved(saved)?;
        let plan = ExportPlan::for_quant(quant, &record.dtype);
        self.export(&record, &plan, reporter)
    }

    /// Export `record` (a saved entry, just read) as `plan` says.
    fn export(
        &self,
        record: &SavedRecord,
        plan: &ExportPlan,
        reporter: &dyn Reporter,
    ) -> Result<ExportedGguf> {
        let saved = record.name.as_str();
        let saved_dir = self.entry_dir(EntryKind::Saved, saved)?;
        let model_dir = saved_dir.join("model");
        reporter.begin("verify", Some(record.files.len() as u64));
        for file in &record.files {
            let actual = loraforge_model_card::sha256_file(&model_dir.join(&file.path))?;
            if actual != file.sha256 {
                return Err(RegistryError::ChecksumMismatch {
                    name: saved.to_string(),
                    file: file.path.clone(),
                    recorded: file.sha256.clone(),
                    actual,
                });
            }
            reporter.advance(1);
        }
        reporter.finish();
        let file_type = &plan.file_type;
        // The cache key covers the content (file checksums), the recipe and the tool version.
        let mut key = Sha256::new();
        for file in &record.files {
            key.update(file.path.as_bytes());
            key.update(file.sha256.as_bytes());
        }
        key.update(file_type.as_bytes());
        key.update(env!("CARGO_PKG_VERSION").as_bytes());
        let key = hex::encode(key.finalize());
        let exports = self.home().join("exports");
        let path = exports.join(format!("{}.{file_type}.gguf", &key[..16]));
        let sidecar = exports.join(format!("{}.{file_type}.json", &key[..16]));
        if path.is_file() {
            if let Some(mut cached) = std::fs::read(&sidecar)
                .ok()
                .and_then(|b| serde_json::from_slice::<ExportedGguf>(&b).ok())
            {
                cached.reused = true;
                cached.seconds = 0.0;
                return Ok(cached);
            }
        }
        let started = Instant::now();
        let owner = owner_tag("export");
        let staging = self.storage().stage(&owner)?;
        let result = (|| {
            let card = loraforge_model_card::ModelCard::read_from_dir(&saved_dir)?;
            let options = loraforge_export::ConvertOptions {
                target: plan.target,
                general: general_metadata(&card, saved),
                // Ollama names blobs by SHA-256: hash while writing.
                sha256: true,
                ..Default::default()
            };
            let written = staging.join("model.gguf");
            let converted = loraforge_export::convert(&model_dir, &written, &options, reporter)?;
            let sha256 = match converted.sha256 {
                Some(sha256) => sha256,
                None => loraforge_model_card::sha256_file(&written)?,
            };
            let bytes = std::fs::metadata(&written)
                .map_err(RegistryError::io("cannot read", &written))?
                .len();
            std::fs::rename(&written, &path).map_err(RegistryError::io("cannot store", &path))?;
            let exported = ExportedGguf {
                path: path.clone(),
                sha256,
                bytes,
                file_type: file_type.to_string(),
                seconds: started.elapsed().as_secs_f64(),
                reused: false,
            };
            write_atomic(
                &sidecar,
                &serde_json::to_vec_pretty(&exported).unwrap_or_default(),
            )?;
            Ok(exported)
        })();
        let _ = self.storage().discard_staged(&owner);
        result
    }

    /// Export (or reuse) the GGUF of a saved model and deploy it to Ollama with the base model's
    /// deployment template. The deployed entry is recorded only once Ollama confirms the model.
    pub async fn deploy(
        &self,
        saved: &str,
        quant: QuantType,
        options: &DeployOptions,
        reporter: &dyn Reporter,
    ) -> Result<DeployedRecord> {
        let record = self.saved(saved)?;
        let client = Client::new(ClientOptions::with_host(options.ollama_host()))?;
        let host_text = client.base_url().to_string();
        // Cheap checks first: the template parses, the name is one Ollama accepts, the server answers.
        let template_text = self.base_template(&record.base).unwrap_or(None);
        let template_path = self
            .entry_dir(EntryKind::Base, &record.base)?
            .join(crate::registry::TEMPLATE_FILE);
        let modelfile = match &template_text {
            Some(text) => Modelfile::parse(text).map_err(|e| RegistryError::BadInput {
                path: template_path.clone(),
                problem: format!("the deployment template does not parse: {e}"),
            })?,
            None => Modelfile::default(),
        };
        let existing: Vec<uuid::Uuid> = self.deployed_models()?.iter().map(|d| d.uuid).collect();
        let uuid = fresh_uuid(&existing)?;
        let saved_name: loraforge_naming::SavedName = record.name.parse()?;
        let name = loraforge_naming::DeployedName::new(
            saved_name,
            loraforge_naming::UuidPrefix::of(&uuid),
            quant,
        )
        .to_string();
        loraforge_ollama_client::validate_model_name(&name).map_err(|e| {
            RegistryError::BadInput {
                path: PathBuf::from(&name),
                problem: format!("Ollama would reject this model name: {e}"),
            }
        })?;
        client.version().await?;

        let server_quantize = quant.ollama_quantize().filter(|_| options.server_quantize);
        let plan = match server_quantize {
            Some(_) => ExportPlan::f16_for_server(),
            None => ExportPlan::for_quant(quant, &record.dtype),
        };
        let exported = self.export(&record, &plan, reporter)?;
        let stops = stop_tokens(&self.saved_model_dir(saved)?);
        let digest = format!("sha256:{}", exported.sha256);
        let started = Instant::now();
        let outcome = loraforge_ollama_client::deploy(
            &client,
            &DeployRequest {
                model_name: &name,
                gguf_path: &exported.path,
                known_digest: Some(&digest),
                modelfile: &modelfile,
                extra_stop: &stops,
                quantize: server_quantize,
            },
            reporter,
        )
        .await?;
        if options.smoke_test {
            let mut request = loraforge_ollama_client::GenerateRequest {
                model: name.clone(),
                prompt: "Hello".into(),
                ..Default::default()
            };
            request
                .options
                .insert("num_predict".into(), serde_json::Value::from(1));
            client.generate(&request).await?;
        }
        let deployed = DeployedRecord {
            name: name.clone(),
            uuid,
            saved: saved.to_string(),
            host: host_text,
            ollama_model: outcome.model.clone(),
            digest: outcome.digest.clone(),
            quant: quant.as_str().to_string(),
            server_quantize: server_quantize.is_some(),
            modelfile: modelfile_text(&outcome.request),
            export_seconds: exported.seconds,
            deploy_seconds: started.elapsed().as_secs_f64(),
            created: Utc::now(),
        };
        let owner = owner_tag("deploy");
        let staged = self.storage().stage(&owner)?;
        let result = (|| {
            let saved_dir = self.entry_dir(EntryKind::Saved, saved)?;
            let card = cards::deployed_card(&deployed, &saved_dir, quant, exported.bytes)?;
            write_atomic(
                &staged.join(ENTRY_FILE),
                &serde_json::to_vec_pretty(&deployed).unwrap_or_default(),
            )?;
            card.write_to_dir(&staged)?;
            let _lock = self.lock()?;
            self.storage().publish(&staged, EntryKind::Deployed, &name)
        })();
        if result.is_err() {
            let _ = self.storage().discard_staged(&owner);
        }
        result?;
        Ok(deployed)
    }

    /// All deployed models.
    pub fn deployed_models(&self) -> Result<Vec<DeployedRecord>> {
        self.read_all(EntryKind::Deployed)
    }

    /// One deployed model.
    pub fn deployed(&self, name: &str) -> Result<DeployedRecord> {
        self.read_record(EntryKind::Deployed, name)
    }

    /// Delete a deployed model from its Ollama server, then forget it. When the server cannot be
    /// reached the record stays, unless `forget`. A model the server no longer has is forgotten.
    pub async fn remove_deployed(&self, name: &str, forget: bool) -> Result<DeployedRecord> {
        let record = self.deployed(name)?;
        let outcome = async {
            let client = Client::new(ClientOptions::with_host(OllamaHost::parse(&record.host)))?;
            client.delete(&record.ollama_model).await
        }
        .await;
        match outcome {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            // The user chose to forget the record although the server could not confirm.
            Err(_) if forget => {}
            Err(e) => return Err(e.into()),
        }
        let _lock = self.lock()?;
        self.storage().remove(EntryKind::Deployed, name)?;
        Ok(record)
    }

    /// Ask each deployed model's server whether it still has the model.
    pub async fn check_deployed(&self) -> Result<Vec<(DeployedRecord, DeployedStatus)>> {
        let mut out = Vec::new();
        for record in self.deployed_models()? {
            let status =
                match Client::new(ClientOptions::with_host(OllamaHost::parse(&record.host))) {
                    Err(_) => DeployedStatus::Unreachable,
                    Ok(client) => match client.show(&record.ollama_model).await {
                        Ok(_) => DeployedStatus::Present,
                        Err(e) if e.is_not_found() => DeployedStatus::Missing,
                        Err(_) => DeployedStatus::Unreachable,
                    },
                };
            out.push((record, status));
        }
        Ok(out)
    }
}

/// The create request's template fields written back as Modelfile text, for the record.
fn modelfile_text(request: &loraforge_ollama_client::CreateRequest) -> String {
    Modelfile::from_create_request(request).to_string()
}

fn general_metadata(
    card: &loraforge_model_card::ModelCard,
    saved: &str,
) -> loraforge_export::GeneralMetadata {
    loraforge_export::GeneralMetadata {
        name: Some(saved.to_string()),
        finetune: card.train_name.clone(),
        license: card.license.clone(),
        base_models: card
            .adapter
            .as_ref()
            .and_then(|a| a.base_model_name_or_path.clone())
            .map(|name| {
                vec![loraforge_export::BaseModel {
                    name: Some(name),
                    ..Default::default()
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}
