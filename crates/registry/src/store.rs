//! The [`Registry`] itself: how it is opened over a [`Storage`], the store-wide lock, crash
//! recovery, and reading records and cards back. The lifecycle operations live beside it, one
//! module per concern (`base`, `trained`, `save`, `export`, `deploy`, `jobs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use loraforge_model_card::{CARD_FILE, README_FILE};

use crate::deploy::{PENDING_DEPLOY, UNCONFIRMED_NOTE};
use crate::error::{RegistryError, Result};
use crate::fs::FsStorage;
use crate::jobs::{
    orphaned, process_start_time, Job, JobKind, JobState, JobStore, UnreadableRecord,
};
use crate::records::{DeployedRecord, SavedRecord};
use crate::storage::{EntryKind, Storage, StoreLock};

/// The record file of every entry.
pub const ENTRY_FILE: &str = "entry.json";

/// How long to wait for the store lock before giving up, by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`Registry`] behaves, beyond where it stores things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// How long an operation waits for the store lock before failing with
    /// [`RegistryError::Locked`].
    pub lock_timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// The store: base, trained, saved and deployed models, their cards, and jobs.
///
/// Open one over a folder with [`Registry::open`], or over any [`Storage`] with
/// [`Registry::with_storage`]. Every method takes `&self`; changes that decide what is visible
/// run under the store-wide lock, long work (merges, exports) outside it.
///
/// ```
/// # fn main() -> Result<(), loraforge_registry::RegistryError> {
/// use loraforge_registry::{MemoryStorage, Registry, RegistryOptions};
/// let registry = Registry::with_storage(MemoryStorage::new()?, RegistryOptions::default())?;
/// assert!(registry.bases()?.is_empty());
/// assert_eq!(registry.location(), "memory");
/// # Ok(()) }
/// ```
pub struct Registry {
    storage: Arc<dyn Storage>,
    jobs: JobStore,
    options: RegistryOptions,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("location", &self.storage.location())
            .field("options", &self.options)
            .finish()
    }
}

