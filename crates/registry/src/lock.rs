//! The store-wide lock serializing operations that change what is visible.
//!
//! Held only for short critical sections (checking names, publishing, deleting); long work such as
//! a merge runs outside it in a staging folder, so two saves can proceed at once.

use std::fs::{File, OpenOptions};

use fs4::fs_std::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{RegistryError, Result};

/// How long to wait for the lock before giving up, unless `LORAFORGE_LOCK_TIMEOUT` (seconds) says otherwise.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variable overriding the lock wait, in seconds.
pub const LOCK_TIMEOUT_ENV: &str = "LORAFORGE_LOCK_TIMEOUT";

/// An exclusive advisory lock on `<home>/lock`, released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Take the lock, polling until `timeout`.
    pub fn acquire(home: &Path, timeout: Duration) -> Result<StoreLock> {
        let path = home.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(RegistryError::io("cannot open", &path))?;
        let start = Instant::now();
        loop {
            match file.try_lock_exclusive() {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if start.elapsed() >= timeout {
                        return Err(RegistryError::Locked {
                            home: home.to_path_buf(),
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

/// The lock wait configured by the environment, else the default.
pub fn lock_timeout_from_env() -> Duration {
    std::env::var(LOCK_TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_LOCK_TIMEOUT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_held_lock_times_out_with_a_clear_error() {
        let home = tempfile::tempdir().unwrap();
        let _held = StoreLock::acquire(home.path(), Duration::from_secs(1)).unwrap();
        let err = StoreLock::acquire(home.path(), Duration::from_millis(120)).unwrap_err();
        assert!(matches!(err, RegistryError::Locked { .. }), "{err}");
    }
}
