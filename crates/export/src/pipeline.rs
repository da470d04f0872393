//! Work cut into independent pieces, run a bounded distance ahead of one consumer that takes
//! the results in order (the file writer), by `threads` threads: the consumer and
//! `threads - 1` workers.
//!
//! Converting tensor by tensor with a barrier at the end of each (or of each chunk) leaves
//! workers idle for most of a piece, thousands of times per model; here the workers always have
//! the next pieces, across tensor boundaries, while memory stays bounded by the pieces in
//! flight. The consumer runs jobs itself while the result it needs next is not ready, so that
//! exactly `threads` threads are busy: a consumer that only waited would wake and sleep once
//! per result, and on a machine with as many cores as workers the scheduler then at times
//! stacked two workers on one core while the other idled for milliseconds (`perf sched`: 4–9 %
//! of a run). None of these threads is a rayon pool's: the jobs are sequential (rayon work inside
//! one would spill onto the global pool and break the thread count).

use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};

/// A job panicked (a bug): its result is replaced by this error rather than never arriving,
/// which would leave the consumer waiting for ever.
#[derive(Debug, thiserror::Error)]
#[error("a worker thread panicked ({0}); this is a bug in loraforge, please report it")]
pub(crate) struct WorkerPanicked(String);

/// What a job produced, or its panic.
type Outcome<T> = Result<T, WorkerPanicked>;

/// A job of the sequence.
type Job<'scope, T> = Box<dyn FnOnce() -> T + Send + 'scope>;

/// The jobs not yet taken and the window they are taken within.
struct Queue<'scope, T> {
    jobs: Box<dyn Iterator<Item = Job<'scope, T>> + Send + 'scope>,
    /// Jobs taken so far (the next one's position in the sequence).
    taken: usize,
    /// Results handed out by [`Ordered::next`].
    consumed: usize,
    in_flight: usize,
    /// `jobs` returned `None`.
    exhausted: bool,
    /// The consumer is gone: take nothing more.
    stopped: bool,
}

impl<'scope, T> Queue<'scope, T> {
    /// The next job and its position, when the window has room and the jobs are not done.
    fn take(&mut self) -> Option<(usize, Job<'scope, T>)> {
        if self.stopped || self.exhausted || self.taken >= self.consumed + self.in_flight {
            return None;
        }
        let Some(job) = self.jobs.next() else {
            self.exhausted = true;
            return None;
        };
        self.taken += 1;
        Some((self.taken - 1, job))
    }
}

/// The queue and the signal that its window moved (or it stopped).
struct Shared<'scope, T> {
    queue: Mutex<Queue<'scope, T>>,
    room: Condvar,
}

/// The results of a sequence of jobs, in the sequence's order.
pub(crate) struct Ordered<'scope, T> {
    shared: Arc<Shared<'scope, T>>,
    /// Finished jobs, by their position in the sequence.
    done: Receiver<(usize, Outcome<T>)>,
    /// Results that arrived before their turn.
    pending: BTreeMap<usize, Outcome<T>>,
    /// The position of the next result to hand out.
    next: usize,
}

impl<'scope, T: Send + 'scope> Ordered<'scope, T> {
    /// Starts running `jobs` at most `in_flight` ahead of [`Ordered::next`], on `threads - 1`
    /// threads of `scope` and, from [`Ordered::next`], the caller's. No new job starts once
    /// the `Ordered` is dropped.
    pub(crate) fn start<'env: 'scope, J>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        threads: usize,
        in_flight: usize,
        jobs: impl Iterator<Item = J> + Send + 'scope,
    ) -> Ordered<'scope, T>
    where
        J: FnOnce() -> T + Send + 'scope,
    {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: Box::new(jobs.map(|j| Box::new(j) as Job<'scope, T>)),
                taken: 0,
                consumed: 0,
                in_flight: in_flight.max(1),
                exhausted: false,
                stopped: false,
            }),
            room: Condvar::new(),
        });
        let (done_tx, done) = channel();
        for _ in 1..threads {
            let shared = Arc::clone(&shared);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                while let Some((seq, job)) = wait_for_job(&shared) {
                    if done_tx.send((seq, run(job))).is_err() {
                        return; // the consumer is gone
                    }
                }
            });
        }
        Ordered {
            shared,
            done,
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    /// The next result in sequence, working on the jobs while it is not ready, else waiting
    /// for it; `None` after the last one.
    pub(crate) fn next(&mut self) -> Option<Outcome<T>> {
        loop {
            while let Ok((seq, r)) = self.done.try_recv() {
                self.pending.insert(seq, r);
            }
            if let Some(r) = self.pending.remove(&self.next) {
                self.next += 1;
                if let Ok(mut q) = self.shared.queue.lock() {
                    q.consumed = self.next;
                }
                self.shared.room.notify_all();
                return Some(r);
            }
            let job = self.shared.queue.lock().ok().and_then(|mut q| q.take());
            if let Some((seq, job)) = job {
                self.pending.insert(seq, run(job));
                continue;
            }
            match self.done.recv() {
                Ok((seq, r)) => {
                    self.pending.insert(seq, r);
                }
                // Every worker is gone: the results still pending are all there is.
                Err(_) => {
                    return self.pending.remove(&self.next).inspect(|_| self.next += 1);
                }
            }
        }
    }
}

