//! `single_threaded_blas` stops the worker threads OpenBLAS's pthread build starts at load (each
//! busy-waits ~0.1 s, taking a core from the work at every process start). Its own test binary:
//! no other test's threads come and go while the threads are counted.
#![allow(clippy::unwrap_used)]

#[cfg(target_os = "linux")]
#[test]
fn openblas_idle_workers_are_stopped_and_stay_stopped() {
    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only searches loaded objects.
    let pthread_build =
        !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"blas_thread_shutdown_".as_ptr()) }.is_null();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let before = threads();
    loraforge_adapter_merge::single_threaded_blas();
    let after = threads();
    if pthread_build && cores > 1 {
        assert!(
            after < before,
            "OpenBLAS's workers still run: {before} threads before, {after} after"
        );
    } else {
        assert_eq!(after, before, "nothing to stop without the pthread build");
    }
    // A second call (the merge makes one) must not start them again.
    loraforge_adapter_merge::single_threaded_blas();
    assert_eq!(threads(), after);
}
