//! Trusting a SHA-256 the store recorded without reading the file again.
//!
//! When the store records a file's digest it also stamps the file: its modification time is
//! set a little in the past and that time is recorded beside the size. Later, a file with the
//! recorded size and exactly the recorded modification time is taken to hold the recorded bytes,
//! so a deployment never re-hashes gigabytes it hashed when saving; any other file is hashed.
//!
//! Back-dating is what makes the check sound: file systems keep modification times at the clock
//! tick (milliseconds), so a write landing in the same tick as the stamp would otherwise keep the
//! same time. Any write after stamping sets the time to "now", which is never the back-dated
//! stamp. Only a deliberate `touch -d` back to the exact nanosecond, with the size kept, would
//! pass; the digest is an integrity check against accidents, not a defence against the owner.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How far in the past stamped files are dated: more than any file system's time granularity.
const BACKDATE: Duration = Duration::from_secs(2);

/// Back-dates `path` and returns the stamp to record with its digest, or `None` when the file
/// system does not keep the time we set (the digest will then be checked by hashing).
pub(crate) fn stamp(path: &Path) -> Option<u64> {
    let when = SystemTime::now().checked_sub(BACKDATE)?;
    File::open(path).ok()?.set_modified(when).ok()?;
    let kept = modified_ns(path)?;
    (kept == nanos_since_epoch(when)?).then_some(kept)
}

/// Whether `path` still has the size and stamp recorded with its digest.
pub(crate) fn unchanged(path: &Path, bytes: u64, stamp: Option<u64>) -> bool {
    let Some(stamp) = stamp else {
        return false;
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    meta.is_file()
        && meta.len() == bytes
        && meta.modified().ok().and_then(nanos_since_epoch) == Some(stamp)
}

fn modified_ns(path: &Path) -> Option<u64> {
    nanos_since_epoch(std::fs::metadata(path).ok()?.modified().ok()?)
}

fn nanos_since_epoch(time: SystemTime) -> Option<u64> {
    u64::try_from(time.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_stamped_file_is_unchanged_until_written_even_in_the_same_tick() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let stamp = stamp(&path);
        assert!(stamp.is_some(), "the temp file system keeps set times");
        assert!(unchanged(&path, 10, stamp));
        assert!(!unchanged(&path, 11, stamp), "size differs");
        assert!(!unchanged(&path, 10, None), "no stamp recorded");

        // Same size, rewritten immediately: the back-dated stamp no longer matches.
        std::fs::write(&path, b"0123456788").unwrap();
        assert!(!unchanged(&path, 10, stamp));
        std::fs::remove_file(&path).unwrap();
        assert!(!unchanged(&path, 10, stamp), "gone");
    }
}
