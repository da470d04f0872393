//! Saved models: merging a trained model into its base as a job (queue, run, publish), listing,
//! removing.

use std::path::PathBuf;
use std::time::Instant;

use chrono::Utc;
use loraforge_naming::{SavedName, UuidPrefix};
use loraforge_progress::Reporter;

use crate::cards;
use crate::error::{RegistryError, Result};
use crate::fs::write_atomic;
use crate::jobs::{process_start_time, Job, JobKind, JobReporter, JobState};
use crate::records::{FileRecord, SavedRecord};
use crate::stamp;
use crate::storage::EntryKind;
use crate::store::{fresh_uuid, to_json, Registry, ENTRY_FILE};
use crate::trained::ADAPTER_PART;

impl Registry {
    /// Record a save job for a trained model; the saved model's name is reserved now (a fresh
    /// UUID whose prefix no saved model or pending save uses). Run it with
    /// [`run_job`](Self::run_job), here or in a worker process.
    pub fn queue_save(&self, trained: &str, dtype: &str) -> Result<Job> {
        let _lock = self.lock()?;
        let record = self.trained(trained)?;
        if !record.adapter_present {
            return Err(RegistryError::AdapterRemoved {
                name: trained.to_string(),
            });
        }
        self.base(record.base.as_str())
            .map_err(|_| RegistryError::BaseMissing {
                name: record.base.to_string(),
                trained: trained.to_string(),
            })?;
        let mut existing: Vec<uuid::Uuid> = self.saved_models()?.iter().map(|s| s.uuid).collect();
        for job in self.jobs()? {
            if let JobKind::Save { saving_uuid, .. } = &job.kind {
                if !job.state.is_final() {
                    existing.push(*saving_uuid);
                }
            }
        }
        let saving_uuid = fresh_uuid(&existing)?;
        let saved = SavedName::new(record.name.clone(), UuidPrefix::of(&saving_uuid));
        let job = Job::queued(JobKind::Save {
            trained: record.name,
            saved,
            saving_uuid,
            dtype: dtype.to_string(),
        });
        self.jobs_store().save(&job)?;
        Ok(job)
    }

    /// Run a queued job in this process and publish its result. Progress goes to the job record
    /// and to `reporter`. A job that is not queued any more is returned as it is.
    pub fn run_job(&self, id: &str, reporter: &dyn Reporter) -> Result<Job> {
        let jobs = self.jobs_store();
        let mut job = {
            let _lock = self.lock()?;
            let mut job = jobs.find(id)?;
            if job.state != JobState::Queued {
                return Ok(job);
            }
            let pid = std::process::id();
            job.state = JobState::Running;
            job.pid = Some(pid);
            job.pid_start = process_start_time(pid);
            job.started = Some(Utc::now());
            jobs.save(&job)?;
            reporter.checkpoint("job-running");
            job
        };
        let owner = job.staging_owner();
        let job_reporter = JobReporter::new(jobs.clone(), job.clone());
        let both = Tee(&job_reporter, reporter);
        let outcome = match &job.kind {
            JobKind::Save { saved, .. } => self.perform_save(&job, &owner, &both).map(|staged| {
                both.checkpoint("save-staged");
                JobOutput::Staged(staged, saved.to_string())
            }),
            JobKind::Deploy { .. } => self
                .perform_deploy(&job, &both)
                .map(|record| JobOutput::Published(record.name.to_string())),
        };
        let _lock = self.lock()?;
        let current = jobs.load(&job.id)?;
        job.progress = current.progress;
        job.finished = Some(Utc::now());
        match outcome {
            // Still running: nobody cancelled it meanwhile.
            Ok(JobOutput::Staged(staged, saved)) if current.state == JobState::Running => {
                match self.storage().publish(&staged, EntryKind::Saved, &saved) {
                    Ok(()) => {
                        reporter.checkpoint("save-published");
                        job.state = JobState::Succeeded;
                        job.result = Some(saved);
                    }
                    Err(e) => {
                        job.state = JobState::Failed;
                        job.error = Some(crate::error::chain_text(&e));
                    }
                }
            }
            // A deployment is recorded by the deploy itself, once Ollama confirms the model.
            Ok(JobOutput::Published(name)) if current.state == JobState::Running => {
                job.state = JobState::Succeeded;
                job.result = Some(name);
            }
            Ok(_) => job.state = current.state,
            Err(e) => {
                job.state = JobState::Failed;
                job.error = Some(crate::error::chain_text(&e));
            }
        }
        if job.state != JobState::Succeeded {
            self.storage().discard_staged(&owner)?;
        }
        jobs.save(&job)?;
        match job.state {
            JobState::Failed => Err(RegistryError::JobFailed {
                id: job.id.clone(),
                message: job.error.clone().unwrap_or_default(),
            }),
            _ => Ok(job),
        }
    }

