//! SIGINT / SIGTERM: remove the temporaries the libraries registered, then exit.
//!
//! A signal's default action ends the process without running destructors, which would leave a
//! half-written model-sized temporary beside the output. The libraries register every temporary
//! with `loraforge-staging` while it exists; this handler removes them and exits with the
//! conventional status 128 + signal number.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Starts a thread that waits for SIGINT or SIGTERM. Without it (the handler cannot be
/// installed) the signals keep their default action.
pub fn remove_temporaries_on_termination() {
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    // (if no thread can be started, the registration is dropped with the closure)
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                loraforge_staging::remove_registered();
                std::process::exit(128 + signal);
            }
        });
}

/// Crash tests: die by SIGKILL (no handler, no destructor, exactly like `kill -9`) when the work
/// reaches the checkpoint `LORAFORGE_TEST_CRASH_AT` names.
pub fn kill_self_at(point: &str, crash_at: Option<&str>) {
    if crash_at == Some(point) {
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
    }
}
