//! `jobs …` and `trained save` (which creates a job).

use std::time::Duration;

use anyhow::Context as _;
use loraforge_progress::Reporter;
use loraforge_registry::{Job, JobState, Registry};

use super::Context;
use crate::args::JobsCommand;
use crate::output::{println_stdout, table};

pub fn jobs(context: &Context, command: JobsCommand) -> anyhow::Result<()> {
    let registry = context.registry()?;
    match command {
        JobsCommand::List => {
            for record in registry.unreadable_jobs()? {
                context.warn(&format!(
                    "skipped the unreadable job record {}: {} (see `loraforge doctor`)",
                    record.path.display(),
                    record.reason
                ));
            }
            context.emit(&registry.jobs()?, |jobs| {
                let rows: Vec<Vec<String>> = jobs.iter().map(job_row).collect();
                table(&["ID", "STATE", "WHAT", "PROGRESS", "CREATED"], &rows)
            })
        }
        JobsCommand::Show { id } => {
            let job = registry.job(&id)?;
            let log = registry.job_log(&job.id)?;
            context.emit(&job, |job| {
                format!("{}\nlog: {}", describe(job), log.display())
            })
        }
        JobsCommand::Wait { id, timeout } => {
            let job = wait(
                context,
                &registry,
                &id,
                timeout.map(Duration::from_secs_f64),
            )?;
            finish(context, &job)
        }
        JobsCommand::Cancel { id } => {
            let job = registry.cancel_job(&id)?;
            context.emit(&job, |job| {
                format!("job {} is {}", job.id, state_name(job.state))
            })
        }
        JobsCommand::Run {
            id,
            test_progress_delay_ms,
        } => {
            // The detached worker: progress goes to the job record only.
            let reporter = WorkerReporter {
                delay: test_progress_delay_ms.map(Duration::from_millis),
                crash_at: crate::env::test_crash_at(),
            };
            let job = registry.run_job(&id, &reporter)?;
            println_stdout(&describe(&job));
            Ok(())
        }
    }
}

/// `doctor`: every record the store cannot read (lists skip them), after recovery settled the
/// jobs no process can finish (opening the store runs it). Exits non-zero when it found any.
pub fn doctor(context: &Context) -> anyhow::Result<()> {
    let registry = context.registry()?;
    let unreadable = registry.doctor()?;
    context.emit(&unreadable, |records| {
        let mut lines = vec![format!("store {}", registry.location())];
        for record in records {
            lines.push(format!(
                "unreadable record {}: {}",
                record.path.display(),
                record.reason
            ));
        }
        if records.is_empty() {
            lines.push("every record reads".to_string());
        }
        lines.join("\n")
    })?;
    if unreadable.is_empty() {
        Ok(())
    } else {
        Err(crate::diagnostics::user_error(format!(
            "{} unreadable record(s): restore or remove them (the lists skip them meanwhile)",
            unreadable.len()
        )))
    }
}

/// The detached worker's reporter: progress goes to the job record only; it pauses at every
/// step (the hidden `--test-progress-delay-ms`) and stops at a crash test's checkpoint.
struct WorkerReporter {
    delay: Option<Duration>,
    crash_at: Option<String>,
}

impl Reporter for WorkerReporter {
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    fn advance(&self, _units: u64) {
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
    }
    fn checkpoint(&self, point: &str) {
        crate::signals::kill_self_at(point, self.crash_at.as_deref());
    }
}

/// What `trained save` was asked.
pub struct SaveArgs<'a> {
    pub trained: &'a str,
    pub dtype: &'a str,
    pub background: bool,
    pub test_progress_delay_ms: Option<u64>,
}

