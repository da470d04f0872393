//! Temporaries: unique per run, removed on drop, by the signal-time sweep and as stale leftovers
//! of dead processes; outputs that are not regular files refused (issue 11 #1, #2, #8).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;

use loraforge_staging::{
    check_output, registered, remove_registered, remove_stale_beside, OutputKind, Staged,
    StagingError,
};

/// The sweep removes every registered temporary of the process: tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn two_runs_on_one_output_get_distinct_temporaries_removed_on_drop() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("model.gguf");
    let (a, _fa) = Staged::file_beside(&out).unwrap();
    let (b, _fb) = Staged::file_beside(&out).unwrap();
    assert_ne!(a.path(), b.path());
    let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!(
            ".model.gguf.loraforge-tmp-{}-",
            std::process::id()
        )),
        "{name}"
    );
    assert!(registered().contains(&a.path().to_path_buf()));
    drop(a);
    drop(b);
    assert!(entries(d.path()).is_empty());
}

#[test]
fn the_signal_sweep_removes_live_temporaries() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("merged");
    let staged = Staged::dir_beside(&out).unwrap();
    std::fs::write(staged.path().join("model.safetensors"), b"partial").unwrap();
    let removed = remove_registered();
    assert!(removed.contains(&staged.path().to_path_buf()));
    assert!(entries(d.path()).is_empty());
    drop(staged);
}

#[test]
fn stale_temporaries_of_dead_processes_are_removed_live_ones_kept() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("model.gguf");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale_file = d
        .path()
        .join(format!(".model.gguf.loraforge-tmp-{dead}-abc.tmp"));
    std::fs::write(&stale_file, b"half a model").unwrap();
    let stale_dir = d
        .path()
        .join(format!(".model.gguf.loraforge-tmp-{dead}-xyz"));
    std::fs::create_dir(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("shard"), b"x").unwrap();
    // pid 1 is alive: another run writing the same output
    let live = d.path().join(".model.gguf.loraforge-tmp-1-def.tmp");
    std::fs::write(&live, b"in progress").unwrap();
    // someone else's file
    let other = d.path().join(".other.gguf.loraforge-tmp-999999-x.tmp");
    std::fs::write(&other, b"not ours").unwrap();
    let (staged, mut file) = Staged::file_beside(&out).unwrap();
    file.write_all(b"new").unwrap();
    drop(file);
    assert!(!stale_file.exists() && !stale_dir.exists());
    assert!(live.exists() && other.exists());
    staged.persist(&out).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"new");
    assert!(remove_stale_beside(&out).is_empty());
}

#[cfg(unix)]
#[test]
fn outputs_that_are_not_regular_files_are_refused_and_never_renamed_over() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let e = check_output(Path::new("/dev/null"), OutputKind::File).unwrap_err();
    assert!(
        matches!(
            e,
            StagingError::NotRegular {
                kind: "a character device",
                ..
            }
        ),
        "{e}"
    );
    let socket = d.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let (staged, _file) = Staged::file_beside(&socket).unwrap();
    let e = staged.persist(&socket).unwrap_err();
    assert!(
        matches!(
            e,
            StagingError::NotRegular {
                kind: "a socket",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_user_error());
    {
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket());
    }
    // the refused temporary was dropped
    assert_eq!(entries(d.path()), vec!["sock".to_string()]);
    // a folder where a file goes, a file where a folder goes
    let e = check_output(d.path(), OutputKind::File).unwrap_err();
    assert!(
        matches!(
            e,
            StagingError::NotRegular {
                kind: "a folder",
                ..
            }
        ),
        "{e}"
    );
    let e = check_output(&socket, OutputKind::Folder).unwrap_err();
    assert!(matches!(e, StagingError::NotRegular { .. }), "{e}");
    check_output(&d.path().join("new.gguf"), OutputKind::File).unwrap();
}

#[test]
fn a_folder_replaces_a_folder_and_nothing_is_left_aside() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("merged");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("old"), b"old").unwrap();
    let staged = Staged::dir_beside(&out).unwrap();
    std::fs::write(staged.path().join("new"), b"new").unwrap();
    staged.persist(&out).unwrap();
    assert_eq!(entries(&out), vec!["new".to_string()]);
    assert_eq!(entries(d.path()), vec!["merged".to_string()]);
}
