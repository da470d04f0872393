//! The [`Registry`] itself: how it is opened over a [`Storage`], the store-wide lock, crash
//! recovery, and reading records and cards back. The lifecycle operations live beside it, one
//! module per concern (`base`, `trained`, `save`, `export`, `deploy`, `jobs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use loraforge_model_card::{CARD_FILE, README_FILE};

use crate::error::{RegistryError, Result};
use crate::fs::FsStorage;
use crate::jobs::{job_process_alive, process_start_time, JobState, JobStore};
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

    /// Mark jobs whose process died as failed and remove staging folders nobody owns.
    /// Returns the ids of the jobs marked failed.
    pub fn recover(&self) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        let mut failed = Vec::new();
        let mut live_owners = Vec::new();
        for mut job in self.jobs.list()? {
            if job.state == JobState::Running && !job_process_alive(&job) {
                job.state = JobState::Failed;
                job.finished = Some(Utc::now());
                job.error = Some(format!(
                    "the worker process (pid {}) died before finishing; partial output removed",
                    job.pid.unwrap_or(0)
                ));
                self.jobs.save(&job)?;
                failed.push(job.id.clone());
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
        Ok(failed)
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
        serde_json::from_slice(&bytes).map_err(|source| RegistryError::CorruptRecord {
            path: self.record_path(kind, name),
            source,
        })
    }

    /// Every record of a kind, sorted by name.
    pub(crate) fn read_all<T: serde::de::DeserializeOwned>(
        &self,
        kind: EntryKind,
    ) -> Result<Vec<T>> {
        self.storage
            .list(kind)?
            .iter()
            .map(|name| self.read_record(kind, name))
            .collect()
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
