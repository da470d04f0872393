//! Work cut into independent pieces, run on a rayon pool a bounded distance ahead of one
//! consumer that takes the results in order (the file writer).
//!
//! Converting tensor by tensor with a barrier at the end of each (or of each chunk) leaves
//! workers idle for most of a piece, thousands of times per model; here the pool always has the
//! next pieces, across tensor boundaries, while memory stays bounded by the pieces in flight.

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};

/// A job panicked (a bug): its result is replaced by this error rather than never arriving,
/// which would leave the consumer waiting for ever.
#[derive(Debug, thiserror::Error)]
#[error("a worker thread panicked ({0}); this is a bug in loraforge, please report it")]
pub(crate) struct WorkerPanicked(String);

/// What a job produced, or its panic.
type Outcome<T> = Result<T, WorkerPanicked>;

/// The results of a sequence of jobs, in the sequence's order.
pub(crate) struct Ordered<T> {
    /// Finished jobs, by their position in the sequence.
    done: Receiver<(usize, Outcome<T>)>,
    /// One permit per result taken; bounds the jobs in flight.
    permits: SyncSender<()>,
    /// Results that arrived before their turn.
    pending: BTreeMap<usize, Outcome<T>>,
    /// The position of the next result to hand out.
    next: usize,
}

impl<T: Send> Ordered<T> {
    /// Starts running `jobs` on `pool` (rayon's global pool when `None`) from a spawner thread
    /// of `scope`, at most `in_flight` ahead of [`Ordered::next`]. The spawner stops early
    /// when the `Ordered` is dropped.
    pub(crate) fn start<'scope, 'env: 'scope, J>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        pool: Option<&'env rayon::ThreadPool>,
        in_flight: usize,
        jobs: impl Iterator<Item = J> + Send + 'scope,
    ) -> Ordered<T>
    where
        T: 'scope,
        J: FnOnce() -> T + Send + 'scope,
    {
        let in_flight = in_flight.max(1);
        let (done_tx, done) = channel();
        let (permits, permit_rx) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            // Cannot fail: the channel holds `in_flight` and its receiver is alive.
            let _ = permits.try_send(());
        }
        scope.spawn(move || {
            let spawn_all = |s: &rayon::Scope<'scope>| {
                for (seq, job) in jobs.enumerate() {
                    if permit_rx.recv().is_err() {
                        break; // the consumer stopped
                    }
                    let done_tx = done_tx.clone();
                    s.spawn(move |_| {
                        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                            .map_err(|panic| WorkerPanicked(panic_message(panic.as_ref())));
                        // A closed channel means the consumer stopped: nothing to do.
                        let _ = done_tx.send((seq, outcome));
                    });
                }
            };
            match pool {
                Some(pool) => pool.in_place_scope(spawn_all),
                None => rayon::in_place_scope(spawn_all),
            }
        });
        Ordered {
            done,
            permits,
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    /// The next result in sequence, waiting for it; `None` after the last one.
    pub(crate) fn next(&mut self) -> Option<Outcome<T>> {
        loop {
            if let Some(r) = self.pending.remove(&self.next) {
                self.next += 1;
                // The spawner may already be done: a closed channel is fine.
                let _ = self.permits.try_send(());
                return Some(r);
            }
            let (seq, r) = self.done.recv().ok()?;
            self.pending.insert(seq, r);
        }
    }
}

/// The text a panic was raised with, when it is one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_owned(),
        (_, Some(s)) => s.clone(),
        _ => "no message".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn results_come_in_order_whatever_order_jobs_finish_in() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let got: Vec<usize> = std::thread::scope(|scope| {
            let jobs = (0..200usize).map(|i| {
                move || {
                    // Later jobs finish first within each group of 7.
                    std::thread::sleep(std::time::Duration::from_micros(((7 - i % 7) * 50) as u64));
                    i
                }
            });
            let mut ordered = Ordered::start(scope, Some(&pool), 6, jobs);
            std::iter::from_fn(|| ordered.next().map(Result::unwrap)).collect()
        });
        assert_eq!(got, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn no_more_than_in_flight_jobs_run_ahead_and_dropping_stops_the_spawner() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let started = AtomicUsize::new(0);
        let started = &started;
        std::thread::scope(|scope| {
            let jobs = (0..1000usize).map(move |i| {
                move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    i
                }
            });
            let mut ordered = Ordered::start(scope, None, 4, jobs);
            assert_eq!(ordered.next().unwrap().unwrap(), 0);
            assert_eq!(ordered.next().unwrap().unwrap(), 1);
            std::thread::sleep(std::time::Duration::from_millis(50));
            // 2 taken + 4 in flight at most.
            assert!(started.load(Ordering::SeqCst) <= 6);
            drop(ordered);
        });
        // Dropping stopped the spawner before the rest of the 1000.
        assert!(started.load(Ordering::SeqCst) <= 6);
    }

    #[test]
    fn a_panicking_job_becomes_an_error_in_its_place() {
        let got: Vec<Result<usize, String>> = std::thread::scope(|scope| {
            let jobs = (0..20usize).map(|i| {
                move || {
                    assert!(i != 5, "job five fails");
                    i
                }
            });
            let mut ordered = Ordered::start(scope, None, 3, jobs);
            std::iter::from_fn(|| ordered.next().map(|r| r.map_err(|e| e.to_string()))).collect()
        });
        assert_eq!(got.len(), 20);
        assert!(got[5].as_ref().unwrap_err().contains("job five fails"));
        assert!(got.iter().enumerate().all(|(i, r)| i == 5 || r == &Ok(i)));
    }
}
