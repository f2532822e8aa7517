//! The read pool: a few threads of the store's own that share the work of long read steps.
//!
//! A read step with much to do splits it into groups: a step of many events is loaded and
//! checked in groups (its records are decoded later, by the consumer), and a step whose records
//! lie in many separate places of the segment files splits its `pread`s. The pool's threads take
//! some groups while the caller takes the others ([`ReadPool::fan_out`]), or begin them all while
//! the caller is still busy with the step before (read-ahead: [`ReadPool::begin`], then
//! [`Started::finish`]). The caller claims groups too, so when the pool is busy it simply does
//! all of them itself: a fan-out never waits for a job that has not started.
//!
//! Bounded: a fixed number of threads and a queue of at most [`QUEUE`] jobs. A group that does
//! not fit is not queued: the caller does it itself, as it would with no pool.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use dcb_core::StoreError;

/// Jobs queued for the pool at most.
pub(crate) const QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// The store's read threads.
pub(crate) struct ReadPool {
    /// The queue; dropping the pool closes it, which ends each thread after the jobs queued.
    tx: SyncSender<Job>,
    threads: usize,
    fan_outs: AtomicU64,
}

/// The default number of read threads: one fewer than the machine's cores (the caller's thread
/// is the other), at least one, at most three.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .clamp(1, 3)
}

impl ReadPool {
    /// A pool of `threads` threads, or `None` when `threads` is 0 or no thread could be started
    /// (reads then do all their work on the caller's thread, as they always can).
    pub(crate) fn start(threads: usize) -> Option<ReadPool> {
        if threads == 0 {
            return None;
        }
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("dcb-read-{i}"))
                .spawn(move || work(&rx));
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "could not start a read thread");
                    break;
                }
            }
        }
        (started > 0).then(|| ReadPool {
            tx,
            threads: started,
            fan_outs: AtomicU64::new(0),
        })
    }

    /// The number of threads.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Fan-outs of at least two groups so far.
    pub(crate) fn fan_outs(&self) -> u64 {
        self.fan_outs.load(Ordering::Relaxed)
    }

    /// The most groups worth making of one piece of work: one per thread, and the caller's.
    pub(crate) fn width(&self) -> usize {
        self.threads + 1
    }

    /// Queues `job`; gives it back when the queue is full or the pool is stopped.
    fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
        })
    }

    /// Runs `work(0) .. work(n - 1)` and returns their results in that order (`Err` for one that
    /// panicked): the caller's thread and up to `n - 1` pool threads each claim the next group
    /// until none is left, so that the caller never waits for a job that has not started (a
    /// fan-out started on a pool thread, or while the pool is busy, completes all the same).
    pub(crate) fn fan_out<T, F>(&self, n: usize, work: F) -> Vec<std::thread::Result<T>>
    where
        T: Send + 'static,
        F: Fn(usize) -> T + Send + Sync + 'static,
    {
        self.begin(n, work, n.saturating_sub(1)).finish()
    }

    /// Starts `work(0) .. work(n - 1)` on up to `helpers` pool threads and returns at once; the
    /// caller takes the groups left and collects the results with [`Started::finish`]. Dropping
    /// the [`Started`] instead cancels the groups not begun.
    pub(crate) fn begin<T, F>(&self, n: usize, work: F, helpers: usize) -> Started<T, F>
    where
        T: Send + 'static,
        F: Fn(usize) -> T + Send + Sync + 'static,
    {
        if n > 1 {
            self.fan_outs.fetch_add(1, Ordering::Relaxed);
        }
        let shared = Arc::new(FanOut {
            next: AtomicUsize::new(0),
            n,
            results: Mutex::new((0..n).map(|_| None).collect()),
            done: Condvar::new(),
            work: RwLock::new(Some(work)),
        });
        for _ in 0..self.threads.min(helpers).min(n) {
            let s = shared.clone();
            if self.submit(Box::new(move || s.run())).is_err() {
                break;
            }
        }
        Started {
            shared,
            finished: false,
        }
    }
}

