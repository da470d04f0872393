//! Every call the web UI makes into the store, in one place: the stages and their name rules,
//! listing, cards, starting save and deploy jobs, deleting, and how registry errors become HTTP
//! statuses (user errors 4xx, failures 5xx: the CLI's exit codes 2 and 1).

use std::sync::Arc;

use axum::http::StatusCode;
use loraforge_naming::{NameKind, ParsedName, QuantType, TechnicalName};
use loraforge_registry::{
    BaseRecord, DeployOptions, DeployedRecord, EntryKind, Job, JobState, Registry, RegistryError,
    SavedRecord, TrainedRecord,
};
use serde_json::Value;

use crate::error::Failure;
use crate::AppState;

/// A lifecycle stage, as it appears in addresses (`/saved/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Base,
    Trained,
    Saved,
    Deployed,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Base, Stage::Trained, Stage::Saved, Stage::Deployed];

    pub fn parse(text: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Base => "base",
            Stage::Trained => "trained",
            Stage::Saved => "saved",
            Stage::Deployed => "deployed",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Stage::Base => "Base models",
            Stage::Trained => "Trained models",
            Stage::Saved => "Saved models",
            Stage::Deployed => "Deployed models",
        }
    }

    fn kind(self) -> EntryKind {
        match self {
            Stage::Base => EntryKind::Base,
            Stage::Trained => EntryKind::Trained,
            Stage::Saved => EntryKind::Saved,
            Stage::Deployed => EntryKind::Deployed,
        }
    }

    /// The command that fills an empty list.
    pub fn empty_hint(self) -> &'static str {
        match self {
            Stage::Base => "loraforge base add ./MODEL_FOLDER --name SHORT-NAME --template FILE.Modelfile",
            Stage::Trained => "loraforge trained add ./ADAPTER_OR_TRAINER_OUTPUT --base SHORT-NAME --train-name NAME",
            Stage::Saved => "Save a trained model on the Trained page, or: loraforge trained save NAME",
            Stage::Deployed => "Deploy a saved model on the Saved page, or: loraforge saved deploy NAME --quant q4_K_M",
        }
    }

    /// What Delete does, as the product defines it; shown before OK.
    pub fn delete_semantics(self) -> &'static str {
        match self {
            Stage::Base => "Removes the base model's registration (and its copy in the store, if it was copied). It is refused while trained models use it.",
            Stage::Trained => "Removes only this trained model's adapter files. Saved models made from it stay; its model card stays for their lineage.",
            Stage::Saved => "Removes this saved model's folder. Deployments made from it stay in Ollama and on the Deployed page.",
            Stage::Deployed => "Deletes the model from its Ollama server, then forgets it here. The saved model it came from stays.",
        }
    }

    /// Check `name` with the naming rules before it is used to look anything up.
    pub fn validate_name(self, name: &str) -> Result<(), Failure> {
        let refused = |problem: String| {
            Failure::bad_request(format!(
                "'{name}' is not a valid {} model name: {problem}",
                self.as_str()
            ))
            .with_hint(format!("pick a name from the {} page", self.title()))
        };
        match self {
            Stage::Base => match TechnicalName::new(name) {
                Ok(technical) if technical.as_str() == name => Ok(()),
                Ok(technical) => Err(refused(format!(
                    "the technical name is spelled '{}'",
                    technical.as_str()
                ))),
                Err(e) => Err(refused(e.to_string())),
            },
            _ => {
                let parsed = ParsedName::parse(name).map_err(|e| refused(e.to_string()))?;
                let expected = match self {
                    Stage::Trained => NameKind::Trained,
                    Stage::Saved => NameKind::Saved,
                    _ => NameKind::Deployed,
                };
                if parsed.kind() != expected {
                    return Err(refused(
                        format!("it is a {:?} model's name", parsed.kind()).to_lowercase(),
                    ));
                }
                if parsed.to_string() != name {
                    return Err(refused(format!("the name is spelled '{parsed}'")));
                }
                Ok(())
            }
        }
    }
}

/// A job's state in words.
pub fn state_word(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// Check a job id's spelling (a UUID) before looking it up.
pub fn validate_job_id(id: &str) -> Result<(), Failure> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| {
        Failure::bad_request(format!("'{id}' is not a job id"))
            .with_hint("job ids are UUIDs; see the Jobs page")
    })
}

