//! Progress reporting for loraforge's long-running work.
//!
//! Libraries never draw progress bars or print. Long work (a merge, a GGUF export, a quantization,
//! an upload to Ollama) reports through the [`Reporter`] trait instead; the CLI turns reports into
//! progress bars, the registry turns them into persisted job records, tests use [`NoProgress`].
//!
//! ```
//! use loraforge_progress::{NoProgress, Reporter};
//!
//! fn copy_tensors(reporter: &dyn Reporter) {
//!     reporter.begin("merge", Some(3));
//!     for _ in 0..3 {
//!         reporter.advance(1);
//!     }
//!     reporter.finish();
//! }
//! copy_tensors(&NoProgress);
//! ```
#![deny(missing_docs)]

/// Receives progress from a long-running operation.
///
/// Implementations must be cheap and thread-safe: `advance` may be called from worker threads for
/// every tensor or block. Units are whatever the phase says (bytes for I/O-bound phases).
pub trait Reporter: Send + Sync {
    /// A new phase starts (`"merge"`, `"quantize"`, `"upload"` …) with its total units when known.
    fn begin(&self, phase: &str, total: Option<u64>);
    /// `units` more units of the current phase are done.
    fn advance(&self, units: u64);
    /// A human-readable status line (current tensor, server status message …).
    fn message(&self, _text: &str) {}
    /// The current phase is complete.
    fn finish(&self) {}
    /// The work reached a named point where its durable state just changed (a file renamed into
    /// place, a record written). Nothing to report for a progress bar; the CLI's crash tests stop
    /// the process here (`LORAFORGE_TEST_CRASH_AT`) to check what a kill at that instant leaves.
    ///
    /// The points: `convert-output` and `quantize-output` (the output GGUF was renamed into place),
    /// `job-queued`, `job-running` (the job record says so), `save-staged` (the merged entry is
    /// complete in staging), `save-published` (the saved entry was renamed into place, the job
    /// record not yet updated), `export-cached` (the GGUF is in the export cache, its sidecar
    /// not yet), `deploy-created` (Ollama has the model; its record staged, not published), `deploy-published`
    /// (the deployed entry was renamed into place).
    fn checkpoint(&self, _point: &str) {}
}

/// A reporter that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Reporter for NoProgress {
    fn begin(&self, _phase: &str, _total: Option<u64>) {}
    fn advance(&self, _units: u64) {}
}

impl<R: Reporter + ?Sized> Reporter for &R {
    fn begin(&self, phase: &str, total: Option<u64>) {
        (**self).begin(phase, total)
    }
    fn advance(&self, units: u64) {
        (**self).advance(units)
    }
    fn message(&self, text: &str) {
        (**self).message(text)
    }
    fn finish(&self) {
        (**self).finish()
    }
    fn checkpoint(&self, point: &str) {
        (**self).checkpoint(point)
    }
}

impl<R: Reporter + ?Sized> Reporter for std::sync::Arc<R> {
    fn begin(&self, phase: &str, total: Option<u64>) {
        (**self).begin(phase, total)
    }
    fn advance(&self, units: u64) {
        (**self).advance(units)
    }
    fn message(&self, text: &str) {
        (**self).message(text)
    }
    fn finish(&self) {
        (**self).finish()
    }
    fn checkpoint(&self, point: &str) {
        (**self).checkpoint(point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counter(AtomicU64);
    impl Reporter for Counter {
        fn begin(&self, _phase: &str, _total: Option<u64>) {}
        fn advance(&self, units: u64) {
            self.0.fetch_add(units, Ordering::Relaxed);
        }
    }

    #[test]
    fn references_and_arcs_forward_to_the_reporter() {
        let counter = std::sync::Arc::new(Counter(AtomicU64::new(0)));
        let by_ref: &dyn Reporter = &counter;
        by_ref.advance(2);
        counter.clone().advance(3);
        assert_eq!(counter.0.load(Ordering::Relaxed), 5);
    }
}