    /// Merge the job's trained model into its base in the job's staging folder; returns the
    /// folder, complete with record and card.
    fn perform_save(&self, job: &Job, owner: &str, reporter: &dyn Reporter) -> Result<PathBuf> {
        let JobKind::Save {
            trained,
            saved,
            saving_uuid,
            dtype,
        } = &job.kind
        else {
            return Err(RegistryError::JobFailed {
                id: job.id.clone(),
                message: format!("not a save job: {}", job.kind.describe()),
            });
        };
        let trained_name = trained.to_string();
        let trained_record = self.trained(&trained_name)?;
        let base_record = self.base(trained_record.base.as_str())?;
        let trained_dir = self
            .storage()
            .local_dir(EntryKind::Trained, &trained_name)?;
        let adapter_dir = trained_dir.join(ADAPTER_PART);
        if !trained_record.adapter_present || !adapter_dir.is_dir() {
            return Err(RegistryError::AdapterRemoved { name: trained_name });
        }
        let base_dir = self.base_model_dir(&base_record)?;
        if !base_dir.is_dir() {
            return Err(RegistryError::BaseFolderGone {
                name: base_record.technical_name.to_string(),
                path: base_dir,
            });
        }
        let staged = self.storage().stage(owner)?;
        let started = Instant::now();
        let options = loraforge_adapter_merge::MergeOptions {
            dtype: dtype.parse::<loraforge_adapter_merge::OutputDtype>()?,
            // the record keeps every file's SHA-256: exports check the files against it
            sha256: true,
            ..loraforge_adapter_merge::MergeOptions::new(
                &base_dir,
                &adapter_dir,
                staged.join("model"),
            )
        };
        let report = loraforge_adapter_merge::merge(&options, reporter)?;
        let record = SavedRecord {
            name: saved.clone(),
            uuid: *saving_uuid,
            trained: trained.clone(),
            trained_uuid: trained_record.uuid,
            base: base_record.technical_name.clone(),
            dtype: report.dtype.safetensors_name().to_ascii_lowercase(),
            files: report
                .output_files
                .iter()
                .map(|(path, bytes, sha256)| FileRecord {
                    path: path.to_string_lossy().into_owned(),
                    bytes: *bytes,
                    sha256: sha256.clone().unwrap_or_default(),
                    // publishing renames the folder, which keeps the time
                    modified_ns: stamp::stamp(&staged.join("model").join(path)),
                })
                .collect(),
            job: Some(job.id.clone()),
            merge_seconds: started.elapsed().as_secs_f64(),
            created: Utc::now(),
        };
        let card = cards::saved_card(&record, &trained_dir)?;
        // The card goes last: an entry folder with a card is complete.
        write_atomic(&staged.join(ENTRY_FILE), &to_json(&record))?;
        card.write_to_dir(&staged)?;
        Ok(staged)
    }

    /// All saved models, sorted by name.
    pub fn saved_models(&self) -> Result<Vec<SavedRecord>> {
        self.read_all(EntryKind::Saved)
    }

    /// One saved model.
    pub fn saved(&self, name: &str) -> Result<SavedRecord> {
        self.read_record(EntryKind::Saved, name)
    }

    /// The local folder holding a saved model's Hugging Face files.
    pub fn saved_model_dir(&self, name: &str) -> Result<PathBuf> {
        self.saved(name)?;
        Ok(self.saved_dir(name)?.join("model"))
    }

    /// The local folder of a saved entry.
    pub(crate) fn saved_dir(&self, name: &str) -> Result<PathBuf> {
        self.storage().local_dir(EntryKind::Saved, name)
    }

    /// Remove a saved model's folder. Deployments made from it stay.
    pub fn remove_saved(&self, name: &str) -> Result<SavedRecord> {
        let _lock = self.lock()?;
        let record = self.saved(name)?;
        self.storage().remove(EntryKind::Saved, name)?;
        Ok(record)
    }
}

/// What a job's work left: a staged folder to publish under the lock (and the entry name), or
/// an entry already published by the operation itself.
enum JobOutput {
    Staged(PathBuf, String),
    Published(String),
}

/// Forward progress to two reporters.
struct Tee<'a>(&'a dyn Reporter, &'a dyn Reporter);

impl Reporter for Tee<'_> {
    fn begin(&self, phase: &str, total: Option<u64>) {
        self.0.begin(phase, total);
        self.1.begin(phase, total);
    }
    fn advance(&self, units: u64) {
        self.0.advance(units);
        self.1.advance(units);
    }
    fn message(&self, text: &str) {
        self.0.message(text);
        self.1.message(text);
    }
    fn finish(&self) {
        self.0.finish();
        self.1.finish();
    }
    fn checkpoint(&self, point: &str) {
        self.0.checkpoint(point);
        self.1.checkpoint(point);
    }
}
