//! Measurement helpers shared by the end-to-end benches: the I/O floor (copying the weight
//! files), peak RSS and CPU time read from `/proc`, the run in a child process, the settings
//! read from the environment.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// An environment variable parsed as a number, or `default` when it is unset or not a number.
pub fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where a bench keeps its files: `$LORAFORGE_BENCH_DIR/<name>` (kept, so a generated model is
/// reused across runs), else a fresh temporary folder, removed when the returned guard drops.
pub fn work_dir(name: &str) -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("LORAFORGE_BENCH_DIR") {
        Some(d) => (None, PathBuf::from(d).join(name)),
        None => {
            let t = tempfile::tempdir().expect("a temporary folder");
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    }
}

/// Runs this bench binary again as `<exe> --child <args…>` (so that the peak RSS it reports is
/// the run's own) and returns the whitespace-separated fields it printed on stdout. Panics with
/// the child's stderr if it fails.
pub fn run_child<S: AsRef<OsStr>>(args: &[S]) -> Vec<String> {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let output = std::process::Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("the bench binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A numeric field (in kB) of `/proc/<pid>/status`, e.g. `VmHWM:` of `"self"`.
pub fn status_field(pid: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of this process so far (fields 14 and 15 of `/proc/self/stat`,
/// clock ticks at 100 Hz).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// Copy every `*.safetensors` file of `from` into `to` with 8 MiB reads and writes (like `cp`),
/// optionally fsyncing each file; returns the bytes copied. This is the I/O floor the merge and
/// the converter are compared with.
pub fn copy_safetensors(from: &Path, to: &Path, fsync: bool) -> std::io::Result<u64> {
    std::fs::create_dir_all(to)?;
    let mut total = 0;
    let mut buf = vec![0u8; 8 << 20];
    let mut names: Vec<PathBuf> = std::fs::read_dir(from)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    names.sort();
    for path in names {
        let mut src = std::fs::File::open(&path)?;
        let Some(name) = path.file_name() else {
            continue;
        };
        let mut dst = std::fs::File::create(to.join(name))?;
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                break;
            }
            dst.write_all(&buf[..n])?;
            total += n as u64;
        }
        if fsync {
            dst.sync_all()?;
        }
    }
    Ok(total)
}
