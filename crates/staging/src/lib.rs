//! `loraforge-staging`: where long writes put their bytes before they are complete.
//!
//! Every output (a merged folder, a GGUF file) is written to a temporary path in the same folder
//! and renamed into place when complete. This crate owns those temporaries:
//!
//! - [`Staged::file_beside`] / [`Staged::dir_beside`] create one with a name unique to the run,
//!   `.{output name}.loraforge-tmp-{pid}-{random}`, so that two runs writing the same output
//!   never share one;
//! - a [`Staged`] removes itself when dropped (every error path) unless [`Staged::persist`]
//!   renamed it into place;
//! - while it exists it is listed in a process-wide register: a program that stops on SIGINT
//!   or SIGTERM calls [`remove_registered`] from its signal handler (the CLI does), because a
//!   signal skips destructors;
//! - a process killed with SIGKILL cannot clean up: the next run writing the same output removes
//!   temporaries whose process is gone ([`remove_stale_beside`]) and never reuses one;
//! - [`check_output`] refuses an output path that is not a regular file (a device, FIFO, socket
//!   or folder) before anything is written, so no rename ever replaces one;
//! - [`preallocate`] reserves an output's disk space before it is written: a full disk fails
//!   then, not part-way through the work.
//!
//! ```
//! use loraforge_staging::Staged;
//! use std::io::Write;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let out = dir.path().join("model.gguf");
//! let (staged, mut file) = Staged::file_beside(&out).unwrap();
//! file.write_all(b"GGUF").unwrap();
//! drop(file);
//! staged.persist(&out).unwrap();
//! assert_eq!(std::fs::read(&out).unwrap(), b"GGUF");
//! ```
#![deny(missing_docs)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What marks a loraforge temporary after the output's name: `.{name}.loraforge-tmp-{pid}-…`.
pub const TEMP_MARKER: &str = ".loraforge-tmp-";

/// Temporaries of this process that exist right now.
static REGISTERED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn register(path: &Path) {
    if let Ok(mut list) = REGISTERED.lock() {
        list.push(path.to_path_buf());
    }
}

fn unregister(path: &Path) {
    if let Ok(mut list) = REGISTERED.lock() {
        list.retain(|p| p != path);
    }
}

/// Removes every temporary this process has registered and not yet persisted or dropped; for a
/// signal handler that is about to exit. Returns the paths removed.
pub fn remove_registered() -> Vec<PathBuf> {
    let list = match REGISTERED.lock() {
        Ok(mut list) => std::mem::take(&mut *list),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    };
    for path in &list {
        remove_path(path);
    }
    list
}

/// The temporaries currently registered (tests and diagnostics).
pub fn registered() -> Vec<PathBuf> {
    REGISTERED.lock().map(|l| l.clone()).unwrap_or_default()
}

fn remove_path(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Reserves `len` bytes of disk for `file`, about to be written from its start, without changing
/// its size. The filesystem then allocates the blocks once instead of page by page as the data
/// arrives (ext4's delayed allocation: a quarter less kernel time for a write-bound convert),
/// and a disk too full for the output fails now, before the work, instead of part-way through.
///
/// Only a lack of space is an error (`ENOSPC`, `EDQUOT`, or `EFBIG` for a file larger than the
/// filesystem allows); where the filesystem or OS cannot preallocate this does nothing.
pub fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let Ok(len) = libc::off_t::try_from(len) else {
            return Ok(());
        };
        if len == 0 {
            return Ok(());
        }
        // SAFETY: fallocate on a file descriptor this `File` owns; KEEP_SIZE leaves the file's
        // length (and so its visible bytes) unchanged.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if matches!(
                error.raw_os_error(),
                Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
            ) {
                return Err(error);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, len);
    Ok(())
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The output path exists and is not a regular file (or, for a folder output, a folder).
    #[error("{path} exists and is {kind}, not a {wanted}; loraforge never writes over one (choose another output path)")]
    NotRegular {
        /// The output path.
        path: PathBuf,
        /// What it is: "a character device", "a FIFO", …
        kind: &'static str,
        /// What an output must be there.
        wanted: &'static str,
    },
    /// Creating, inspecting or renaming a temporary failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StagingError {
    /// Whether the user can fix it (a bad output path) rather than the system failing.
    pub fn is_user_error(&self) -> bool {
        matches!(self, StagingError::NotRegular { .. })
    }

    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            StagingError::NotRegular { .. } => {
                Some("pass the path of a new or existing regular file".into())
            }
            StagingError::Io { .. } => None,
        }
    }
}

/// What an output path must be when it already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// A file (GGUF, safetensors).
    File,
    /// A folder (a merged model).
    Folder,
}

