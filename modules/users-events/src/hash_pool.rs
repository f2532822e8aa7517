//! A bounded, cancellable queue in front of a few dedicated threads, for the password hashes.
//!
//! Each Argon2 run holds ~19 MiB and tens of milliseconds of CPU by design, so hashes run on
//! [`HASH_THREADS`] threads of their own (never on the async runtime's blocking pool: the
//! allocator keeps such memory per thread, and spreading hashes over many pool threads made
//! memory grow with the number of threads that ever hashed, measured 18 MB -> 850 MB).
//!
//! In front of them, at most [`HASH_QUEUE`] jobs wait. A request that finds the queue full gets
//! 503 `busy` with `Retry-After: 1` at once instead of waiting behind everyone else. A job whose
//! request went away (the client closed the connection, so the handler's future was dropped)
//! is never run: a thread checks before each job, and a full queue first evicts such jobs
//! before refusing a new one. So abandoned logins cost nothing, however many were sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use fairway_runtime::http::ApiError;
use tokio::sync::oneshot;

/// Threads that compute password hashes.
pub const HASH_THREADS: usize = 2;

/// Jobs that may wait for a hashing thread (besides those running); one more is 503 `busy`.
pub const HASH_QUEUE: usize = 32;

/// The `Retry-After` (seconds) of a 503 `busy`.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

trait Job: Send {
    /// Whether nobody waits for the result any more.
    fn abandoned(&self) -> bool;
    /// Runs the job and hands the result over.
    fn run(self: Box<Self>);
}

struct Task<T, F> {
    tx: oneshot::Sender<T>,
    f: F,
}

impl<T: Send, F: FnOnce() -> T + Send> Job for Task<T, F> {
    fn abandoned(&self) -> bool {
        self.tx.is_closed()
    }

    fn run(self: Box<Self>) {
        let Task { tx, f } = *self;
        let _ = tx.send(f());
    }
}

/// How many jobs a pool ran, skipped and refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Jobs run (counted when they start).
    pub run: u64,
    /// Jobs never run because their requester went away.
    pub abandoned: u64,
    /// Submissions refused because the queue was full.
    pub refused: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    capacity: usize,
    threads: AtomicUsize,
    run: AtomicU64,
    abandoned: AtomicU64,
    refused: AtomicU64,
}

struct Queue {
    jobs: VecDeque<Box<dyn Job>>,
    closed: bool,
}

/// A bounded job queue served by dedicated threads; the threads end when it is dropped.
pub struct HashPool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HashPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashPool")
            .field("capacity", &self.shared.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

impl HashPool {
    /// A pool of `threads` threads (named `password-hash-N`) with room for `capacity` waiting
    /// jobs.
    pub fn new(threads: usize, capacity: usize) -> HashPool {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::with_capacity(capacity),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            threads: AtomicUsize::new(0),
            run: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        for i in 0..threads {
            let worker = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || work(&worker));
            match spawned {
                Ok(_) => {
                    shared.threads.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "cannot start a password hashing thread"),
            }
        }
        HashPool { shared }
    }

    /// Runs `f` on one of the pool's threads and waits for its result. 503 `busy` (with
    /// `Retry-After`) at once when the queue is full; when the returned future is dropped
    /// before a thread picks the job up, the job is skipped.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(Task { tx, f }))?;
        rx.await
            .map_err(|_| ApiError::internal("a password hashing job was lost"))
    }

    fn submit(&self, job: Box<dyn Job>) -> Result<(), ApiError> {
        if self.shared.threads.load(Ordering::Relaxed) == 0 {
            return Err(ApiError::unavailable("password hashing is unavailable"));
        }
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.jobs.len() >= self.shared.capacity {
            let before = queue.jobs.len();
            queue.jobs.retain(|j| !j.abandoned());
            let evicted = (before - queue.jobs.len()) as u64;
            self.shared.abandoned.fetch_add(evicted, Ordering::Relaxed);
        }
        if queue.jobs.len() >= self.shared.capacity {
            drop(queue);
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::busy(
                "the password hasher is busy; retry shortly",
                BUSY_RETRY_AFTER_SECS,
            ));
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// What the pool did so far.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            run: self.shared.run.load(Ordering::Relaxed),
            abandoned: self.shared.abandoned.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closed = true;
        self.shared.ready.notify_all();
    }
}