/// A registry error as an HTTP failure: the same user-error/failure split the CLI uses.
pub fn failure(error: &RegistryError) -> Failure {
    let status = match error {
        RegistryError::NotFound { .. } | RegistryError::JobNotFound { .. } => StatusCode::NOT_FOUND,
        RegistryError::AlreadyExists { .. }
        | RegistryError::BaseInUse { .. }
        | RegistryError::JobRunsInThisProcess { .. }
        | RegistryError::Locked { .. } => StatusCode::CONFLICT,
        RegistryError::Ollama(_) => StatusCode::BAD_GATEWAY,
        e if e.is_user_error() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // Where to look in the UI for what was not found; everything else is the registry's own hint.
    let hint = match error {
        RegistryError::NotFound { kind, .. } => Some(format!("see the list at /{kind}")),
        RegistryError::JobNotFound { .. } => Some("see the list at /jobs".to_string()),
        RegistryError::Ollama(_) => Some("is Ollama running? start it with `ollama serve`, or give the right host in the deploy dialog".to_string()),
        other => other.hint(),
    };
    Failure {
        status,
        error: loraforge_registry::chain_text(error),
        hint,
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<Value, Failure> {
    serde_json::to_value(value).map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {e}"),
        )
    })
}

/// Run blocking store work off the async workers.
pub async fn blocking<T, F>(registry: &Arc<Registry>, work: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
{
    let registry = Arc::clone(registry);
    tokio::task::spawn_blocking(move || work(&registry))
        .await
        .map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the store task stopped: {e}"),
            )
        })?
        .map_err(|e| failure(&e))
}

/// What the list pages show.
pub enum Listing {
    Base(Vec<BaseRecord>),
    Trained(Vec<TrainedRecord>),
    Saved(Vec<SavedRecord>),
    Deployed(Vec<DeployedRecord>),
}

impl Listing {
    pub fn len(&self) -> usize {
        match self {
            Listing::Base(v) => v.len(),
            Listing::Trained(v) => v.len(),
            Listing::Saved(v) => v.len(),
            Listing::Deployed(v) => v.len(),
        }
    }

    /// Exactly what `loraforge <stage> list --json` prints.
    pub fn to_json(&self) -> Result<Value, Failure> {
        match self {
            Listing::Base(v) => json(v),
            Listing::Trained(v) => json(v),
            Listing::Saved(v) => json(v),
            Listing::Deployed(v) => json(v),
        }
    }
}

/// The entries of a stage, as `loraforge <stage> list --json` prints them: live entries only,
/// unless `all` (`--all`: trained models whose adapter was removed too).
pub async fn list(registry: &Arc<Registry>, stage: Stage, all: bool) -> Result<Listing, Failure> {
    blocking(registry, move |r| {
        Ok(match stage {
            Stage::Base => Listing::Base(r.bases()?),
            Stage::Trained => Listing::Trained(
                r.trained_models()?
                    .into_iter()
                    .filter(|t| all || t.adapter_present)
                    .collect(),
            ),
            Stage::Saved => Listing::Saved(r.saved_models()?),
            Stage::Deployed => Listing::Deployed(r.deployed_models()?),
        })
    })
    .await
}

/// The number of entries of each stage and every job (for the overview).
pub async fn overview(registry: &Arc<Registry>) -> Result<([usize; 4], Vec<Job>), Failure> {
    blocking(registry, |r| {
        let counts = [
            r.bases()?.len(),
            r.trained_models()?
                .iter()
                .filter(|t| t.adapter_present)
                .count(),
            r.saved_models()?.len(),
            r.deployed_models()?.len(),
        ];
        Ok((counts, r.jobs()?))
    })
    .await
}

/// An entry's card (`show --json`) and its README text.
pub async fn card(
    registry: &Arc<Registry>,
    stage: Stage,
    name: &str,
) -> Result<(Value, String), Failure> {
    stage.validate_name(name)?;
    let name = name.to_string();
    let (card, readme) = blocking(registry, move |r| {
        Ok((
            r.card_json(stage.kind(), &name)?,
            r.card_readme(stage.kind(), &name)?,
        ))
    })
    .await?;
    let card: Value = serde_json::from_str(&card).map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the stored model card does not parse: {e}"),
        )
    })?;
    Ok((card, readme))
}

/// The entry's own record (`entry.json` as JSON), for the detail page's facts.
pub async fn record(registry: &Arc<Registry>, stage: Stage, name: &str) -> Result<Value, Failure> {
    stage.validate_name(name)?;
    let name = name.to_string();
    let value = blocking(registry, move |r| {
        Ok(match stage {
            Stage::Base => serde_json::to_value(r.base(&name)?),
            Stage::Trained => serde_json::to_value(r.trained(&name)?),
            Stage::Saved => serde_json::to_value(r.saved(&name)?),
            Stage::Deployed => serde_json::to_value(r.deployed(&name)?),
        })
    })
    .await?;
    value.map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the record: {e}"),
        )
    })
}

