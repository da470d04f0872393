//! [`FsStorage`]: the store as a folder on disk, and the local file helpers lifecycle code uses
//! in its staging folders.
//!
//! ```text
//! <home>/lock                     advisory lock (flock)
//! <home>/<kind>/<name>/           one folder per entry
//! <home>/jobs/<id>.json, <id>.log job records and logs
//! <home>/exports/                 the export cache
//! <home>/tmp/<owner>/             staging folders (and graves of removed entries)
//! ```

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;

use crate::error::{RegistryError, Result};
use crate::storage::{check_component, EntryKind, Storage, StoreLock};

/// The default store: one folder per entry under `<home>/<kind>/<name>/`, staging under
/// `<home>/tmp/`, job records under `<home>/jobs/`, the export cache under `<home>/exports/`.
#[derive(Debug, Clone)]
pub struct FsStorage {
    home: PathBuf,
}

impl FsStorage {
    /// A store rooted at `home` (created if missing; the path is made absolute).
    pub fn open(home: &Path) -> Result<FsStorage> {
        fs::create_dir_all(home).map_err(RegistryError::io("cannot create", home))?;
        let home = home
            .canonicalize()
            .map_err(RegistryError::io("cannot open", home))?;
        for sub in [
            "base", "trained", "saved", "deployed", "tmp", "jobs", "exports",
        ] {
            let dir = home.join(sub);
            fs::create_dir_all(&dir).map_err(RegistryError::io("cannot create", &dir))?;
        }
        Ok(FsStorage { home })
    }

    /// The store root.
    pub fn home(&self) -> &Path {
        &self.home
    }

    fn entry_dir(&self, kind: EntryKind, name: &str) -> PathBuf {
        self.home.join(kind.as_str()).join(name)
    }

    fn staging_dir(&self, owner: &str) -> PathBuf {
        self.home.join("tmp").join(owner)
    }

    fn job_path(&self, id: &str) -> PathBuf {
        self.home.join("jobs").join(format!("{id}.json"))
    }
}

impl Storage for FsStorage {
    fn location(&self) -> String {
        self.home.display().to_string()
    }

    fn list(&self, kind: EntryKind) -> Result<Vec<String>> {
        let dir = self.home.join(kind.as_str());
        let mut names = Vec::new();
        for name in list_names(&dir)? {
            if !name.starts_with('.') && dir.join(&name).join(crate::ENTRY_FILE).is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, kind: EntryKind, name: &str) -> bool {
        check_component(name).is_ok()
            && self.entry_dir(kind, name).join(crate::ENTRY_FILE).is_file()
    }

    fn read(&self, kind: EntryKind, name: &str, file: &str) -> Result<Vec<u8>> {
        check_component(name)?;
        let path = self.entry_dir(kind, name).join(file);
        fs::read(&path).map_err(RegistryError::io("cannot read", &path))
    }

    fn local_dir(&self, kind: EntryKind, name: &str) -> Result<PathBuf> {
        check_component(name)?;
        Ok(self.entry_dir(kind, name))
    }

    fn stage(&self, owner: &str) -> Result<PathBuf> {
        check_component(owner)?;
        let dir = self.staging_dir(owner);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(RegistryError::io("cannot clean", &dir))?;
        }
        fs::create_dir_all(&dir).map_err(RegistryError::io("cannot create", &dir))?;
        Ok(dir)
    }

    fn publish(&self, staged: &Path, kind: EntryKind, name: &str) -> Result<()> {
        check_component(name)?;
        let target = self.entry_dir(kind, name);
        if target.exists() {
            return Err(RegistryError::AlreadyExists {
                kind: kind.as_str(),
                name: name.to_string(),
            });
        }
        fs::rename(staged, &target).map_err(RegistryError::io("cannot publish", &target))
    }

    fn write(&self, kind: EntryKind, name: &str, file: &str, bytes: &[u8]) -> Result<()> {
        check_component(name)?;
        check_component(file)?;
        write_atomic(&self.entry_dir(kind, name).join(file), bytes)
    }

