//! The narrow interface between lifecycle logic and where the store's state lives.
//!
//! Lifecycle code never builds store paths itself. It stages files in a local folder, asks the
//! storage to publish them as an entry, and reads entries back by kind and name; job records, the
//! export cache and the store-wide lock go through the same trait. [`FsStorage`](crate::FsStorage)
//! is the embedded default (a folder on disk); [`MemoryStorage`](crate::MemoryStorage) keeps
//! everything in memory with a local cache, the way an object-store backend would, and is what the
//! registry's own tests run against.
//!
//! Merges and exports memory-map their inputs, so every backend hands out *local* folders: for a
//! disk store the entry itself, for a remote store a cache ([`Storage::local_dir`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;

/// The four kinds of entries in the store.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A base model (a Hugging Face folder, copied or referenced).
    Base,
    /// A trained model: a LoRA adapter tied to a base.
    Trained,
    /// A saved model: adapter merged into its base.
    Saved,
    /// A model deployed to an Ollama server.
    Deployed,
}

impl EntryKind {
    /// Every kind, in lifecycle order.
    pub const ALL: [EntryKind; 4] = [
        EntryKind::Base,
        EntryKind::Trained,
        EntryKind::Saved,
        EntryKind::Deployed,
    ];

    /// The kind as users type it (and its folder name in a disk store).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Base => "base",
            EntryKind::Trained => "trained",
            EntryKind::Saved => "saved",
            EntryKind::Deployed => "deployed",
        }
    }
}

/// Where the store's state is kept: entries, job records, the export cache and the lock.
///
/// Names given to a storage (entries, files, owners, job ids, cache files) are single path
/// components; implementations refuse anything else.
pub trait Storage: Send + Sync {
    /// A human-readable location (a path or URL) for messages.
    fn location(&self) -> String;

    // ----- entries -------------------------------------------------------------------------------

    /// Names of the published entries of a kind, sorted.
    fn list(&self, kind: EntryKind) -> Result<Vec<String>>;
    /// Whether an entry is published.
    fn exists(&self, kind: EntryKind, name: &str) -> bool;
    /// One file of an entry.
    fn read(&self, kind: EntryKind, name: &str, file: &str) -> Result<Vec<u8>>;
    /// A local folder holding the entry's files: the entry itself for a disk store, a fresh
    /// cache copy for a remote one. Read-only for callers; change entries through
    /// [`write`](Self::write) and [`remove_part`](Self::remove_part). For an entry not yet
    /// published, the folder it will have once published.
    fn local_dir(&self, kind: EntryKind, name: &str) -> Result<PathBuf>;
    /// A fresh, empty local folder to build an entry in, owned by `owner` (see
    /// [`staged_owners`](Self::staged_owners)).
    fn stage(&self, owner: &str) -> Result<PathBuf>;
    /// Make a staged folder visible as an entry, atomically. Fails if the entry exists.
    fn publish(&self, staged: &Path, kind: EntryKind, name: &str) -> Result<()>;
    /// Replace one file of an entry atomically.
    fn write(&self, kind: EntryKind, name: &str, file: &str, bytes: &[u8]) -> Result<()>;
    /// Remove an entry entirely; a crash part-way never leaves a half entry that lists.
    fn remove(&self, kind: EntryKind, name: &str) -> Result<()>;
    /// Remove one part (file or folder) of an entry, leaving the rest.
    fn remove_part(&self, kind: EntryKind, name: &str, part: &str) -> Result<()>;
    /// Remove a staging folder left by `owner`, if any.
    fn discard_staged(&self, owner: &str) -> Result<()>;
    /// Owners of the staging folders that exist now.
    fn staged_owners(&self) -> Result<Vec<String>>;
    /// The staging folder `owner` left, if there is one (recovery reads what a dead process
    /// staged before deciding to publish or discard it).
    fn staged_dir(&self, owner: &str) -> Result<Option<PathBuf>>;

    // ----- job records ---------------------------------------------------------------------------

    /// Ids of the stored job records, in any order.
    fn job_ids(&self) -> Result<Vec<String>>;
    /// A job record, `None` when there is none with this id.
    fn read_job(&self, id: &str) -> Result<Option<Vec<u8>>>;
    /// Create or replace a job record atomically.
    fn write_job(&self, id: &str, bytes: &[u8]) -> Result<()>;
    /// The local file a job's worker appends its log to (created on first write by the caller).
    fn job_log(&self, id: &str) -> Result<PathBuf>;

    // ----- export cache --------------------------------------------------------------------------

    /// A file of the export cache as a local path, `None` when the cache lacks it.
    fn cached(&self, file: &str) -> Result<Option<PathBuf>>;
    /// Move a finished local file into the export cache as `file` (replacing any older one);
    /// returns its local path.
    fn cache(&self, file: &str, from: &Path) -> Result<PathBuf>;

    // ----- lock ----------------------------------------------------------------------------------

    /// Take the store-wide exclusive lock, waiting up to `timeout`; released when the guard
    /// drops. Not reentrant: a second `lock` while holding one waits for the first.
    fn lock(&self, timeout: Duration) -> Result<StoreLock>;
}

/// Holding the store-wide lock; dropping it releases the lock.
pub struct StoreLock {
    _held: Box<dyn std::any::Any + Send>,
}

impl StoreLock {
    /// A guard that releases the lock when `held` is dropped (for [`Storage`] implementations).
    pub fn new(held: impl std::any::Any + Send) -> StoreLock {
        StoreLock {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLock")
    }
}

/// Entry names come from the naming crate, but a hand-edited store could hold anything: never let
/// a name or part escape its folder.
pub(crate) fn check_component(text: &str) -> Result<()> {
    let ok = !text.is_empty()
        && text != "."
        && text != ".."
        && !text.contains('/')
        && !text.contains('\\')
        && !text.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(crate::RegistryError::BadStoreName {
            name: text.to_string(),
        })
    }
}