pub async fn jobs(registry: &Arc<Registry>) -> Result<Vec<Job>, Failure> {
    blocking(registry, |r| r.jobs()).await
}

pub async fn job(registry: &Arc<Registry>, id: &str) -> Result<Job, Failure> {
    validate_job_id(id)?;
    let id = id.to_string();
    blocking(registry, move |r| r.job(&id)).await
}

/// Cancel a job (`loraforge jobs cancel`): a queued job never starts, a running worker is stopped.
pub async fn cancel_job(registry: &Arc<Registry>, id: &str) -> Result<Job, Failure> {
    validate_job_id(id)?;
    let id = id.to_string();
    blocking(registry, move |r| r.cancel_job(&id)).await
}

pub fn jobs_json(jobs: &[Job]) -> Result<Value, Failure> {
    json(&jobs)
}

pub fn job_json(job: &Job) -> Result<Value, Failure> {
    json(job)
}

/// Queue a job with `queue`, then hand it to the runner (recording the failure if it cannot start).
async fn start_job<F>(state: &Arc<AppState>, queue: F) -> Result<Job, Failure>
where
    F: FnOnce(&Registry) -> Result<Job, RegistryError> + Send + 'static,
{
    let job = blocking(&state.registry, queue).await?;
    if let Err(e) = state.runner.start(Arc::clone(&state.registry), &job) {
        let message = format!("could not start the job: {e}");
        let id = job.id.clone();
        let recorded = message.clone();
        blocking(&state.registry, move |r| r.fail_job(&id, &recorded)).await?;
        return Err(Failure::new(StatusCode::INTERNAL_SERVER_ERROR, message));
    }
    Ok(job)
}

/// The dtypes a save offers (`auto` keeps the base model's).
pub const SAVE_DTYPES: [&str; 4] = ["auto", "bf16", "f16", "f32"];

pub async fn start_save(state: &Arc<AppState>, trained: &str, dtype: &str) -> Result<Job, Failure> {
    Stage::Trained.validate_name(trained)?;
    if !SAVE_DTYPES.contains(&dtype) {
        return Err(Failure::bad_request(format!("unknown dtype '{dtype}'"))
            .with_hint("use auto, bf16, f16 or f32"));
    }
    let (trained, dtype) = (trained.to_string(), dtype.to_string());
    start_job(state, move |r| r.queue_save(&trained, &dtype)).await
}

pub async fn start_deploy(
    state: &Arc<AppState>,
    saved: &str,
    quant: &str,
    host: Option<&str>,
) -> Result<Job, Failure> {
    Stage::Saved.validate_name(saved)?;
    let quant: QuantType = quant.parse().map_err(|e: loraforge_naming::NameError| {
        Failure::bad_request(e.to_string()).with_hint("use no_quantization, q8_0, q4_K_M or q4_K_S")
    })?;
    let host = host.map(str::trim).filter(|h| !h.is_empty());
    if let Some(host) = host {
        if host.len() > 255 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(
                Failure::bad_request(format!("'{host}' is not an Ollama host"))
                    .with_hint("give host:port or an http:// address, e.g. 127.0.0.1:11434"),
            );
        }
    }
    let options = DeployOptions {
        host: loraforge_ollama_client::OllamaHost::parse(host.unwrap_or(&state.ollama_host)),
        server_quantize: false,
        smoke_test: false,
        stall_timeout: None,
    };
    let saved = saved.to_string();
    start_job(state, move |r| r.queue_deploy(&saved, quant, &options)).await
}

/// Delete an entry with the product's semantics; answers what `<stage> rm --json` prints.
pub async fn delete(registry: &Arc<Registry>, stage: Stage, name: &str) -> Result<Value, Failure> {
    stage.validate_name(name)?;
    let name = name.to_string();
    match stage {
        Stage::Base => json(&blocking(registry, move |r| r.remove_base(&name, false)).await?),
        Stage::Trained => {
            let removed = name.clone();
            blocking(registry, move |r| r.remove_trained(&name)).await?;
            Ok(serde_json::json!({ "removed": removed, "purged": false }))
        }
        Stage::Saved => json(&blocking(registry, move |r| r.remove_saved(&name)).await?),
        Stage::Deployed => {
            let record = registry
                .remove_deployed(&name, false)
                .await
                .map_err(|e| failure(&e))?;
            json(&record)
        }
    }
}