    fn remove(&self, kind: EntryKind, name: &str) -> Result<()> {
        check_component(name)?;
        let dir = self.entry_dir(kind, name);
        // Rename first so a crash mid-delete never leaves a half entry that still lists.
        let grave = self.home.join("tmp").join(format!(
            "rm-{}-{}",
            kind.as_str(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::rename(&dir, &grave).map_err(RegistryError::io("cannot remove", &dir))?;
        fs::remove_dir_all(&grave).map_err(RegistryError::io("cannot remove", &grave))
    }

    fn remove_part(&self, kind: EntryKind, name: &str, part: &str) -> Result<()> {
        check_component(name)?;
        check_component(part)?;
        remove_path(&self.entry_dir(kind, name).join(part))
    }

    fn discard_staged(&self, owner: &str) -> Result<()> {
        check_component(owner)?;
        remove_path(&self.staging_dir(owner))
    }

    fn staged_owners(&self) -> Result<Vec<String>> {
        list_names(&self.home.join("tmp"))
    }

    fn staged_dir(&self, owner: &str) -> Result<Option<PathBuf>> {
        check_component(owner)?;
        let dir = self.staging_dir(owner);
        Ok(dir.is_dir().then_some(dir))
    }

    fn job_ids(&self) -> Result<Vec<String>> {
        Ok(list_names(&self.home.join("jobs"))?
            .into_iter()
            .filter(|name| !name.starts_with('.'))
            .filter_map(|name| name.strip_suffix(".json").map(str::to_string))
            .collect())
    }

    fn read_job(&self, id: &str) -> Result<Option<Vec<u8>>> {
        check_component(id)?;
        let path = self.job_path(id);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RegistryError::Io {
                action: "cannot read",
                path,
                source,
            }),
        }
    }

    fn write_job(&self, id: &str, bytes: &[u8]) -> Result<()> {
        check_component(id)?;
        write_atomic(&self.job_path(id), bytes)
    }

    fn job_log(&self, id: &str) -> Result<PathBuf> {
        check_component(id)?;
        Ok(self.home.join("jobs").join(format!("{id}.log")))
    }

    fn cached(&self, file: &str) -> Result<Option<PathBuf>> {
        check_component(file)?;
        let path = self.home.join("exports").join(file);
        Ok(path.is_file().then_some(path))
    }

    fn cache(&self, file: &str, from: &Path) -> Result<PathBuf> {
        check_component(file)?;
        let path = self.home.join("exports").join(file);
        fs::rename(from, &path).map_err(RegistryError::io("cannot store", &path))?;
        Ok(path)
    }

    fn lock(&self, timeout: Duration) -> Result<StoreLock> {
        let path = self.home.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(RegistryError::io("cannot open", &path))?;
        let start = Instant::now();
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => return Ok(StoreLock::new(FlockGuard { _file: file })),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() >= timeout {
                        return Err(RegistryError::Locked {
                            location: self.location(),
                            waited_secs: timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(RegistryError::Io {
                        action: "cannot lock",
                        path,
                        source,
                    })
                }
            }
        }
    }
}

/// The open lock file; closing it releases the flock.
struct FlockGuard {
    _file: File,
}

/// The names in a folder.
fn list_names(dir: &Path) -> Result<Vec<String>> {
    let read = fs::read_dir(dir).map_err(RegistryError::io("cannot list", dir))?;
    let mut names = Vec::new();
    for item in read {
        let item = item.map_err(RegistryError::io("cannot list", dir))?;
        if let Some(name) = item.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// Remove a file or folder; nothing to do when it is not there.
pub(crate) fn remove_path(path: &Path) -> Result<()> {
    if path.is_dir() {
        fs::remove_dir_all(path).map_err(RegistryError::io("cannot remove", path))
    } else if path.exists() {
        fs::remove_file(path).map_err(RegistryError::io("cannot remove", path))
    } else {
        Ok(())
    }
}

/// Write `bytes` whole: a staged sibling, fsynced, renamed over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(loraforge_staging::write_file(path, bytes)?)
}

/// Copy a folder tree (regular files and folders only; symlinks are followed).
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<u64> {
    let mut bytes = 0;
    fs::create_dir_all(to).map_err(RegistryError::io("cannot create", to))?;
    let read = fs::read_dir(from).map_err(RegistryError::io("cannot read", from))?;
    for item in read {
        let item = item.map_err(RegistryError::io("cannot read", from))?;
        let source = item.path();
        let target = to.join(item.file_name());
        if source.is_dir() {
            bytes += copy_tree(&source, &target)?;
        } else {
            bytes +=
                fs::copy(&source, &target).map_err(RegistryError::io("cannot copy", &source))?;
        }
    }
    Ok(bytes)
}

/// Copy the listed files of `from` that exist into `to` (created).
pub(crate) fn copy_listed(from: &Path, to: &Path, names: &[&str]) -> Result<()> {
    fs::create_dir_all(to).map_err(RegistryError::io("cannot create", to))?;
    for name in names {
        let source = from.join(name);
        if source.is_file() {
            fs::copy(&source, to.join(name)).map_err(RegistryError::io("cannot copy", &source))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_held_lock_times_out_with_a_clear_error() {
        let home = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(home.path()).unwrap();
        let _held = storage.lock(Duration::from_secs(1)).unwrap();
        let err = storage.lock(Duration::from_millis(120)).unwrap_err();
        assert!(matches!(err, RegistryError::Locked { .. }), "{err}");
    }

    #[test]
    fn names_that_would_escape_the_store_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(home.path()).unwrap();
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(
                matches!(
                    storage.read(EntryKind::Base, bad, "entry.json"),
                    Err(RegistryError::BadStoreName { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