/// A fan-out begun with [`ReadPool::begin`].
pub(crate) struct Started<T, F: Fn(usize) -> T> {
    shared: Arc<FanOut<T, F>>,
    finished: bool,
}

impl<T, F: Fn(usize) -> T> Started<T, F> {
    /// Takes the groups no thread has begun, waits for the others, and returns every result in
    /// order (`Err` for a group that panicked).
    pub(crate) fn finish(mut self) -> Vec<std::thread::Result<T>> {
        self.shared.run();
        let out = self.settle(self.shared.n);
        self.finished = true;
        out
    }

    /// Waits until groups `0..claimed` are done, takes their results and drops the work: a pool
    /// job that starts later finds no group left, and must not keep what the work holds (the
    /// store's files) alive meanwhile.
    fn settle(&self, claimed: usize) -> Vec<std::thread::Result<T>> {
        let shared = &self.shared;
        let mut results = shared.results.lock().unwrap_or_else(|p| p.into_inner());
        while results[..claimed].iter().any(Option::is_none) {
            results = shared.done.wait(results).unwrap_or_else(|p| p.into_inner());
        }
        let out = results.iter_mut().filter_map(Option::take).collect();
        drop(results);
        drop(
            shared
                .work
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        out
    }
}

impl<T, F: Fn(usize) -> T> Drop for Started<T, F> {
    fn drop(&mut self) {
        if !self.finished {
            // Cancel: no group begins from now on; those begun finish first.
            let claimed = self.shared.next.swap(usize::MAX / 2, Ordering::Relaxed);
            drop(self.settle(claimed.min(self.shared.n)));
        }
    }
}

/// The result of a group whose work returns a `Result`: a panic is a storage error.
pub(crate) fn joined<T>(
    result: std::thread::Result<Result<T, StoreError>>,
) -> Result<T, StoreError> {
    result.unwrap_or_else(|_| Err(StoreError::storage_msg("a read thread failed")))
}

/// A pool thread: runs queued jobs until the queue closes.
fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        // A job's panic is its own failure (a fan-out or read-ahead job turns it into a typed
        // error before it gets here); the thread stays.
        drop(catch_unwind(AssertUnwindSafe(job)));
    }
}

/// The shared state of one fan-out.
struct FanOut<T, F> {
    next: AtomicUsize,
    n: usize,
    results: Mutex<Vec<Option<std::thread::Result<T>>>>,
    done: Condvar,
    /// Taken away once every group is done.
    work: RwLock<Option<F>>,
}

