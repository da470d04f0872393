//! [`MemoryStorage`]: a store held in memory, with a local cache for the folders merges and
//! exports read — the shape an object-store backend takes.
//!
//! Entries, job records and cached exports live in maps; staging folders, entry caches and job
//! logs live in a private temporary folder that goes away with the last clone. Clones share one
//! store, as two processes share a folder on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{RegistryError, Result};
use crate::fs::remove_path;
use crate::storage::{check_component, EntryKind, Storage, StoreLock};

/// The files of one entry: path relative to the entry → bytes.
type Files = BTreeMap<String, Vec<u8>>;

#[derive(Default)]
struct State {
    entries: BTreeMap<(EntryKind, String), Files>,
    /// Entries whose local cache folder is up to date.
    materialized: BTreeSet<(EntryKind, String)>,
    jobs: BTreeMap<String, Vec<u8>>,
    exports: BTreeMap<String, Vec<u8>>,
}

struct Inner {
    state: Mutex<State>,
    locked: Mutex<bool>,
    released: Condvar,
    scratch: tempfile::TempDir,
}

/// A store in memory. Cheap to clone; clones share the same store.
///
/// ```
/// use loraforge_registry::{EntryKind, MemoryStorage, Storage};
/// let storage = MemoryStorage::new()?;
/// let staged = storage.stage("add-1")?;
/// std::fs::write(staged.join("entry.json"), b"{}").unwrap();
/// storage.publish(&staged, EntryKind::Base, "tiny")?;
/// assert_eq!(storage.list(EntryKind::Base)?, ["tiny"]);
/// assert_eq!(storage.read(EntryKind::Base, "tiny", "entry.json")?, b"{}");
/// assert!(storage.staged_owners()?.is_empty());
/// # Ok::<(), loraforge_registry::RegistryError>(())
/// ```
#[derive(Clone)]
pub struct MemoryStorage {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("scratch", &self.inner.scratch.path())
            .finish()
    }
}

