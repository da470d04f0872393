//! Persisted job records for long work (saves and deployments), and the checks that find dead jobs.
//!
//! A job is a record kept by the storage (`<home>/jobs/<id>.json` on disk), rewritten atomically
//! as the job moves `queued → running → succeeded | failed | cancelled`, plus a local log. The
//! process that queues a job records itself as the job's owner (or hands the job to the worker
//! process it starts); the process doing the work records its pid and start time. So any later
//! registry operation can tell a live job from one no process can finish: a running job whose
//! worker died, a queued job whose owner is gone (after [`QUEUE_GRACE`]). Recovery then looks at
//! what the store holds: a job whose result was published before its process died succeeded.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a queued job whose owner is gone may stay queued before recovery fails it: the
/// window in which a launching process hands the job to a worker that has not recorded its own
/// pid yet.
pub const QUEUE_GRACE: Duration = Duration::from_secs(30);

use chrono::{DateTime, Utc};
use loraforge_naming::{QuantType, SavedName, TrainedName};
use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};
use crate::storage::Storage;
use crate::store::Registry;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Recorded, not started.
    Queued,
    /// A process is working on it.
    Running,
    /// Finished; its result is published.
    Succeeded,
    /// Finished with an error (or its process died).
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobState {
    /// True once the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JobKind {
    /// Merge a trained model into a new saved model.
    Save {
        /// The trained model.
        trained: TrainedName,
        /// The saved model name reserved for the result.
        saved: SavedName,
        /// The saving UUID (its first 4 hex are in `saved`).
        saving_uuid: uuid::Uuid,
        /// Requested output dtype (`auto`, `bf16`, `f16`, `f32`).
        dtype: String,
    },
    /// Export a saved model to GGUF and deploy it to Ollama.
    Deploy {
        /// The saved model.
        saved: SavedName,
        /// The quantization.
        quant: QuantType,
        /// The Ollama server, resolved by the caller when the job was queued.
        host: String,
        /// Upload F16 and let Ollama quantize.
        #[serde(default)]
        server_quantize: bool,
        /// Generate one token after creating the model.
        #[serde(default)]
        smoke_test: bool,
    },
}

impl JobKind {
    /// The entry the job works from (the trained model of a save, the saved model of a deploy).
    pub fn source(&self) -> String {
        match self {
            JobKind::Save { trained, .. } => trained.to_string(),
            JobKind::Deploy { saved, .. } => saved.to_string(),
        }
    }

    /// One line saying what the job does, e.g. `save A -> B` or `deploy A (q4_K_M)`.
    pub fn describe(&self) -> String {
        match self {
            JobKind::Save { trained, saved, .. } => format!("save {trained} -> {saved}"),
            JobKind::Deploy { saved, quant, .. } => format!("deploy {saved} ({quant})"),
        }
    }
}

/// Progress as last reported by the worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    /// Current phase (`merge`, …).
    pub phase: String,
    /// Units done in the phase.
    pub done: u64,
    /// Units in the phase, when known.
    pub total: Option<u64>,
    /// Last status line.
    pub message: String,
}

/// A persisted job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Job id (a UUID).
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// When it was recorded.
    pub created: DateTime<Utc>,
    /// When work began.
    pub started: Option<DateTime<Utc>>,
    /// When it reached a final state.
    pub finished: Option<DateTime<Utc>>,
    /// The worker's pid while running.
    pub pid: Option<u32>,
    /// The worker's process start time (jiffies since boot), to tell pid reuse apart.
    pub pid_start: Option<u64>,
    /// The process that will start the job while it is queued: the one that queued it, or the
    /// worker it handed the job to ([`Registry::hand_over_job`]). `None` in older records.
    #[serde(default)]
    pub owner_pid: Option<u32>,
    /// The owner's process start time, to tell pid reuse apart.
    #[serde(default)]
    pub owner_start: Option<u64>,
    /// Latest progress.
    pub progress: JobProgress,
    /// The error of a failed job.
    pub error: Option<String>,
    /// The name of what the job produced.
    pub result: Option<String>,
}

impl Job {
    /// The owner name of the job's staging folder.
    pub fn staging_owner(&self) -> String {
        format!("job-{}", self.id)
    }