impl<T, F: Fn(usize) -> T> FanOut<T, F> {
    fn run(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            let t = {
                let work = self.work.read().unwrap_or_else(|p| p.into_inner());
                match work.as_ref() {
                    Some(work) => catch_unwind(AssertUnwindSafe(|| work(i))),
                    // Unreachable: the work goes only after every group's result is in.
                    None => return,
                }
            };
            let mut results = self.results.lock().unwrap_or_else(|p| p.into_inner());
            results[i] = Some(t);
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fan_out_returns_every_result_in_order() {
        let pool = ReadPool::start(3).expect("threads start");
        for n in [0, 1, 2, 7, 100] {
            let got: Vec<usize> = pool.fan_out(n, |i| i * i).into_iter().flatten().collect();
            assert_eq!(got, (0..n).map(|i| i * i).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_fan_out_completes_when_the_queue_is_full_or_the_threads_are_busy() {
        // Block the only thread, then fill the queue: a fan-out must run on the caller alone.
        let (pool, hold_tx) = busy_pool();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut queued = 0;
        loop {
            let r = ran.clone();
            let job: Job = Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            });
            if pool.submit(job).is_err() {
                break;
            }
            queued += 1;
        }
        assert_eq!(queued, QUEUE);
        let got: Vec<usize> = pool.fan_out(5, |i| i + 1).into_iter().flatten().collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "nothing queued ran meanwhile"
        );
        hold_tx.send(()).ok();
        // The queued jobs still run: a fan-out on the now free pool completes after them.
        let again: Vec<usize> = pool.fan_out(2, |i| i).into_iter().flatten().collect();
        assert_eq!(again, vec![0, 1]);
    }

    #[test]
    fn pool_threads_take_groups_while_the_caller_works() {
        let pool = ReadPool::start(1).expect("a thread starts");
        // Whichever thread takes one group waits until the other group is done: the fan-out
        // completes only if two threads work on it at once.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (tx, rx) = (Mutex::new(Some(tx)), Mutex::new(rx));
        let names = pool.fan_out(2, move |i| {
            if i == 0 {
                drop(rx.lock().map(|rx| rx.recv()));
            } else {
                drop(tx.lock().map(|mut tx| tx.take()));
            }
            std::thread::current().name().map(str::to_owned)
        });
        let names: Vec<Option<String>> = names.into_iter().flatten().collect();
        assert_eq!(names.len(), 2);
        assert_ne!(names[0], names[1], "two threads took the two groups");
        assert!(
            names.iter().flatten().any(|n| n.starts_with("dcb-read-")),
            "{names:?}"
        );
        assert_eq!(pool.fan_outs(), 1);
    }

    /// A pool of one thread, busy until the returned sender is used (or dropped).
    fn busy_pool() -> (ReadPool, std::sync::mpsc::Sender<()>) {
        let pool = ReadPool::start(1).expect("a thread starts");
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (running_tx, running_rx) = std::sync::mpsc::channel::<()>();
        let hold_rx = Mutex::new(hold_rx);
        let blocker: Job = Box::new(move || {
            running_tx.send(()).ok();
            drop(hold_rx.lock().map(|rx| rx.recv()));
        });
        assert!(pool.submit(blocker).is_ok());
        running_rx.recv().expect("the blocker runs");
        (pool, hold_tx)
    }

    #[test]
    fn a_begun_fan_out_is_finished_by_the_caller_when_the_pool_is_busy() {
        let (pool, release) = busy_pool();
        let started = pool.begin(3, |i| i * 10, 3);
        let got: Vec<usize> = started.finish().into_iter().flatten().collect();
        assert_eq!(got, vec![0, 10, 20]);
        drop(release);
    }

    #[test]
    fn a_dropped_fan_out_begins_no_more_groups_and_lets_go_of_its_work() {
        let (pool, release) = busy_pool();
        let held = Arc::new(());
        let ran = Arc::new(AtomicUsize::new(0));
        let (h, r) = (held.clone(), ran.clone());
        let started = pool.begin(
            4,
            move |_| {
                let _keep = &h;
                r.fetch_add(1, Ordering::SeqCst)
            },
            4,
        );
        drop(started);
        assert_eq!(Arc::strong_count(&held), 1, "the work is gone");
        drop(release);
        // The queued job, whenever it runs, finds no group to begin; the pool still works.
        let after: Vec<usize> = pool.fan_out(2, |i| i).into_iter().flatten().collect();
        assert_eq!(after, vec![0, 1]);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_panicking_group_is_an_error_and_the_others_still_arrive() {
        let pool = ReadPool::start(2).expect("threads start");
        let got = pool.fan_out(6, |i| {
            assert_ne!(i, 3, "group 3 fails");
            i
        });
        assert_eq!(got.len(), 6);
        for (i, r) in got.into_iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(v, i),
                Err(_) => assert_eq!(i, 3),
            }
        }
        // The pool still works afterwards.
        let again: Vec<usize> = pool.fan_out(4, |i| i).into_iter().flatten().collect();
        assert_eq!(again, vec![0, 1, 2, 3]);
    }

    #[test]
    fn no_threads_means_no_pool() {
        assert!(ReadPool::start(0).is_none());
        assert!(default_threads() >= 1);
    }
}