impl Registry {
    /// Open (creating if needed) the store in the folder `home`, with default options, and
    /// clean up after crashed work. Shorthand for [`Registry::open_with`].
    ///
    /// ```
    /// # fn main() -> Result<(), loraforge_registry::RegistryError> {
    /// let home = tempfile::tempdir().unwrap();
    /// let registry = loraforge_registry::Registry::open(home.path())?;
    /// assert!(registry.saved_models()?.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn open(home: &Path) -> Result<Registry> {
        Registry::open_with(home, RegistryOptions::default())
    }

    /// Open (creating if needed) the store in the folder `home` ([`FsStorage`]).
    pub fn open_with(home: &Path, options: RegistryOptions) -> Result<Registry> {
        Registry::with_storage(FsStorage::open(home)?, options)
    }

    /// A registry over any storage backend; cleans up after crashed work
    /// ([`recover`](Self::recover)) before returning.
    pub fn with_storage(
        storage: impl Storage + 'static,
        options: RegistryOptions,
    ) -> Result<Registry> {
        let storage: Arc<dyn Storage> = Arc::new(storage);
        let registry = Registry {
            jobs: JobStore::new(storage.clone()),
            storage,
            options,
        };
        registry.recover()?;
        Ok(registry)
    }

    /// Where the store lives (a folder path, or a backend's description), for messages.
    pub fn location(&self) -> String {
        self.storage.location()
    }

    /// The storage this registry works on.
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    pub(crate) fn jobs_store(&self) -> &JobStore {
        &self.jobs
    }

    pub(crate) fn lock(&self) -> Result<StoreLock> {
        self.storage.lock(self.options.lock_timeout)
    }

    /// Settle jobs no process can finish any more, and remove staging folders nobody owns.
    ///
    /// A running job whose worker died, or a queued job whose owner is gone (see
    /// [`QUEUE_GRACE`](crate::jobs::QUEUE_GRACE)), is reconciled with what the store holds: when
    /// its result was published (a saved or deployed entry naming the job) it succeeded, else it
    /// failed with the reason. Returns the ids of the jobs settled either way.
    pub fn recover(&self) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        // Deployments whose process died while Ollama may have been creating the model are
        // recorded (marked unconfirmed) before the jobs are settled, so their jobs see them.
        for owner in self.storage.staged_owners()? {
            if owner.starts_with(&format!("{PENDING_DEPLOY}-")) && !owner_alive(&owner) {
                self.publish_unconfirmed_deploy(&owner)?;
            }
        }
        let mut settled = Vec::new();
        let mut live_owners = Vec::new();
        let now = Utc::now();
        for mut job in self.jobs.list()? {
            if let Some(reason) = orphaned(&job, now) {
                job.finished = Some(now);
                match self.published_result(&job) {
                    Some(result) => {
                        job.state = JobState::Succeeded;
                        job.result = Some(result);
                        job.error = None;
                    }
                    None => {
                        job.state = JobState::Failed;
                        job.error = Some(format!("{reason}; {}", leftovers(&job.kind)));
                    }
                }
                self.jobs.save(&job)?;
                settled.push(job.id.clone());
            }
            if !job.state.is_final() {
                live_owners.push(job.staging_owner());
            }
        }
        for owner in self.storage.staged_owners()? {
            if !live_owners.contains(&owner) && !owner_alive(&owner) {
                self.storage.discard_staged(&owner)?;
            }
        }
        Ok(settled)
    }

    /// Publish the deployed record a dead deploying process staged (it may have created the
    /// model on its server); a staging folder without a readable record is discarded.
    fn publish_unconfirmed_deploy(&self, owner: &str) -> Result<()> {
        let Some(staged) = self.storage.staged_dir(owner)? else {
            return Ok(());
        };
        let record = std::fs::read(staged.join(ENTRY_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<DeployedRecord>(&bytes).ok());
        match record {
            Some(record)
                if !self
                    .storage
                    .exists(EntryKind::Deployed, &record.name.to_string()) =>
            {
                self.storage
                    .publish(&staged, EntryKind::Deployed, &record.name.to_string())
            }
            _ => self.storage.discard_staged(owner),
        }
    }

    /// The entry a job published, if it got that far: the saved model a save job reserved, or
    /// the deployment recorded by a deploy job (both records name the job).
    fn published_result(&self, job: &Job) -> Option<String> {
        match &job.kind {
            JobKind::Save { saved, .. } => {
                let name = saved.to_string();
                let record: SavedRecord = self.read_record(EntryKind::Saved, &name).ok()?;
                (record.job.as_deref() == Some(job.id.as_str())).then_some(name)
            }
            JobKind::Deploy { .. } => self
                .deployed_models()
                .ok()?
                .into_iter()
                // an unconfirmed record is what recovery kept, not the job's result
                .find(|d| {
                    d.job.as_deref() == Some(job.id.as_str())
                        && !d.notes.iter().any(|n| n == UNCONFIRMED_NOTE)
                })
                .map(|d| d.name.to_string()),
        }
    }

    /// Read an entry's record, [`RegistryError::NotFound`] when there is no such entry.
    pub(crate) fn read_record<T: serde::de::DeserializeOwned>(
        &self,
        kind: EntryKind,
        name: &str,
    ) -> Result<T> {
        if !self.storage.exists(kind, name) {
            return Err(RegistryError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
            });
        }
        let bytes = self.storage.read(kind, name, ENTRY_FILE)?;
        self.parse_record(kind, name, &bytes)
    }

    fn parse_record<T: serde::de::DeserializeOwned>(
        &self,
        kind: EntryKind,
        name: &str,
        bytes: &[u8],
    ) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|source| RegistryError::CorruptRecord {
            path: self.record_path(kind, name),
            source,
        })
    }

    /// Every readable record of a kind, sorted by name. An entry whose record cannot be read is
    /// skipped (one bad record must not stop every list); [`doctor`](Self::doctor) reports it.
    pub(crate) fn read_all<T: serde::de::DeserializeOwned + Send>(
        &self,
        kind: EntryKind,
    ) -> Result<Vec<T>> {
        Ok(self.scan_records(kind)?.0)
    }

    /// Every readable record of a kind, and the entries whose record could not be read.
    fn scan_records<T: serde::de::DeserializeOwned + Send>(
        &self,
        kind: EntryKind,
    ) -> Result<(Vec<T>, Vec<UnreadableRecord>)> {
        use rayon::prelude::*;
        // Lists read every record (a page of 10,000 entries is 10,000 small files): read them on
        // all CPUs, keeping the storage's order.
        let read: Vec<(String, Result<T>)> = self
            .storage
            .list(kind)?
            .into_par_iter()
            .map(|name| {
                // `list` just saw the record: read it without asking again whether it exists.
                let record = self
                    .storage
                    .read(kind, &name, ENTRY_FILE)
                    .and_then(|bytes| self.parse_record(kind, &name, &bytes));
                (name, record)
            })
            .collect();
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        for (name, record) in read {
            match record {
                Ok(record) => records.push(record),
                // Removed between listing and reading: not a problem.
                Err(RegistryError::NotFound { .. }) => {}
                Err(RegistryError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => unreadable.push(UnreadableRecord {
                    path: self.record_path(kind, &name),
                    reason: crate::error::chain_text(&error),
                }),
            }
        }
        Ok((records, unreadable))
    }

    /// Every record in the store that cannot be read (entry records of each kind, then job
    /// records): lists and recovery skip them, so a hand-edited or damaged file never stops
    /// the store; this says which files to restore or remove.
    pub fn doctor(&self) -> Result<Vec<UnreadableRecord>> {
        use crate::records::{BaseRecord, DeployedRecord, TrainedRecord};
        let mut unreadable = Vec::new();
        unreadable.extend(self.scan_records::<BaseRecord>(EntryKind::Base)?.1);
        unreadable.extend(self.scan_records::<TrainedRecord>(EntryKind::Trained)?.1);
        unreadable.extend(self.scan_records::<SavedRecord>(EntryKind::Saved)?.1);
        unreadable.extend(self.scan_records::<DeployedRecord>(EntryKind::Deployed)?.1);
        unreadable.extend(self.jobs.scan()?.1);
        Ok(unreadable)
    }

    /// Replace an entry's record.
    pub(crate) fn write_record<T: serde::Serialize>(
        &self,
        kind: EntryKind,
        name: &str,
        record: &T,
    ) -> Result<()> {
        self.storage.write(kind, name, ENTRY_FILE, &to_json(record))
    }

    /// Where an entry's record lives, for messages.
    fn record_path(&self, kind: EntryKind, name: &str) -> PathBuf {
        PathBuf::from(self.storage.location())
            .join(kind.as_str())
            .join(name)
            .join(ENTRY_FILE)
    }

    /// An entry's model card as JSON text.
    pub fn card_json(&self, kind: EntryKind, name: &str) -> Result<String> {
        self.read_record::<serde_json::Value>(kind, name)?;
        let bytes = self.storage.read(kind, name, CARD_FILE)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// An entry's model card as Markdown (the `README.md`).
    pub fn card_readme(&self, kind: EntryKind, name: &str) -> Result<String> {
        self.read_record::<serde_json::Value>(kind, name)?;
        let bytes = self.storage.read(kind, name, README_FILE)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A local folder with an entry's files (for `show`, and for tools that read them).
    pub fn entry_dir(&self, kind: EntryKind, name: &str) -> Result<PathBuf> {
        self.storage.local_dir(kind, name)
    }

    /// Run `build` in a fresh staging folder owned by `owner` (it fills the folder and publishes
    /// it); the staging folder is removed if anything fails.
    pub(crate) fn in_staging<T>(
        &self,
        owner: &str,
        build: impl FnOnce(&Path) -> Result<T>,
    ) -> Result<T> {
        let staged = self.storage.stage(owner)?;
        let result = build(&staged);
        if result.is_err() {
            let _ = self.storage.discard_staged(owner);
        }
        result
    }
}

/// What a job that died may have left behind, for its error.
fn leftovers(kind: &JobKind) -> &'static str {
    match kind {
        JobKind::Save { .. } => "its partial output was removed",
        JobKind::Deploy { .. } => {
            "if it got as far as uploading, the deployment is listed as unconfirmed (`loraforge \
             deployed list --check` says whether the server has it)"
        }
    }
}

/// A record as the pretty JSON stored in `entry.json`.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own plain records cannot fail.
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// A fresh UUID whose 4-hex prefix no entry of the same kind uses (the full UUIDs are in the
/// records), so two entries never differ only after their name's prefix.
pub(crate) fn fresh_uuid(existing: &[uuid::Uuid]) -> Result<uuid::Uuid> {
    Ok(loraforge_naming::draw_uuid_avoiding(
        existing,
        uuid::Uuid::new_v4,
        loraforge_naming::DEFAULT_DRAW_ATTEMPTS,
    )?)
}

/// A tag for staging folders: `<prefix>-<pid>-<start>-<uuid>`, so recovery can tell whether the
/// process that made it is still alive.
pub(crate) fn owner_tag(prefix: &str) -> String {
    let pid = std::process::id();
    let start = process_start_time(pid).unwrap_or(0);
    format!("{prefix}-{pid}-{start}-{}", uuid::Uuid::new_v4().simple())
}

/// Whether the process named in an [`owner_tag`] is still the one running.
fn owner_alive(tag: &str) -> bool {
    let mut parts = tag.splitn(4, '-');
    let _prefix = parts.next();
    let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
    let start = parts.next().and_then(|s| s.parse::<u64>().ok());
    match (pid, start) {
        (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
        _ => false,
    }
}