    /// A new queued job with a fresh id, owned by this process.
    pub fn queued(kind: JobKind) -> Job {
        let me = std::process::id();
        Job {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            state: JobState::Queued,
            created: Utc::now(),
            started: None,
            finished: None,
            pid: None,
            pid_start: None,
            owner_pid: Some(me),
            owner_start: process_start_time(me),
            progress: JobProgress::default(),
            error: None,
            result: None,
        }
    }

    /// The job's duration so far (or in total once final), in seconds.
    pub fn elapsed_secs(&self) -> Option<f64> {
        let start = self.started?;
        let end = self.finished.unwrap_or_else(Utc::now);
        Some((end - start).num_milliseconds() as f64 / 1000.0)
    }
}

/// Job records, kept by the storage.
#[derive(Clone)]
pub(crate) struct JobStore {
    storage: Arc<dyn Storage>,
}

impl JobStore {
    /// Job records in `storage`.
    pub(crate) fn new(storage: Arc<dyn Storage>) -> JobStore {
        JobStore { storage }
    }

    fn path(&self, id: &str) -> PathBuf {
        PathBuf::from(self.storage.location())
            .join("jobs")
            .join(format!("{id}.json"))
    }

    /// The local log file of a job.
    pub(crate) fn log_path(&self, id: &str) -> Result<PathBuf> {
        self.storage.job_log(id)
    }

    /// Persist a job record.
    pub(crate) fn save(&self, job: &Job) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(job).map_err(|source| RegistryError::CorruptRecord {
                path: self.path(&job.id),
                source,
            })?;
        self.storage.write_job(&job.id, &bytes)
    }

    /// Load one job.
    pub(crate) fn load(&self, id: &str) -> Result<Job> {
        let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        let not_found = || RegistryError::JobNotFound { id: id.to_string() };
        if !valid {
            return Err(not_found());
        }
        let bytes = self.storage.read_job(id)?.ok_or_else(not_found)?;
        serde_json::from_slice(&bytes).map_err(|source| RegistryError::CorruptRecord {
            path: self.path(id),
            source,
        })
    }

    /// Every readable job, oldest first. Records that cannot be read (corrupt JSON, a stray
    /// `.json` file) are skipped: one bad record must not stop the store.
    pub(crate) fn list(&self) -> Result<Vec<Job>> {
        Ok(self.scan()?.0)
    }

    /// Every readable job, oldest first, and the records that could not be read.
    pub(crate) fn scan(&self) -> Result<(Vec<Job>, Vec<UnreadableRecord>)> {
        let mut jobs = Vec::new();
        let mut unreadable = Vec::new();
        for id in self.storage.job_ids()? {
            match self.load(&id) {
                Ok(job) if job.id == id => jobs.push(job),
                Ok(job) => unreadable.push(UnreadableRecord {
                    path: self.path(&id),
                    reason: format!("it holds job {}, not job {id}", job.id),
                }),
                Err(RegistryError::JobNotFound { .. }) => unreadable.push(UnreadableRecord {
                    path: self.path(&id),
                    reason: "not a job record: its name is not a job id".into(),
                }),
                Err(error) => unreadable.push(UnreadableRecord {
                    path: self.path(&id),
                    reason: crate::error::chain_text(&error),
                }),
            }
        }
        jobs.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        unreadable.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((jobs, unreadable))
    }

    /// Find a job by full id or unique prefix.
    pub(crate) fn find(&self, id_or_prefix: &str) -> Result<Job> {
        if let Ok(job) = self.load(id_or_prefix) {
            return Ok(job);
        }
        let matches: Vec<Job> = self
            .list()?
            .into_iter()
            .filter(|j| !id_or_prefix.is_empty() && j.id.starts_with(id_or_prefix))
            .collect();
        match <[Job; 1]>::try_from(matches) {
            Ok([job]) => Ok(job),
            Err(_) => Err(RegistryError::JobNotFound {
                id: id_or_prefix.to_string(),
            }),
        }
    }
}

