//! Deploying a saved model to an Ollama server (export, upload, create, record), listing,
//! checking and removing deployments.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use loraforge_naming::{DeployedName, QuantType, UuidPrefix};
use loraforge_ollama_client::{Client, ClientOptions, DeployRequest, Modelfile, OllamaHost};
use loraforge_progress::Reporter;
use serde::{Deserialize, Serialize};

use crate::base::TEMPLATE_FILE;
use crate::cards;
use crate::error::{RegistryError, Result};
use crate::export::ExportPlan;
use crate::fs::write_atomic;
use crate::jobs::{Job, JobKind};
use crate::records::DeployedRecord;
use crate::storage::EntryKind;
use crate::store::{fresh_uuid, owner_tag, to_json, Registry, ENTRY_FILE};

/// The staging owner prefix of a deployment in progress (see [`Registry::recover`]).
pub(crate) const PENDING_DEPLOY: &str = "deploy";

/// The note on a deployment recorded by recovery rather than by the deploying process.
pub(crate) const UNCONFIRMED_NOTE: &str = "unconfirmed: the deploying process stopped after it \
     started uploading and before Ollama confirmed the model; `loraforge deployed list --check` \
     shows whether the server has it, `loraforge deployed rm` removes it either way";

/// How to deploy.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// The Ollama server (the caller resolves `--host` / `OLLAMA_HOST`; default
    /// `127.0.0.1:11434`).
    pub host: OllamaHost,
    /// Upload F16 and let Ollama quantize, instead of loraforge's quantizer.
    pub server_quantize: bool,
    /// Generate one token after creating the model; when that fails, the model is deleted
    /// from the server again.
    pub smoke_test: bool,
    /// An upload fails when the server accepts no bytes for this long; `None` = the client's
    /// default (120 s). Never a limit on the upload's total time.
    pub stall_timeout: Option<std::time::Duration>,
}

impl DeployOptions {
    /// The client settings for these options.
    pub fn client_options(&self) -> ClientOptions {
        let mut options = ClientOptions::with_host(self.host.clone());
        if let Some(stall) = self.stall_timeout {
            options.stall_timeout = stall;
        }
        options
    }
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

impl Registry {
    /// Record a deploy job for a saved model (run it with [`run_job`](Self::run_job), here or in
    /// a worker process). The deployed name is drawn when the job runs, as [`deploy`](Self::deploy)
    /// does.
    pub fn queue_deploy(
        &self,
        saved: &str,
        quant: QuantType,
        options: &DeployOptions,
    ) -> Result<Job> {
        let _lock = self.lock()?;
        let record = self.saved(saved)?;
        let job = Job::queued(JobKind::Deploy {
            saved: record.name,
            quant,
            host: options.host.to_string(),
            server_quantize: options.server_quantize,
            smoke_test: options.smoke_test,
        });
        self.jobs_store().save(&job)?;
        Ok(job)
    }

    /// A deploy job's work: [`deploy`](Self::deploy) on a runtime of its own (the job runs on a
    /// plain thread or in a worker process).
    pub(crate) fn perform_deploy(
        &self,
        job: &Job,
        reporter: &dyn Reporter,
    ) -> Result<DeployedRecord> {
        let JobKind::Deploy {
            saved,
            quant,
            host,
            server_quantize,
            smoke_test,
        } = &job.kind
        else {
            return Err(RegistryError::JobFailed {
                id: job.id.clone(),
                message: format!("not a deploy job: {}", job.kind.describe()),
            });
        };
        let options = DeployOptions {
            host: OllamaHost::parse(host),
            server_quantize: *server_quantize,
            smoke_test: *smoke_test,
            // jobs do not record a stall window yet: the client's default applies
            stall_timeout: None,
        };
        let location = PathBuf::from(self.location());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RegistryError::io(
                "cannot start the async runtime for the deploy job in",
                &location,
            ))?;
        runtime.block_on(self.deploy_for(
            &saved.to_string(),
            *quant,
            &options,
            Some(&job.id),
            reporter,
        ))
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
        self.deploy_for(saved, quant, options, None, reporter).await
    }

