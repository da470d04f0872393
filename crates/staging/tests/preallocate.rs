//! `preallocate` reserves the disk for an output before it is written, without changing what
//! the file holds, and fails at once when the output cannot fit.
#![allow(clippy::unwrap_used)]

use std::io::Write;

#[cfg(target_os = "linux")]
#[test]
fn space_is_reserved_without_changing_the_file_and_an_output_that_cannot_fit_fails_at_once() {
    use std::os::unix::fs::MetadataExt;

    // The build folder is on the disk the outputs of a real run would use; /tmp may be tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("out.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let len = 8u64 << 20;
    loraforge_staging::preallocate(&file, len).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 0, "the file's size must not change");
    assert!(
        meta.blocks() * 512 >= len,
        "{} bytes allocated, {len} reserved (does this filesystem support fallocate?)",
        meta.blocks() * 512
    );
    file.write_all(b"GGUF").unwrap();
    drop(file);
    assert_eq!(std::fs::read(&path).unwrap(), b"GGUF");

    // An output no disk here can hold (1 EiB) fails at once, as a full disk does: an error
    // before the work, not a partial file after it. (ext4 refuses the size itself, EFBIG;
    // filesystems with larger limits run out of space, ENOSPC.)
    let big = std::fs::File::create(dir.path().join("big.gguf")).unwrap();
    let error = loraforge_staging::preallocate(&big, 1 << 60).unwrap_err();
    assert!(
        matches!(error.raw_os_error(), Some(libc::EFBIG | libc::ENOSPC)),
        "{error}"
    );
    assert_eq!(big.metadata().unwrap().len(), 0);
}