/// The start time of a live process (field 22 of `/proc/<pid>/stat`), `None` if it is gone.
pub(crate) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state); field 22 is index 19 here.
    let state = fields.first()?;
    if *state == "Z" || *state == "X" {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process `pid` (started at `start`, when known) is still running.
fn process_alive(pid: Option<u32>, start: Option<u64>) -> bool {
    match (pid, start) {
        (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
        (Some(pid), None) => process_start_time(pid).is_some(),
        _ => false,
    }
}

/// Whether the process recorded for a job is still the one running.
pub(crate) fn job_process_alive(job: &Job) -> bool {
    process_alive(job.pid, job.pid_start)
}

/// Why no process can finish `job` any more, or `None` while one can: a running job whose
/// worker died; a queued job whose owner is gone, once [`QUEUE_GRACE`] has passed since it was
/// queued (a worker may be about to record itself).
pub(crate) fn orphaned(job: &Job, now: DateTime<Utc>) -> Option<String> {
    match job.state {
        JobState::Running if !job_process_alive(job) => Some(format!(
            "the worker process (pid {}) died before finishing",
            job.pid.unwrap_or(0)
        )),
        JobState::Queued if !process_alive(job.owner_pid, job.owner_start) => {
            let grace = chrono::Duration::from_std(QUEUE_GRACE).unwrap_or(chrono::Duration::MAX);
            if now - job.created < grace {
                return None;
            }
            Some(match job.owner_pid {
                Some(pid) => format!(
                    "no worker ever started it: the process that queued it (pid {pid}) is gone"
                ),
                None => "no worker ever started it and the process that queued it is unknown \
                         (a record from an older loraforge)"
                    .to_string(),
            })
        }
        _ => None,
    }
}

/// A record in the store that could not be read; lists and recovery skip it,
/// [`Registry::doctor`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableRecord {
    /// The record file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: String,
}

/// Ask a job's process to stop (SIGTERM).
fn terminate(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid is guarded by the caller
    // checking the process start time first.
    unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
}

/// A [`loraforge_progress::Reporter`] that writes progress into the job record, at most a few
/// times per second, and appends status lines to the job log.
pub(crate) struct JobReporter {
    store: JobStore,
    state: Mutex<(Job, Instant)>,
    log: Option<Mutex<std::fs::File>>,
}

impl JobReporter {
    /// Report into `job` (already persisted in `store`).
    pub(crate) fn new(store: JobStore, job: Job) -> JobReporter {
        let log = store
            .log_path(&job.id)
            .ok()
            .and_then(|path| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .ok()
            })
            .map(Mutex::new);
        JobReporter {
            store,
            state: Mutex::new((job, Instant::now())),
            log,
        }
    }

    fn update(&self, force: bool, change: impl FnOnce(&mut JobProgress)) {
        let Ok(mut guard) = self.state.lock() else {
            return;
        };
        change(&mut guard.0.progress);
        if force || guard.1.elapsed() >= Duration::from_millis(300) {
            guard.1 = Instant::now();
            // Progress is best effort: a failed write must not fail the work.
            let _ = self.store.save(&guard.0);
        }
    }

    fn log_line(&self, line: &str) {
        if let Some(log) = &self.log {
            if let Ok(mut file) = log.lock() {
                use std::io::Write;
                let _ = writeln!(file, "{} {line}", Utc::now().format("%H:%M:%S"));
            }
        }
    }
}

impl loraforge_progress::Reporter for JobReporter {
    fn begin(&self, phase: &str, total: Option<u64>) {
        self.log_line(&format!("begin {phase}"));
        self.update(true, |p| {
            p.phase = phase.to_string();
            p.done = 0;
            p.total = total;
        });
    }
    fn advance(&self, units: u64) {
        self.update(false, |p| p.done = p.done.saturating_add(units));
    }
    fn message(&self, text: &str) {
        self.log_line(text);
        self.update(false, |p| p.message = text.to_string());
    }
    fn finish(&self) {
        self.update(true, |p| {
            if let Some(total) = p.total {
                p.done = total;
            }
        });
    }
}

impl Registry {
    /// All readable jobs, oldest first (unreadable records are skipped; see
    /// [`unreadable_jobs`](Self::unreadable_jobs)).
    pub fn jobs(&self) -> Result<Vec<Job>> {
        self.jobs_store().list()
    }

    /// The job records that could not be read (skipped by [`jobs`](Self::jobs)).
    pub fn unreadable_jobs(&self) -> Result<Vec<UnreadableRecord>> {
        Ok(self.jobs_store().scan()?.1)
    }