fn describe(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
        if file_type.is_fifo() {
            return "a FIFO";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Refuses an existing `path` that is not of the `kind` an output must be: a device, FIFO,
/// socket, or a folder where a file is written (or a file where a folder is). A symlink is
/// judged by what it points at (the rename replaces the link, never its target). A path that
/// does not exist is fine.
pub fn check_output(path: &Path, kind: OutputKind) -> Result<(), StagingError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StagingError::Io {
                action: "inspect",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let file_type = meta.file_type();
    let (ok, wanted) = match kind {
        OutputKind::File => (file_type.is_file(), "regular file"),
        OutputKind::Folder => (file_type.is_dir(), "folder"),
    };
    if ok {
        return Ok(());
    }
    Err(StagingError::NotRegular {
        path: path.to_path_buf(),
        kind: describe(file_type),
        wanted,
    })
}

/// Folder and name of an output path (`.` when it has no folder part).
fn split(target: &Path) -> (PathBuf, String) {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    (dir, name)
}

/// Whether process `pid` exists (on platforms where that cannot be told, every process does).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        if pid <= 0 {
            return true;
        }
        // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// Removes the temporaries left beside `target` by runs whose process is gone (killed with
/// SIGKILL, or a crash): entries named `.{name}.loraforge-tmp-{pid}-…` whose `pid` no longer
/// exists. Temporaries of live processes (another run writing the same output) are left alone.
/// Returns what was removed.
pub fn remove_stale_beside(target: &Path) -> Vec<PathBuf> {
    let (dir, name) = split(target);
    // leading dots are trimmed on both sides so that a temporary of a temporary (an
    // intermediate's own staging file, `..{name}.loraforge-tmp-…tmp.loraforge-tmp-…`) is found too
    let prefix = format!("{}{TEMP_MARKER}", name.trim_start_matches('.'));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .filter(|n| n.starts_with('.'))
            .and_then(|n| n.trim_start_matches('.').strip_prefix(&prefix))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        remove_path(&path);
        removed.push(path);
    }
    removed
}

/// Writes a small file whole: `bytes` go to a staged temporary beside `target`, are synced to
/// disk and renamed over `target`, so a reader sees the old content or the new, never a part.
///
/// Unlike [`Staged::file_beside`] it does not sweep the folder for stale temporaries: small
/// files are rewritten often (job records, at every progress step) in folders that grow, and a
/// killed write leaves at most one small hidden file.
pub fn write_file(target: &Path, bytes: &[u8]) -> Result<(), StagingError> {
    use std::io::Write;
    let (staged, mut file) = Staged::new_file_beside(target)?;
    let io = |source| StagingError::Io {
        action: "write",
        path: staged.path().to_path_buf(),
        source,
    };
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    staged.persist(target)
}

/// A temporary file or folder beside an output. Removed on drop unless persisted; registered
/// for [`remove_registered`] while it exists.
#[derive(Debug)]
pub struct Staged {
    path: PathBuf,
    is_dir: bool,
    done: bool,
}

impl Staged {
    fn prefix(target: &Path) -> (PathBuf, String) {
        let (dir, name) = split(target);
        (dir, format!(".{name}{TEMP_MARKER}{}-", std::process::id()))
    }

    /// Creates a new, unique temporary file beside `target` (after removing stale ones of dead
    /// processes), with the permissions a plain `File::create` gives (0666 less the umask).
    pub fn file_beside(target: &Path) -> Result<(Staged, File), StagingError> {
        remove_stale_beside(target);
        Self::new_file_beside(target)
    }

    /// [`Staged::file_beside`] without the sweep for stale temporaries.
    fn new_file_beside(target: &Path) -> Result<(Staged, File), StagingError> {
        let (dir, prefix) = Self::prefix(target);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let temp = builder
            .tempfile_in(&dir)
            .map_err(|source| StagingError::Io {
                action: "create a temporary file in",
                path: dir.clone(),
                source,
            })?;
        let (file, path) = temp.keep().map_err(|e| StagingError::Io {
            action: "keep",
            path: dir,
            source: e.error,
        })?;
        register(&path);
        Ok((
            Staged {
                path,
                is_dir: false,
                done: false,
            },
            file,
        ))
    }

    /// Creates a new, unique temporary folder beside `target` (after removing stale ones of dead
    /// processes).
    pub fn dir_beside(target: &Path) -> Result<Staged, StagingError> {
        remove_stale_beside(target);
        let (dir, prefix) = Self::prefix(target);
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(&dir)
            .map_err(|source| StagingError::Io {
                action: "create a temporary folder in",
                path: dir,
                source,
            })?;
        let path = temp.keep();
        register(&path);
        Ok(Staged {
            path,
            is_dir: true,
            done: false,
        })
    }

    /// Where the temporary is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the temporary to `target`. A file replaces an existing regular file at `target`;
    /// anything else there is refused first ([`check_output`]). A folder may only replace a
    /// folder (moved aside, then removed once the new one is in place).
    pub fn persist(mut self, target: &Path) -> Result<(), StagingError> {
        let io = |action, source| StagingError::Io {
            action,
            path: target.to_path_buf(),
            source,
        };
        if !self.is_dir {
            check_output(target, OutputKind::File)?;
            std::fs::rename(&self.path, target).map_err(|e| io("rename a temporary to", e))?;
        } else {
            check_output(target, OutputKind::Folder)?;
            match std::fs::symlink_metadata(target) {
                Err(_) => {
                    std::fs::rename(&self.path, target)
                        .map_err(|e| io("rename a temporary folder to", e))?;
                }
                Ok(_) => {
                    // the old folder goes aside under a temporary name of its own, so that a
                    // crash leaves it to be cleaned as stale rather than lost or half-replaced
                    let old = Staged::dir_beside(target)?;
                    std::fs::remove_dir(&old.path).map_err(|e| io("prepare to move aside", e))?;
                    std::fs::rename(target, &old.path).map_err(|e| io("move aside", e))?;
                    if let Err(e) = std::fs::rename(&self.path, target) {
                        let _ = std::fs::rename(&old.path, target);
                        return Err(io("rename a temporary folder to", e));
                    }
                    drop(old);
                }
            }
        }
        unregister(&self.path);
        self.done = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            remove_path(&self.path);
            unregister(&self.path);
        }
    }
}