impl MemoryStorage {
    /// An empty store (its local scratch folder is created in the system temp folder).
    pub fn new() -> Result<MemoryStorage> {
        let scratch = tempfile::Builder::new()
            .prefix("loraforge-memory-store-")
            .tempdir()
            .map_err(RegistryError::io("cannot create", std::env::temp_dir()))?;
        for sub in ["tmp", "cache", "jobs", "exports"] {
            let dir = scratch.path().join(sub);
            fs::create_dir_all(&dir).map_err(RegistryError::io("cannot create", &dir))?;
        }
        Ok(MemoryStorage {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                locked: Mutex::new(false),
                released: Condvar::new(),
                scratch,
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the state leaves maps that are still consistent (every change
        // is a single insert or remove), so a poisoned mutex is used as is.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn scratch(&self, sub: &str) -> PathBuf {
        self.inner.scratch.path().join(sub)
    }

    fn cache_dir(&self, kind: EntryKind, name: &str) -> PathBuf {
        self.scratch("cache").join(kind.as_str()).join(name)
    }

    fn invalidate(&self, state: &mut State, kind: EntryKind, name: &str) -> Result<()> {
        state.materialized.remove(&(kind, name.to_string()));
        remove_path(&self.cache_dir(kind, name))
    }
}

fn not_found(kind: EntryKind, name: &str) -> RegistryError {
    RegistryError::NotFound {
        kind: kind.as_str(),
        name: name.to_string(),
    }
}

/// Every file under `dir`, by path relative to it (with `/` separators).
fn read_tree(dir: &Path, prefix: &str, files: &mut Files) -> Result<()> {
    let read = fs::read_dir(dir).map_err(RegistryError::io("cannot read", dir))?;
    for item in read {
        let item = item.map_err(RegistryError::io("cannot read", dir))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let path = item.path();
        let relative = format!("{prefix}{name}");
        if path.is_dir() {
            read_tree(&path, &format!("{relative}/"), files)?;
        } else {
            let bytes = fs::read(&path).map_err(RegistryError::io("cannot read", &path))?;
            files.insert(relative, bytes);
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(RegistryError::io("cannot create", parent))?;
    }
    fs::write(path, bytes).map_err(RegistryError::io("cannot write", path))
}

impl Storage for MemoryStorage {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn list(&self, kind: EntryKind) -> Result<Vec<String>> {
        Ok(self
            .state()
            .entries
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, name)| name.clone())
            .collect())
    }

    fn exists(&self, kind: EntryKind, name: &str) -> bool {
        self.state().entries.contains_key(&(kind, name.to_string()))
    }

    fn read(&self, kind: EntryKind, name: &str, file: &str) -> Result<Vec<u8>> {
        check_component(name)?;
        let state = self.state();
        let files = state
            .entries
            .get(&(kind, name.to_string()))
            .ok_or_else(|| not_found(kind, name))?;
        files.get(file).cloned().ok_or_else(|| RegistryError::Io {
            action: "cannot read",
            path: PathBuf::from(kind.as_str()).join(name).join(file),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    fn local_dir(&self, kind: EntryKind, name: &str) -> Result<PathBuf> {
        check_component(name)?;
        let dir = self.cache_dir(kind, name);
        let mut state = self.state();
        let key = (kind, name.to_string());
        if state.materialized.contains(&key) {
            return Ok(dir);
        }
        if let Some(files) = state.entries.get(&key) {
            remove_path(&dir)?;
            fs::create_dir_all(&dir).map_err(RegistryError::io("cannot create", &dir))?;
            for (path, bytes) in files {
                write_file(&dir.join(path), bytes)?;
            }
            state.materialized.insert(key);
        }
        Ok(dir)
    }

    fn stage(&self, owner: &str) -> Result<PathBuf> {
        check_component(owner)?;
        let dir = self.scratch("tmp").join(owner);
        remove_path(&dir)?;
        fs::create_dir_all(&dir).map_err(RegistryError::io("cannot create", &dir))?;
        Ok(dir)
    }

    fn publish(&self, staged: &Path, kind: EntryKind, name: &str) -> Result<()> {
        check_component(name)?;
        let mut state = self.state();
        let key = (kind, name.to_string());
        if state.entries.contains_key(&key) {
            return Err(RegistryError::AlreadyExists {
                kind: kind.as_str(),
                name: name.to_string(),
            });
        }
        let mut files = Files::new();
        read_tree(staged, "", &mut files)?;
        self.invalidate(&mut state, kind, name)?;
        state.entries.insert(key, files);
        remove_path(staged)
    }

    fn write(&self, kind: EntryKind, name: &str, file: &str, bytes: &[u8]) -> Result<()> {
        check_component(name)?;
        check_component(file)?;
        let mut state = self.state();
        self.invalidate(&mut state, kind, name)?;
        let files = state
            .entries
            .get_mut(&(kind, name.to_string()))
            .ok_or_else(|| not_found(kind, name))?;
        files.insert(file.to_string(), bytes.to_vec());
        Ok(())
    }

    fn remove(&self, kind: EntryKind, name: &str) -> Result<()> {
        check_component(name)?;
        let mut state = self.state();
        self.invalidate(&mut state, kind, name)?;
        state
            .entries
            .remove(&(kind, name.to_string()))
            .map(drop)
            .ok_or_else(|| not_found(kind, name))
    }

    fn remove_part(&self, kind: EntryKind, name: &str, part: &str) -> Result<()> {
        check_component(name)?;
        check_component(part)?;
        let mut state = self.state();
        self.invalidate(&mut state, kind, name)?;
        let files = state
            .entries
            .get_mut(&(kind, name.to_string()))
            .ok_or_else(|| not_found(kind, name))?;
        let folder = format!("{part}/");
        files.retain(|path, _| path != part && !path.starts_with(&folder));
        Ok(())
    }

    fn discard_staged(&self, owner: &str) -> Result<()> {
        check_component(owner)?;
        remove_path(&self.scratch("tmp").join(owner))
    }

    fn staged_dir(&self, owner: &str) -> Result<Option<PathBuf>> {
        check_component(owner)?;
        let dir = self.scratch("tmp").join(owner);
        Ok(dir.is_dir().then_some(dir))
    }

    fn staged_owners(&self) -> Result<Vec<String>> {
        let dir = self.scratch("tmp");
        let read = fs::read_dir(&dir).map_err(RegistryError::io("cannot list", &dir))?;
        let mut owners = Vec::new();
        for item in read {
            let item = item.map_err(RegistryError::io("cannot list", &dir))?;
            owners.push(item.file_name().to_string_lossy().into_owned());
        }
        Ok(owners)
    }

    fn job_ids(&self) -> Result<Vec<String>> {
        Ok(self.state().jobs.keys().cloned().collect())
    }

    fn read_job(&self, id: &str) -> Result<Option<Vec<u8>>> {
        check_component(id)?;
        Ok(self.state().jobs.get(id).cloned())
    }

    fn write_job(&self, id: &str, bytes: &[u8]) -> Result<()> {
        check_component(id)?;
        self.state().jobs.insert(id.to_string(), bytes.to_vec());
        Ok(())
    }

    fn job_log(&self, id: &str) -> Result<PathBuf> {
        check_component(id)?;
        Ok(self.scratch("jobs").join(format!("{id}.log")))
    }

    fn cached(&self, file: &str) -> Result<Option<PathBuf>> {
        check_component(file)?;
        let state = self.state();
        let Some(bytes) = state.exports.get(file) else {
            return Ok(None);
        };
        let path = self.scratch("exports").join(file);
        if !path.is_file() {
            write_file(&path, bytes)?;
        }
        Ok(Some(path))
    }

    fn cache(&self, file: &str, from: &Path) -> Result<PathBuf> {
        check_component(file)?;
        let bytes = fs::read(from).map_err(RegistryError::io("cannot read", from))?;
        let path = self.scratch("exports").join(file);
        fs::rename(from, &path).map_err(RegistryError::io("cannot store", &path))?;
        self.state().exports.insert(file.to_string(), bytes);
        Ok(path)
    }

    fn lock(&self, timeout: Duration) -> Result<StoreLock> {
        let deadline = Instant::now() + timeout;
        let mut locked = self
            .inner
            .locked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *locked {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RegistryError::Locked {
                    location: self.location(),
                    waited_secs: timeout.as_secs(),
                });
            }
            locked = self
                .inner
                .released
                .wait_timeout(locked, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        *locked = true;
        Ok(StoreLock::new(MemoryLockGuard(self.inner.clone())))
    }
}

struct MemoryLockGuard(Arc<Inner>);

impl Drop for MemoryLockGuard {
    fn drop(&mut self) {
        let mut locked = self
            .0
            .locked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *locked = false;
        self.0.released.notify_one();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_lock_is_exclusive_and_released_on_drop() {
        let storage = MemoryStorage::new().unwrap();
        let held = storage.lock(Duration::from_secs(1)).unwrap();
        let other = storage.clone();
        let err = other.lock(Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, RegistryError::Locked { .. }), "{err}");
        drop(held);
        other.lock(Duration::from_millis(50)).unwrap();
    }

    #[test]
    fn local_dir_follows_writes_and_removed_parts() {
        let storage = MemoryStorage::new().unwrap();
        let staged = storage.stage("owner").unwrap();
        fs::create_dir_all(staged.join("adapter")).unwrap();
        fs::write(staged.join("adapter/a.bin"), b"a").unwrap();
        fs::write(staged.join("entry.json"), b"1").unwrap();
        storage.publish(&staged, EntryKind::Trained, "t").unwrap();
        let dir = storage.local_dir(EntryKind::Trained, "t").unwrap();
        assert_eq!(fs::read(dir.join("adapter/a.bin")).unwrap(), b"a");
        storage
            .remove_part(EntryKind::Trained, "t", "adapter")
            .unwrap();
        storage
            .write(EntryKind::Trained, "t", "entry.json", b"2")
            .unwrap();
        let dir = storage.local_dir(EntryKind::Trained, "t").unwrap();
        assert!(!dir.join("adapter").exists());
        assert_eq!(fs::read(dir.join("entry.json")).unwrap(), b"2");
        let err = storage
            .publish(&staged, EntryKind::Trained, "t")
            .unwrap_err();
        assert!(matches!(err, RegistryError::AlreadyExists { .. }), "{err}");
    }
}
