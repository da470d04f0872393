//! Starting background jobs: the seam between the web UI and whatever runs the work.

use std::sync::Arc;

use loraforge_registry::{Job, Registry};

/// Starts a queued job (a save or a deployment) and returns at once; the job record in the store
/// tells everyone how it goes.
///
/// The `loraforge serve` command starts a detached worker process (`loraforge jobs run ID`), so
/// a job survives the server and `jobs cancel` stops only the worker. [`ThreadRunner`] runs the
/// job on a thread of this process (tests, embedding).
pub trait JobRunner: Send + Sync + 'static {
    /// Start `job`, queued in `registry`.
    fn start(&self, registry: Arc<Registry>, job: &Job) -> std::io::Result<()>;
}

/// Runs each job on a new thread of this process.
///
/// Cancelling such a job with `loraforge jobs cancel` would stop this whole process (the job
/// records this process as its worker): use a worker process when that matters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThreadRunner;

impl JobRunner for ThreadRunner {
    fn start(&self, registry: Arc<Registry>, job: &Job) -> std::io::Result<()> {
        let id = job.id.clone();
        std::thread::Builder::new()
            .name(format!("loraforge-job-{id}"))
            .spawn(move || {
                // The outcome is in the job record; a failed job's error is recorded there too.
                let _ = registry.run_job(&id, &loraforge_progress::NoProgress);
            })
            .map(|_| ())
    }
}