    /// Hand a queued job to the worker process `pid` that will run it: the job is the worker's
    /// from now on, so the process that queued it may exit.
    pub fn hand_over_job(&self, id: &str, pid: u32) -> Result<Job> {
        let _lock = self.lock()?;
        let mut job = self.jobs_store().find(id)?;
        if job.state == JobState::Queued {
            job.owner_pid = Some(pid);
            job.owner_start = process_start_time(pid);
            self.jobs_store().save(&job)?;
        }
        Ok(job)
    }

    /// One job, by id or unique id prefix.
    pub fn job(&self, id: &str) -> Result<Job> {
        self.jobs_store().find(id)
    }

    /// The local log file of a job (its worker's output goes there).
    pub fn job_log(&self, id: &str) -> Result<PathBuf> {
        let job = self.jobs_store().find(id)?;
        self.jobs_store().log_path(&job.id)
    }

    /// Record that starting a job's worker failed.
    pub fn fail_job(&self, id: &str, message: &str) -> Result<Job> {
        let _lock = self.lock()?;
        let mut job = self.jobs_store().find(id)?;
        if !job.state.is_final() {
            job.state = JobState::Failed;
            job.error = Some(message.to_string());
            job.finished = Some(Utc::now());
            self.jobs_store().save(&job)?;
        }
        Ok(job)
    }

    /// Stop a job: a queued job never starts; a running one is terminated (SIGTERM, then up to
    /// 10 s for it to exit) and its partial output removed. A job running on a thread of this
    /// very process is refused ([`RegistryError::JobRunsInThisProcess`]) rather than stopping
    /// the caller with it.
    pub fn cancel_job(&self, id: &str) -> Result<Job> {
        let _lock = self.lock()?;
        let mut job = self.jobs_store().find(id)?;
        if job.state.is_final() {
            return Ok(job);
        }
        if job.state == JobState::Running && job_process_alive(&job) {
            if let Some(pid) = job.pid {
                if pid == std::process::id() {
                    return Err(RegistryError::JobRunsInThisProcess {
                        id: job.id.clone(),
                        pid,
                    });
                }
                terminate(pid);
                let deadline = Instant::now() + Duration::from_secs(10);
                while job_process_alive(&job) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        job.state = JobState::Cancelled;
        job.finished = Some(Utc::now());
        self.storage().discard_staged(&job.staging_owner())?;
        self.jobs_store().save(&job)?;
        Ok(job)
    }

    /// Wait until a job reaches a final state (checking meanwhile that some process can still
    /// finish it: a dead worker or a gone owner ends the wait through recovery), or until
    /// `timeout`; `on_poll` sees the job at every poll.
    pub fn wait_job(
        &self,
        id: &str,
        timeout: Option<Duration>,
        on_poll: &mut dyn FnMut(&Job),
    ) -> Result<Job> {
        let start = Instant::now();
        loop {
            let job = self.jobs_store().find(id)?;
            on_poll(&job);
            if job.state.is_final() {
                return Ok(job);
            }
            if orphaned(&job, Utc::now()).is_some() {
                // No process can finish it: recovery settles it (failed, or succeeded when its
                // result was published before its process died).
                self.recover()?;
                continue;
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Ok(job);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_dead_pid_is_not() {
        let me = std::process::id();
        let start = process_start_time(me).unwrap();
        let job = Job {
            id: "x".into(),
            kind: JobKind::Save {
                trained: "tiny_t_20250101_abcd".parse().unwrap(),
                saved: "tiny_t_20250101_abcd_s_0123".parse().unwrap(),
                saving_uuid: uuid::Uuid::nil(),
                dtype: "auto".into(),
            },
            state: JobState::Running,
            created: Utc::now(),
            started: None,
            finished: None,
            pid: Some(me),
            pid_start: Some(start),
            owner_pid: None,
            owner_start: None,
            progress: JobProgress::default(),
            error: None,
            result: None,
        };
        assert!(job_process_alive(&job));
        let reused = Job {
            pid_start: Some(start + 1),
            ..job.clone()
        };
        assert!(
            !job_process_alive(&reused),
            "a different start time means pid reuse"
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(process_start_time(pid), None);
    }
}