    /// [`deploy`](Self::deploy), recording the job it runs for (if any) in the deployed record.
    async fn deploy_for(
        &self,
        saved: &str,
        quant: QuantType,
        options: &DeployOptions,
        job: Option<&str>,
        reporter: &dyn Reporter,
    ) -> Result<DeployedRecord> {
        let record = self.saved(saved)?;
        let client = Client::new(options.client_options())?;
        let host_text = client.base_url().to_string();
        // Cheap checks first: the template parses, the name is one Ollama accepts, the server answers.
        let template_text = self.base_template(record.base.as_str()).unwrap_or(None);
        let modelfile = match &template_text {
            Some(text) => Modelfile::parse(text).map_err(|source| RegistryError::BadTemplate {
                path: PathBuf::from(self.location())
                    .join(EntryKind::Base.as_str())
                    .join(record.base.as_str())
                    .join(TEMPLATE_FILE),
                source,
            })?,
            None => Modelfile::default(),
        };
        let existing: Vec<uuid::Uuid> = self.deployed_models()?.iter().map(|d| d.uuid).collect();
        let uuid = fresh_uuid(&existing)?;
        let deployed_name = DeployedName::new(record.name.clone(), UuidPrefix::of(&uuid), quant);
        let name = deployed_name.to_string();
        loraforge_ollama_client::validate_model_name(&name).map_err(|source| {
            RegistryError::OllamaName {
                name: name.clone(),
                source,
            }
        })?;
        // Fail before a long export when the server cannot take the JSON create at all.
        let version = client.server_version().await?;
        client.require_version(
            &version,
            loraforge_ollama_client::MIN_JSON_CREATE,
            "creating a model from an uploaded GGUF",
        )?;

        let server_quantize = quant.ollama_quantize().filter(|_| options.server_quantize);
        let plan = match server_quantize {
            Some(_) => ExportPlan::f16_for_server(),
            None => ExportPlan::for_quant(quant, &record.dtype),
        };
        let exported = self.export(&record, &plan, reporter)?;
        crate::finite::check_finite(&exported.path)?;
        let stops = loraforge_hf_model::stop_tokens(&self.saved_model_dir(saved)?);
        let digest = format!("sha256:{}", exported.sha256);
        let saved_dir = self.saved_dir(saved)?;
        let started = Instant::now();
        let mut deployed = DeployedRecord {
            name: deployed_name,
            uuid,
            saved: record.name.clone(),
            host: host_text,
            ollama_model: name.clone(),
            digest: digest.clone(),
            model_digest: None,
            model_layer_digest: None,
            server_version: Some(version.0.clone()),
            notes: vec![UNCONFIRMED_NOTE.to_string()],
            quant,
            server_quantize: server_quantize.is_some(),
            modelfile: modelfile.to_string(),
            export_seconds: exported.seconds,
            deploy_seconds: 0.0,
            job: job.map(str::to_string),
            created: Utc::now(),
        };
        // The record is staged before Ollama is asked for anything: if this process dies after
        // the server created the model but before the record is published, recovery publishes
        // this one, marked unconfirmed, instead of leaving a model nobody knows about.
        let owner = owner_tag(PENDING_DEPLOY);
        self.in_staging(&owner, |staged| {
            let card = cards::deployed_card(&deployed, &saved_dir, exported.bytes)?;
            write_atomic(&staged.join(ENTRY_FILE), &to_json(&deployed))?;
            Ok(card.write_to_dir(staged)?)
        })?;
        let discard = |error: RegistryError| {
            let _ = self.storage().discard_staged(&owner);
            error
        };
        let outcome = loraforge_ollama_client::deploy(
            &client,
            &DeployRequest {
                model_name: &name,
                gguf_path: &exported.path,
                known_digest: Some(&digest),
                modelfile: &modelfile,
                extra_stop: &stops,
                quantize: server_quantize,
                source_type: Some(&exported.file_type),
            },
            reporter,
        )
        .await
        .map_err(|e| discard(e.into()))?;
        reporter.checkpoint("deploy-created");
        if options.smoke_test {
            let mut request = loraforge_ollama_client::GenerateRequest {
                model: name.clone(),
                prompt: "Hello".into(),
                ..Default::default()
            };
            request
                .options
                .insert("num_predict".into(), serde_json::Value::from(1));
            if let Err(source) = client.generate(&request).await {
                let cleanup = match client.delete(&name).await {
                    Ok(()) => "the model was deleted from the server again".to_string(),
                    Err(e) if e.is_not_found() => "the server no longer has the model".to_string(),
                    Err(e) => format!(
                        "the model was LEFT on the server because deleting it failed ({e}); \
                         remove it with `ollama rm {name}`"
                    ),
                };
                return Err(discard(RegistryError::SmokeTestFailed {
                    model: name,
                    cleanup,
                    source: Box::new(source),
                }));
            }
        }
        deployed.ollama_model = outcome.model.clone();
        deployed.digest = outcome.upload_digest.clone();
        deployed.model_digest = outcome.model_digest.clone();
        deployed.model_layer_digest = outcome.model_layer_digest.clone();
        deployed.server_version = Some(outcome.server_version.clone());
        deployed.notes = outcome.notes.clone();
        deployed.modelfile = modelfile_text(&outcome.request);
        deployed.deploy_seconds = started.elapsed().as_secs_f64();
        deployed.created = Utc::now();
        let publish = || -> Result<()> {
            let staged = self
                .storage()
                .staged_dir(&owner)?
                .ok_or_else(|| RegistryError::Io {
                    action: "cannot find the staged deployment",
                    path: PathBuf::from(self.location()).join("tmp").join(&owner),
                    source: std::io::ErrorKind::NotFound.into(),
                })?;
            let card = cards::deployed_card(&deployed, &saved_dir, exported.bytes)?;
            write_atomic(&staged.join(ENTRY_FILE), &to_json(&deployed))?;
            card.write_to_dir(&staged)?;
            let _lock = self.lock()?;
            self.storage().publish(&staged, EntryKind::Deployed, &name)
        };
        publish().map_err(discard)?;
        reporter.checkpoint("deploy-published");
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