/// `trained save NAME`: queue a save job, then run it here with a progress bar, or hand it to a
/// detached worker process (`--background`).
pub fn save(context: &Context, registry: &Registry, args: &SaveArgs) -> anyhow::Result<()> {
    let trained = args.trained;
    let job = registry.queue_save(trained, args.dtype)?;
    let saved = match &job.kind {
        loraforge_registry::JobKind::Save { saved, .. } => saved.to_string(),
        other => other.describe(),
    };
    if args.background {
        let home = context.home()?;
        if let Err(error) = spawn_worker(&home, registry, &job, args.test_progress_delay_ms) {
            registry.fail_job(&job.id, &format!("could not start the worker: {error:#}"))?;
            return Err(error);
        }
        context.emit(&job, |job| job.id.clone())?;
        context.status(&format!(
            "saving {trained} as {saved} in the background; follow it with `loraforge jobs wait {}`",
            job.id
        ));
        return Ok(());
    }
    context.status(&format!("saving {trained} as {saved} (job {})", job.id));
    let reporter = context.reporter();
    reporter.checkpoint("job-queued");
    let job = registry.run_job(&job.id, &reporter)?;
    reporter.finish();
    finish(context, &job)
}

/// Start `loraforge jobs run ID` as a detached worker process logging into the job's log.
pub(super) fn spawn_worker(
    home: &std::path::Path,
    registry: &Registry,
    job: &Job,
    delay_ms: Option<u64>,
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the loraforge executable")?;
    let log_path = registry.job_log(&job.id)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the job log {}", log_path.display()))?;
    let log_err = log.try_clone()?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--home")
        .arg(home)
        .arg("--quiet")
        .args(["jobs", "run", &job.id]);
    if let Some(ms) = delay_ms {
        command.arg("--test-progress-delay-ms").arg(ms.to_string());
    }
    let worker = command
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group: a Ctrl-C in the terminal that started it does not stop it.
        .process_group(0)
        .spawn()
        .context("cannot start the background worker")?;
    // The job is the worker's now: this process may exit before the worker records itself.
    registry.hand_over_job(&job.id, worker.id())?;
    Ok(())
}

fn wait(
    context: &Context,
    registry: &Registry,
    id: &str,
    timeout: Option<Duration>,
) -> anyhow::Result<Job> {
    let reporter = context.reporter();
    let mut phase = String::new();
    let mut done = 0u64;
    let job = registry.wait_job(id, timeout, &mut |job| {
        if job.progress.phase != phase {
            phase = job.progress.phase.clone();
            done = 0;
            reporter.begin(&phase, job.progress.total);
        }
        if job.progress.done > done {
            reporter.advance(job.progress.done - done);
            done = job.progress.done;
        }
        if !job.progress.message.is_empty() {
            reporter.message(&job.progress.message);
        }
    })?;
    reporter.finish();
    Ok(job)
}

fn finish(context: &Context, job: &Job) -> anyhow::Result<()> {
    context.emit(job, describe)?;
    match job.state {
        JobState::Failed => Err(anyhow::anyhow!(
            "job {} failed: {}",
            job.id,
            job.error.clone().unwrap_or_default()
        )),
        _ => Ok(()),
    }
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn what(job: &Job) -> String {
    job.kind.describe()
}

fn job_row(job: &Job) -> Vec<String> {
    let progress = match job.progress.total {
        Some(total) if total > 0 => format!(
            "{} {:.0}%",
            job.progress.phase,
            100.0 * job.progress.done as f64 / total as f64
        ),
        _ => job.progress.phase.clone(),
    };
    vec![
        job.id.clone(),
        state_name(job.state).to_string(),
        what(job),
        progress,
        job.created.format("%Y-%m-%d %H:%M:%S").to_string(),
    ]
}

fn describe(job: &Job) -> String {
    let mut lines = vec![
        format!("job {}: {}", job.id, state_name(job.state)),
        format!("  {}", what(job)),
    ];
    if let Some(seconds) = job.elapsed_secs() {
        lines.push(format!("  elapsed {seconds:.1} s"));
    }
    if let Some(result) = &job.result {
        lines.push(format!("  result: {result}"));
    }
    if let Some(error) = &job.error {
        lines.push(format!("  error: {error}"));
    }
    lines.join("\n")
}