impl<T> Drop for Ordered<'_, T> {
    fn drop(&mut self) {
        if let Ok(mut q) = self.shared.queue.lock() {
            q.stopped = true;
        }
        self.shared.room.notify_all();
    }
}

/// The next job within the window, waiting for room; `None` when the jobs ran out or the
/// consumer is gone.
fn wait_for_job<'scope, T>(shared: &Shared<'scope, T>) -> Option<(usize, Job<'scope, T>)> {
    let mut q = shared.queue.lock().ok()?;
    loop {
        if let Some(taken) = q.take() {
            return Some(taken);
        }
        if q.stopped || q.exhausted {
            return None;
        }
        q = shared.room.wait(q).ok()?;
    }
}

/// Runs `job`, catching a panic.
fn run<T>(job: Job<'_, T>) -> Outcome<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
        .map_err(|panic| WorkerPanicked(panic_message(panic.as_ref())))
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

    /// Thread counts: the consumer with workers, the consumer alone.
    const MODES: [usize; 3] = [3, 2, 1];

    #[test]
    fn results_come_in_order_whatever_order_jobs_finish_in() {
        for mode in MODES {
            let got: Vec<usize> = std::thread::scope(|scope| {
                let jobs = (0..200usize).map(|i| {
                    move || {
                        // Later jobs finish first within each group of 7.
                        let micros = ((7 - i % 7) * 50) as u64;
                        std::thread::sleep(std::time::Duration::from_micros(micros));
                        i
                    }
                });
                let mut ordered = Ordered::start(scope, mode, 6, jobs);
                std::iter::from_fn(|| ordered.next().map(Result::unwrap)).collect()
            });
            assert_eq!(got, (0..200).collect::<Vec<_>>(), "{mode:?}");
        }
    }

    #[test]
    fn no_more_than_in_flight_jobs_run_ahead_and_dropping_stops_the_workers() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for mode in MODES {
            let started = AtomicUsize::new(0);
            let started = &started;
            std::thread::scope(|scope| {
                let jobs = (0..1000usize).map(move |i| {
                    move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        i
                    }
                });
                let mut ordered = Ordered::start(scope, mode, 4, jobs);
                assert_eq!(ordered.next().unwrap().unwrap(), 0);
                assert_eq!(ordered.next().unwrap().unwrap(), 1);
                std::thread::sleep(std::time::Duration::from_millis(50));
                // 2 taken + 4 in flight at most; with workers, they filled the window.
                let n = started.load(Ordering::SeqCst);
                assert!(n <= 6, "{mode:?}: {n}");
                if mode > 1 {
                    assert_eq!(n, 6, "{mode:?}");
                }
                drop(ordered);
            });
            // Dropping stopped the workers before the rest of the 1000.
            assert!(started.load(Ordering::SeqCst) <= 6, "{mode:?}");
        }
    }

    #[test]
    fn a_panicking_job_becomes_an_error_in_its_place() {
        for mode in MODES {
            let got: Vec<Result<usize, String>> = std::thread::scope(|scope| {
                let jobs = (0..20usize).map(|i| {
                    move || {
                        assert!(i != 5, "job five fails");
                        i
                    }
                });
                let mut ordered = Ordered::start(scope, mode, 3, jobs);
                std::iter::from_fn(|| ordered.next().map(|r| r.map_err(|e| e.to_string())))
                    .collect()
            });
            assert_eq!(got.len(), 20, "{mode:?}");
            assert!(got[5].as_ref().unwrap_err().contains("job five fails"));
            assert!(got.iter().enumerate().all(|(i, r)| i == 5 || r == &Ok(i)));
        }
    }

    #[test]
    fn a_helping_consumer_alone_runs_every_job_on_its_own_thread() {
        let me = std::thread::current().id();
        let ran_here: Vec<bool> = std::thread::scope(|scope| {
            let jobs = (0..50usize).map(|_| move || std::thread::current().id() == me);
            let mut ordered = Ordered::start(scope, 1, 8, jobs);
            std::iter::from_fn(|| ordered.next().map(Result::unwrap)).collect()
        });
        assert_eq!(ran_here, vec![true; 50]);
    }

    #[test]
    fn an_empty_sequence_ends_at_once() {
        for mode in MODES {
            std::thread::scope(|scope| {
                let jobs = std::iter::empty::<fn() -> usize>();
                let mut ordered = Ordered::start(scope, mode, 4, jobs);
                assert!(ordered.next().is_none(), "{mode:?}");
                assert!(ordered.next().is_none(), "{mode:?}");
            });
        }
    }
}