fn work(shared: &Shared) {
    loop {
        let job = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break job;
                }
                if queue.closed {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        if job.abandoned() {
            shared.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        shared.run.fetch_add(1, Ordering::Relaxed);
        job.run();
    }
}

/// The process's hashing pool: [`HASH_THREADS`] threads, [`HASH_QUEUE`] waiting jobs.
pub static POOL: std::sync::LazyLock<HashPool> =
    std::sync::LazyLock::new(|| HashPool::new(HASH_THREADS, HASH_QUEUE));

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Waits until `done` holds: polls every millisecond, gives up (panics) after 60 000 polls.
    async fn wait_until(done: impl Fn() -> bool) {
        for _ in 0..60_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the condition never held");
    }

    /// A job that blocks its thread until `release` is sent to.
    fn blocker(pool: &Arc<HashPool>) -> (mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, wait) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let p = Arc::clone(pool);
        let handle = tokio::spawn(async move {
            p.run(move || {
                let _ = started_tx.send(());
                let _ = wait.recv_timeout(Duration::from_secs(60));
            })
            .await
            .unwrap();
        });
        started_rx.recv_timeout(Duration::from_secs(60)).unwrap();
        (release, handle)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once_with_retry_after() {
        let pool = Arc::new(HashPool::new(1, 2));
        let (release, blocked) = blocker(&pool);
        // Two wait; the third is refused without waiting.
        let waiting: Vec<_> = (0..2)
            .map(|i| {
                let p = Arc::clone(&pool);
                tokio::spawn(async move { p.run(move || i).await })
            })
            .collect();
        wait_until(|| pool.shared.queue.lock().unwrap().jobs.len() >= 2).await;
        let e = pool.run(|| 9).await.unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (503, "busy"));
        assert_eq!(e.retry_after, Some(BUSY_RETRY_AFTER_SECS));
        assert_eq!(pool.stats().refused, 1);
        release.send(()).unwrap();
        blocked.await.unwrap();
        let mut results = Vec::new();
        for w in waiting {
            results.push(w.await.unwrap().unwrap());
        }
        assert_eq!(results, vec![0, 1]);
        assert_eq!(pool.stats().run, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_whose_requester_left_is_never_run() {
        let pool = Arc::new(HashPool::new(1, 4));
        let (release, blocked) = blocker(&pool);
        let ran = Arc::new(AtomicUsize::new(0));
        // Queued behind the blocker, then abandoned (the future is dropped).
        let r = Arc::clone(&ran);
        let p = Arc::clone(&pool);
        let abandoned = tokio::spawn(async move {
            p.run(move || {
                r.fetch_add(1, Ordering::SeqCst);
            })
            .await
        });
        wait_until(|| !pool.shared.queue.lock().unwrap().jobs.is_empty()).await;
        abandoned.abort();
        assert!(abandoned.await.unwrap_err().is_cancelled());
        release.send(()).unwrap();
        blocked.await.unwrap();
        // A later job runs: the abandoned one, queued before it, was looked at first.
        assert_eq!(pool.run(|| 5).await.unwrap(), 5);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        let stats = pool.stats();
        assert_eq!((stats.run, stats.abandoned), (2, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_of_abandoned_jobs_makes_room() {
        let pool = Arc::new(HashPool::new(1, 3));
        let (release, blocked) = blocker(&pool);
        let mut gone = Vec::new();
        for _ in 0..3 {
            let p = Arc::clone(&pool);
            gone.push(tokio::spawn(async move { p.run(|| ()).await }));
        }
        wait_until(|| pool.shared.queue.lock().unwrap().jobs.len() >= 3).await;
        for g in gone {
            g.abort();
            let _ = g.await;
        }
        // The queue is full of abandoned jobs: a new one evicts them instead of a 503.
        let p = Arc::clone(&pool);
        let fresh = tokio::spawn(async move { p.run(|| 7).await });
        wait_until(|| pool.stats().abandoned >= 3).await;
        release.send(()).unwrap();
        blocked.await.unwrap();
        assert_eq!(fresh.await.unwrap().unwrap(), 7);
        assert_eq!(pool.stats().refused, 0);
    }
}
