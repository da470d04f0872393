//! Progress bars on stderr for the libraries' `Reporter` reports.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use loraforge_progress::Reporter;

/// Draws one bar per phase; silent when `--quiet`, `--json` or stderr is not a terminal.
pub struct BarReporter {
    bar: Mutex<Option<ProgressBar>>,
    enabled: bool,
    delay: Option<std::time::Duration>,
    crash_at: Option<String>,
}

impl BarReporter {
    /// `delay` and `crash_at` are test aids: a pause at every report (see
    /// `env::test_progress_delay`), a SIGKILL at that checkpoint (see `env::test_crash_at`).
    pub fn new(
        enabled: bool,
        delay: Option<std::time::Duration>,
        crash_at: Option<String>,
    ) -> BarReporter {
        BarReporter {
            bar: Mutex::new(None),
            enabled,
            delay,
            crash_at,
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(guard) = self.bar.lock() {
            if let Some(bar) = guard.as_ref() {
                f(bar);
            }
        }
    }
}

fn style_for(phase: &str, known_total: bool) -> ProgressStyle {
    let bytes = matches!(
        phase,
        "merge" | "convert" | "quantize" | "upload" | "export" | "copy"
    );
    let template = match (known_total, bytes) {
        (true, true) => "{prefix:>9.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}",
        (true, false) => "{prefix:>9.bold} [{bar:30}] {pos}/{len} eta {eta} {wide_msg}",
        (false, _) => "{prefix:>9.bold} {spinner} {elapsed} {wide_msg}",
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Reporter for BarReporter {
    fn begin(&self, phase: &str, total: Option<u64>) {
        if !self.enabled {
            return;
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(style_for(phase, total.is_some()));
        bar.set_prefix(phase.to_string());
        if let Ok(mut guard) = self.bar.lock() {
            if let Some(old) = guard.take() {
                old.finish();
            }
            *guard = Some(bar);
        }
    }

    fn advance(&self, units: u64) {
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
        self.with_bar(|bar| bar.inc(units));
    }

    fn message(&self, text: &str) {
        self.with_bar(|bar| bar.set_message(text.to_string()));
    }

    fn finish(&self) {
        if let Ok(mut guard) = self.bar.lock() {
            if let Some(bar) = guard.take() {
                bar.finish();
            }
        }
    }

    fn checkpoint(&self, point: &str) {
        crate::signals::kill_self_at(point, self.crash_at.as_deref());
    }
}

impl Drop for BarReporter {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.bar.lock() {
            if let Some(bar) = guard.take() {
                bar.abandon();
            }
        }
    }
}
