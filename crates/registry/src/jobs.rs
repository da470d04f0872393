//! Persisted job records for long work (saves), and the checks that find dead jobs.
//!
//! A job is a JSON file `<home>/jobs/<id>.json` rewritten atomically as the job moves
//! `queued → running → succeeded | failed | cancelled`, plus a log `<id>.log`. The process doing
//! the work records its pid and start time, so any later registry operation can tell a live job
//! from one whose process died and clean up its staging folder.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};
use crate::storage::write_atomic;

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
        trained: String,
        /// The saved model name reserved for the result.
        saved: String,
        /// The saving UUID (its first 4 hex are in `saved`).
        saving_uuid: uuid::Uuid,
        /// Requested output dtype (`auto`, `bf16`, `f16`, `f32`).
        dtype: String,
    },
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
    /// Latest progress.
    pub progress: JobProgress,
    /// The error of a failed job.
    pub error: Option<String>,
    /// The name of what the job produced.
    pub result: Option<String>,
}

impl Job {
    /// The job's duration so far (or in total once final), in seconds.
    pub fn elapsed_secs(&self) -> Option<f64> {
        let start = self.started?;
        let end = self.finished.unwrap_or_else(Utc::now);
        Some((end - start).num_milliseconds() as f64 / 1000.0)
    }
}

/// The folder of job records.
#[derive(Debug, Clone)]
pub struct JobStore {
    dir: PathBuf,
}

impl JobStore {
    /// Job records under `dir`.
    pub fn new(dir: PathBuf) -> JobStore {
        JobStore { dir }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The log file of a job.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.log"))
    }

    /// Persist a job record.
    pub fn save(&self, job: &Job) -> Result<()> {
        let bytes =
            serde_json::to_vec_pretty(job).map_err(|source| RegistryError::CorruptRecord {
                path: self.path(&job.id),
                source,
            })?;
        write_atomic(&self.path(&job.id), &bytes)
    }

    /// Load one job.
    pub fn load(&self, id: &str) -> Result<Job> {
        let valid = !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        let path = self.path(id);
        if !valid || !path.is_file() {
            return Err(RegistryError::JobNotFound { id: id.to_string() });
        }
        let bytes = std::fs::read(&path).map_err(RegistryError::io("cannot read", &path))?;
        serde_json::from_slice(&bytes)
            .map_err(|source| RegistryError::CorruptRecord { path, source })
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Result<Vec<Job>> {
        let read =
            std::fs::read_dir(&self.dir).map_err(RegistryError::io("cannot list", &self.dir))?;
        let mut jobs = Vec::new();
        for item in read {
            let item = item.map_err(RegistryError::io("cannot list", &self.dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                if !name.starts_with('.') {
                    jobs.push(self.load(id)?);
                }
            }
        }
        jobs.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(jobs)
    }

    /// Find a job by full id or unique prefix.
    pub fn find(&self, id_or_prefix: &str) -> Result<Job> {
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
pub fn process_start_time(pid: u32) -> Option<u64> {
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

/// Whether the process recorded for a job is still the one running.
pub fn job_process_alive(job: &Job) -> bool {
    match (job.pid, job.pid_start) {
        (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
        (Some(pid), None) => process_start_time(pid).is_some(),
        _ => false,
    }
}

/// Ask a job's process to stop (SIGTERM).
pub fn terminate(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; a stale pid is guarded by the caller
    // checking the process start time first.
    unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
}

/// Test aid: milliseconds a job worker sleeps at each progress report, so crash tests can kill a
/// worker mid-job deterministically. Unset in normal use.
pub const JOB_DELAY_ENV: &str = "LORAFORGE_TEST_JOB_DELAY_MS";

/// A [`loraforge_progress::Reporter`] that writes progress into the job record, at most a few
/// times per second, and appends status lines to the job log.
pub struct JobReporter {
    store: JobStore,
    state: Mutex<(Job, Instant)>,
    log: Option<Mutex<std::fs::File>>,
    delay: Option<Duration>,
}

impl JobReporter {
    /// Report into `job` (already persisted in `store`).
    pub fn new(store: JobStore, job: Job) -> JobReporter {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(store.log_path(&job.id))
            .ok()
            .map(Mutex::new);
        JobReporter {
            store,
            state: Mutex::new((job, Instant::now())),
            log,
            delay: std::env::var(JOB_DELAY_ENV)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis),
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
        self.update(self.delay.is_some(), |p| {
            p.done = p.done.saturating_add(units)
        });
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
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

/// Path helper for the registry: the jobs folder under a store root.
pub(crate) fn jobs_dir(home: &Path) -> PathBuf {
    home.join("jobs")
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
                trained: "t".into(),
                saved: "s".into(),
                saving_uuid: uuid::Uuid::nil(),
                dtype: "auto".into(),
            },
            state: JobState::Running,
            created: Utc::now(),
            started: None,
            finished: None,
            pid: Some(me),
            pid_start: Some(start),
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
