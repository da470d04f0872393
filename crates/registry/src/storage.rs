//! The narrow interface between lifecycle logic and where entries live.
//!
//! Lifecycle code never builds store paths itself: it stages files in a local folder, asks the
//! storage to publish them as an entry, and reads entries back by kind and name. [`FsStorage`] is
//! the embedded default (a folder on disk); an object-store backend implements the same trait and
//! keeps a local cache for [`Storage::local_dir`], which merges and exports need for mmap.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{RegistryError, Result};

/// The four kinds of entries in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
    /// The kind as users type it (and its folder name in the store).
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Base => "base",
            EntryKind::Trained => "trained",
            EntryKind::Saved => "saved",
            EntryKind::Deployed => "deployed",
        }
    }
}

/// Where entries are kept.
pub trait Storage: Send + Sync {
    /// A human-readable location (a path or URL) for messages.
    fn location(&self) -> String;
    /// Names of the published entries of a kind, sorted.
    fn list(&self, kind: EntryKind) -> Result<Vec<String>>;
    /// Whether an entry is published.
    fn exists(&self, kind: EntryKind, name: &str) -> bool;
    /// One file of an entry.
    fn read(&self, kind: EntryKind, name: &str, file: &str) -> Result<Vec<u8>>;
    /// A local folder holding the entry's files (the entry itself for a disk store).
    fn local_dir(&self, kind: EntryKind, name: &str) -> Result<PathBuf>;
    /// A fresh, empty local folder to build an entry in, owned by `owner` (a job id or UUID).
    fn stage(&self, owner: &str) -> Result<PathBuf>;
    /// Make a staged folder visible as an entry, atomically. Fails if the entry exists.
    fn publish(&self, staged: &Path, kind: EntryKind, name: &str) -> Result<()>;
    /// Replace one file of an entry atomically.
    fn write(&self, kind: EntryKind, name: &str, file: &str, bytes: &[u8]) -> Result<()>;
    /// Remove an entry entirely.
    fn remove(&self, kind: EntryKind, name: &str) -> Result<()>;
    /// Remove one part (file or folder) of an entry, leaving the rest.
    fn remove_part(&self, kind: EntryKind, name: &str, part: &str) -> Result<()>;
    /// Remove a staging folder left by `owner`, if any.
    fn discard_staged(&self, owner: &str) -> Result<()>;
    /// Owners of the staging folders that exist now.
    fn staged_owners(&self) -> Result<Vec<String>>;
}

/// The default store: one folder per entry under `<home>/<kind>/<name>/`, staging under `<home>/tmp/`.
#[derive(Debug, Clone)]
pub struct FsStorage {
    home: PathBuf,
}

impl FsStorage {
    /// A store rooted at `home` (created if missing).
    pub fn open(home: &Path) -> Result<FsStorage> {
        for sub in [
            "base", "trained", "saved", "deployed", "tmp", "jobs", "exports",
        ] {
            let dir = home.join(sub);
            fs::create_dir_all(&dir).map_err(RegistryError::io("cannot create", &dir))?;
        }
        Ok(FsStorage {
            home: home.to_path_buf(),
        })
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
}

/// Entry names come from the naming crate, but a hand-edited store could hold anything: never let
/// a name or part escape its folder.
fn check_component(text: &str) -> Result<()> {
    let ok = !text.is_empty()
        && text != "."
        && text != ".."
        && !text.contains('/')
        && !text.contains('\\')
        && !text.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::BadInput {
            path: PathBuf::from(text),
            problem: "not a valid store entry name".into(),
        })
    }
}

impl Storage for FsStorage {
    fn location(&self) -> String {
        self.home.display().to_string()
    }

    fn list(&self, kind: EntryKind) -> Result<Vec<String>> {
        let dir = self.home.join(kind.as_str());
        let mut names = Vec::new();
        let read = fs::read_dir(&dir).map_err(RegistryError::io("cannot list", &dir))?;
        for item in read {
            let item = item.map_err(RegistryError::io("cannot list", &dir))?;
            if let Some(name) = item.file_name().to_str() {
                if !name.starts_with('.') && item.path().join("entry.json").is_file() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, kind: EntryKind, name: &str) -> bool {
        check_component(name).is_ok() && self.entry_dir(kind, name).join("entry.json").is_file()
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
        let path = self.entry_dir(kind, name).join(part);
        if path.is_dir() {
            fs::remove_dir_all(&path).map_err(RegistryError::io("cannot remove", &path))
        } else if path.exists() {
            fs::remove_file(&path).map_err(RegistryError::io("cannot remove", &path))
        } else {
            Ok(())
        }
    }

    fn discard_staged(&self, owner: &str) -> Result<()> {
        check_component(owner)?;
        let dir = self.staging_dir(owner);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(RegistryError::io("cannot remove", &dir))?;
        }
        Ok(())
    }

    fn staged_owners(&self) -> Result<Vec<String>> {
        let dir = self.home.join("tmp");
        let read = fs::read_dir(&dir).map_err(RegistryError::io("cannot list", &dir))?;
        let mut owners = Vec::new();
        for item in read {
            let item = item.map_err(RegistryError::io("cannot list", &dir))?;
            if let Some(name) = item.file_name().to_str() {
                owners.push(name.to_string());
            }
        }
        Ok(owners)
    }
}

/// Write `bytes` to a sibling temp file (removed if anything fails), fsync, then rename over
/// `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(Path::new(".")))?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)?;
        Ok(())
    };
    write().map_err(RegistryError::io("cannot write", path))
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
