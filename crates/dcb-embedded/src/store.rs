//! The embedded store: opening, reads, subscriptions and consumer state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use async_trait::async_trait;
use dcb_core::codec::StoredEvent;
use dcb_core::limits::{validate_append, validate_consumer, validate_state_write};
use dcb_core::{
    AppendRequest, Appended, EventStore, InputError, Position, Query, ReadOptions, ReadStream,
    StateCommit, StoreError, Subscription,
};
use tokio::sync::{oneshot, watch};

// Re-exported for `backup.rs`, which reads the consumer keyspace through it.
pub(crate) use crate::disk::Disk;
use crate::index::{Index, Span};
use crate::keys;
use crate::read;
use crate::readpool::ReadPool;
use crate::recent::Recent;
use crate::writer::{self, Job};

pub(crate) struct Shared {
    /// Events between index snapshots (0: none).
    pub(crate) snapshot_every: u64,
    /// The head of the snapshot the store was opened from (0: none).
    pub(crate) snapshot_head: u64,
    /// The size at which a segment is sealed.
    pub(crate) segment_bytes: u64,
    /// Bytes of sealed segments' index blocks held in memory at most.
    pub(crate) index_memory: u64,
    disk: RwLock<Option<Arc<Disk>>>,
    pub(crate) recent: RwLock<Recent>,
    index: RwLock<Index>,
    checkpoints: Mutex<HashMap<String, Position>>,
    head: watch::Sender<u64>,
    path: PathBuf,
    /// The read threads (`None`: reads do all their work on the caller's thread).
    pub(crate) pool: Option<ReadPool>,
}

pub(crate) fn fjall_err(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Locked => {
            StoreError::Locked("the data directory is open in another process".into())
        }
        other => StoreError::storage(other),
    }
}

impl Shared {
    pub(crate) fn index_read(&self) -> RwLockReadGuard<'_, Index> {
        // Index updates cannot panic halfway (pushes onto vectors), so a poisoned lock still
        // guards consistent data.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn index_write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `max` positions in `span` matching `items` (normalised, non-`All`), in order: the
    /// in-memory part answered under the index lock, the sealed segments' files read after it
    /// is released (they are immutable), so that the writer never waits for a file read.
    pub(crate) fn matches(
        &self,
        items: &[dcb_core::QueryItem],
        span: Span,
        max: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let (memory, sealed) = {
            let index = self.index_read();
            (
                index.memory_matches(items, span, max),
                index.sealed_in(span),
            )
        };
        crate::index::combine(memory, &sealed, items, span, max)
    }

    /// The open database, or `Unavailable` while the writer is reopening it.
    pub(crate) fn disk(&self) -> Result<Arc<Disk>, StoreError> {
        self.disk
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Unavailable("the store is reopening after a storage failure".into())
            })
    }

    /// Takes the database out (readers get `Unavailable` until [`Shared::put_disk`]).
    pub(crate) fn take_disk(&self) -> Option<Arc<Disk>> {
        self.disk.write().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(crate) fn put_disk(&self, disk: Arc<Disk>) {
        *self.disk.write().unwrap_or_else(|p| p.into_inner()) = Some(disk);
    }

    pub(crate) fn replace_checkpoints(&self, all: HashMap<String, Position>) {
        *self.checkpoints() = all;
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn checkpoints(&self) -> std::sync::MutexGuard<'_, HashMap<String, Position>> {
        self.checkpoints.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn checkpoint_cached(&self, consumer: &str) -> Option<Position> {
        self.checkpoints().get(consumer).copied()
    }

    pub(crate) fn cache_checkpoints(&self, updates: HashMap<String, Position>) {
        if !updates.is_empty() {
            self.checkpoints().extend(updates);
        }
    }

    pub(crate) fn forget_checkpoint(&self, consumer: &str) {
        self.checkpoints().remove(consumer);
    }

    pub(crate) fn publish_head(&self, head: u64) {
        self.head.send_replace(head);
    }

    pub(crate) fn recent(&self) -> RwLockWriteGuard<'_, Recent> {
        self.recent.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn recent_read(&self) -> RwLockReadGuard<'_, Recent> {
        self.recent.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads and decodes the event at `position`.
    pub(crate) fn load(&self, position: u64) -> Result<StoredEvent, StoreError> {
        let record = self.records(&[position], None)?.pop().ok_or_else(|| {
            StoreError::Corrupted(format!("indexed event at position {position} is missing"))
        })?;
        writer::decode(position, record)
    }
}

struct WriterHandle {
    tx: Mutex<Option<Sender<Job>>>,
    /// The writer's state, shared by its thread and the blocking appends that commit on their own.
    writer: Arc<writer::Writer>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish its last group and exit; joining it means the
        // data directory is released when the last handle is gone.
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The default event store: durable, embedded, one process.
///
/// Cheap to clone; clones share one store. The data directory is locked while any clone lives.
#[derive(Clone)]
pub struct EmbeddedStore {
    writer: Arc<WriterHandle>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

/// Tuning of an embedded store. Durability is not tunable: every append is fsync'd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Bytes of recently committed event records kept in memory, so that reads of recent events
    /// skip the segment files (default 8 MiB; 0 turns the cache off). Older records are read
    /// from the segment files through the operating system's page cache, which is not part of
    /// the process's own memory.
    pub recent_bytes: usize,
    /// Write an index snapshot every this many events, and when the store closes (default one
    /// million; 0 turns snapshots off: every open indexes the active segment's events from the
    /// log). A snapshot holds only the in-memory part of the indexes, the active segment's (the
    /// sealed segments' are in their index files), so each is bounded by one segment.
    pub index_snapshot_every: u64,
    /// The size at which the active segment file is sealed and a new one started (default
    /// 128 MiB; at least 4 KiB, at most 1 GiB). A segment may exceed it by one commit group.
    pub segment_bytes: u64,
    /// Threads of the store's read pool (default: one fewer than the machine's cores, at least
    /// one, at most three; 0: none). A read step of at least 512 events is loaded and checked
    /// in groups (a long read's next step begun on the pool while its consumer works through the
    /// current one), and one whose records lie in at least 128 separate places of the segment
    /// files has its `pread`s split in groups: the caller's thread and these threads each take
    /// groups until none is left. The records are decoded as the read hands them out, on the
    /// consumer's thread, so that an event's allocations and reference counts stay on one
    /// thread. The pool queues at most 64 jobs; a group that does not fit, or that no thread has
    /// started when the caller is done with its own, is done by the caller.
    pub read_threads: usize,
    /// Bytes of the sealed segments' index files held in memory (default 64 MiB; 0: none): the
    /// blocks of the newest sealed segments whose blocks fit together, loaded (and every block
    /// checked) when the store opens and when a segment is sealed, so that a lookup in those
    /// segments reads no file. Older segments' blocks are read from their files through the
    /// page cache and checked each time, as are all of them with 0. About 5 bytes per event
    /// with one tag: the default holds the index of the newest 12 million or so such events.
    pub index_memory_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            recent_bytes: 8 * 1024 * 1024,
            index_snapshot_every: 1_000_000,
            segment_bytes: crate::segment::DEFAULT_SEGMENT_BYTES,
            read_threads: crate::readpool::default_threads(),
            index_memory_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Options {
    /// Sets [`Options::index_snapshot_every`].
    pub fn index_snapshot_every(mut self, events: u64) -> Options {
        self.index_snapshot_every = events;
        self
    }

    /// Sets [`Options::index_memory_bytes`].
    pub fn index_memory_bytes(mut self, bytes: u64) -> Options {
        self.index_memory_bytes = bytes;
        self
    }

    /// Sets [`Options::segment_bytes`].
    pub fn segment_bytes(mut self, bytes: u64) -> Options {
        self.segment_bytes = bytes;
        self
    }

    /// Sets [`Options::read_threads`].
    pub fn read_threads(mut self, threads: usize) -> Options {
        self.read_threads = threads;
        self
    }

    /// Sets [`Options::recent_bytes`].
    pub fn recent_bytes(mut self, bytes: usize) -> Options {
        self.recent_bytes = bytes;
        self
    }
}

/// Figures about an open store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Last committed position (`None`: empty).
    pub head: Option<Position>,
    /// Number of events.
    pub events: u64,
    /// Type and tag postings held in memory: those of the active segment only.
    pub postings: usize,
    /// Type and tag postings in the sealed segments' index files (on disk, read on demand).
    pub sealed_postings: u64,
    /// Bytes of the sealed segments' index blocks held in memory (at most
    /// [`Options::index_memory_bytes`]).
    pub index_memory: u64,
    /// Threads of the read pool (0: none; see [`Options::read_threads`]).
    pub read_threads: usize,
    /// Pieces of read work split into groups for the read pool since the store was opened (a
    /// long step's loading, or a step's scattered `pread`s).
    pub read_fan_outs: u64,
    /// Appends committed on their caller's thread since the store was opened (blocking appends
    /// that found the writer idle, see [`EmbeddedStore::append_blocking`]).
    pub caller_commits: u64,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in directory `path`.
    ///
    /// Loads the sealed segments' index files (rebuilding missing or damaged ones from their
    /// segments), then the index snapshot of the active segment, and indexes the events after
    /// it (or the whole active segment when there is no usable snapshot). A data directory of
    /// schema version 1 (events in fjall) is migrated to the segment log once, here. Fails with
    /// [`StoreError::Locked`] when another process (or handle) has the directory open, and with
    /// [`StoreError::Corrupted`] when stored data is damaged.
    pub fn open(path: impl AsRef<Path>) -> Result<EmbeddedStore, StoreError> {
        EmbeddedStore::open_with(path, Options::default())
    }

    /// Opens (or creates) the store in directory `path` with `options`.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: Options,
    ) -> Result<EmbeddedStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(StoreError::storage)?;
        let disk = Disk::open(&path, options.segment_bytes)?;
        let sealed =
            crate::segindex::load_all(disk.log.dir(), &disk.log, options.index_memory_bytes)?;
        let mut index = disk.load_snapshot(&path, options.index_snapshot_every > 0)?;
        index.set_sealed(sealed);
        let from_snapshot = index.count;
        let snapshot_head = index.head;
        disk.scan_into(&mut index)?;
        tracing::debug!(
            from_snapshot,
            scanned = index.count - from_snapshot,
            "indexes loaded"
        );
        let checkpoints = disk.checkpoints()?;
        tracing::debug!(path = %path.display(), events = index.events(), "embedded store opened");
        let head = index.head;
        let shared = Arc::new(Shared {
            disk: RwLock::new(Some(Arc::new(disk))),
            recent: RwLock::new(Recent::with_cap(options.recent_bytes)),
            snapshot_every: options.index_snapshot_every,
            snapshot_head,
            segment_bytes: options.segment_bytes,
            index_memory: options.index_memory_bytes,
            index: RwLock::new(index),
            checkpoints: Mutex::new(checkpoints),
            head: watch::channel(head).0,
            path,
            pool: ReadPool::start(options.read_threads),
        });
        let (tx, rx) = channel();
        let for_writer = shared.clone();
        let writer = Arc::new(writer::Writer::new(&shared));
        let its_writer = writer.clone();
        let thread = std::thread::Builder::new()
            .name("dcb-writer".into())
            .spawn(move || writer::run(for_writer, its_writer, rx))
            .map_err(StoreError::storage)?;
        Ok(EmbeddedStore {
            writer: Arc::new(WriterHandle {
                tx: Mutex::new(Some(tx)),
                writer,
                thread: Mutex::new(Some(thread)),
            }),
            shared,
        })
    }

    /// What the store's readers share (for the read path's own tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Figures about the store.
    pub fn stats(&self) -> Stats {
        let index = self.shared.index_read();
        Stats {
            head: to_head(index.head),
            events: index.events(),
            postings: index.postings(),
            sealed_postings: index.sealed_postings(),
            index_memory: index.index_memory(),
            read_threads: self.shared.pool.as_ref().map_or(0, ReadPool::threads),
            read_fan_outs: self.shared.pool.as_ref().map_or(0, ReadPool::fan_outs),
            caller_commits: self.writer.writer.caller_commits(),
        }
    }

    /// Writes fjall's in-memory tables (consumer checkpoints and state) to its disk segments now
    /// (fjall also does this on its own when they fill up). Durability does not depend on it:
    /// every event is already in its fsync'd segment frame, every state commit in fjall's
    /// fsync'd journal.
    pub fn flush(&self) -> Result<(), StoreError> {
        let disk = self.shared.disk()?;
        for ks in [&disk.meta, &disk.consumers] {
            ks.rotate_memtable_and_wait().map_err(fjall_err)?;
        }
        Ok(())
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let guard = self.writer.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else {
            return Err(StoreError::Closed);
        };
        self.writer.writer.sending();
        tx.send(job).map_err(|_| {
            self.writer.writer.not_sent();
            StoreError::Closed
        })
    }

    /// Appends as [`EventStore::append_request`] does, blocking the calling thread until the
    /// outcome is durable (or refused): the form for synchronous callers, a thread of their own
    /// such as an import tool or a test driver.
    ///
    /// When the writer is idle (nothing queued, no commit in progress) and appends have not
    /// been arriving concurrently, the append is decided and committed on the calling thread,
    /// with the same checks, the same frame and the same `fdatasync` as a queued one, and
    /// without the two thread handoffs of the queue (see docs/BENCHMARKS.md for what that
    /// saves a sequential writer). Otherwise it joins the queue and its group commit like any
    /// other append: once the writer thread commits groups of several appends, or appends
    /// queue up while a caller commits its own, callers queue until a group of one shows the
    /// load has gone, so that concurrent appends keep sharing fsyncs. The outcome, and every
    /// guarantee, are those of `append_request`.
    ///
    /// Do not call it from an async task: it blocks the thread for at least one `fdatasync`
    /// (and, when it commits on its own, for what the writer thread would otherwise do after
    /// that commit: the periodic index snapshot, or sealing a full segment). Called there all
    /// the same, it holds the task's thread until the outcome is known, as on any thread: its
    /// wait does not draw on the task's cooperative budget, so it never waits forever for a
    /// reply already sent.
    pub fn append_blocking(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        validate_append(&request)?;
        let (tx, rx) = oneshot::channel();
        let job = Job::Append(request, tx);
        // The queue closes only when the last handle is dropped, so a caller holding one may
        // commit without looking at it; `send` reports a closed queue.
        if let Err(job) = self.writer.writer.commit_here(&self.shared, job) {
            self.send(job)?;
        }
        // Unconstrained: a tokio channel's receive draws on the current task's cooperative
        // budget, and a task blocked here never yields to have it reset (it would wait forever).
        futures::executor::block_on(tokio::task::unconstrained(rx))
            .map_err(|_| StoreError::Closed)?
    }
}

fn to_head(head: u64) -> Option<Position> {
    (head > 0).then(|| Position::from_u64(head))
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        validate_append(&request)?;
        let (tx, rx) = oneshot::channel();
        self.send(Job::Append(request, tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        dcb_core::check_read(&query, &options)?;
        let head = self.shared.index_read().head;
        let items = match query.normalized() {
            Query::All => None,
            Query::Items(items) => Some(Arc::from(items)),
        };
        Ok(ReadStream::batched(
            to_head(head),
            read::Chunks::new(self.shared.clone(), items, &options, head),
        ))
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        Ok(to_head(self.shared.index_read().head))
    }

    async fn stats(&self) -> Result<dcb_core::StoreStats, StoreError> {
        let index = self.shared.index_read();
        Ok(dcb_core::StoreStats {
            head: to_head(index.head),
            events: Some(index.events()),
        })
    }

    async fn wait_for_head(&self, after: Option<Position>) -> Result<Option<Position>, StoreError> {
        let after = match after {
            None => 0,
            Some(p) => p.as_u64().unwrap_or(u64::MAX),
        };
        let mut rx = self.shared.head.subscribe();
        let h = *rx
            .wait_for(|&h| h > after)
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(to_head(h))
    }

    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription {
        dcb_core::subscribe::poll_subscription(Arc::new(self.clone()), query, after)
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<Position>, StoreError> {
        validate_consumer(consumer)?;
        Ok(self.shared.checkpoint_cached(consumer))
    }

    async fn commit_state(&self, commit: StateCommit) -> Result<(), StoreError> {
        validate_consumer(&commit.consumer)?;
        if commit.writes.len() > dcb_core::limits::MAX_STATE_WRITES {
            return Err(InputError::TooMany {
                field: "state writes",
                count: commit.writes.len(),
                max: dcb_core::limits::MAX_STATE_WRITES,
            }
            .into());
        }
        for (k, v) in &commit.writes {
            validate_state_write(k, v.as_deref())?;
        }
        let (tx, rx) = oneshot::channel();
        self.send(Job::State(commit, tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn get_state(&self, consumer: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        validate_consumer(consumer)?;
        Ok(self
            .shared
            .disk()?
            .consumers
            .get(keys::state_key(consumer, key))
            .map_err(fjall_err)?
            .map(|v| v.to_vec()))
    }

    async fn scan_state(
        &self,
        consumer: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        validate_consumer(consumer)?;
        let base = keys::state_prefix(consumer);
        let full_prefix = keys::state_key(consumer, prefix);
        let mut out = Vec::new();
        let disk = self.shared.disk()?;
        for kv in disk.consumers.prefix(&full_prefix) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv.into_inner().map_err(fjall_err)?;
            let key = &k[base.len()..];
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            out.push((key.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    async fn reset_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        validate_consumer(consumer)?;
        let (tx, rx) = oneshot::channel();
        self.send(Job::Reset(consumer.to_owned(), tx))?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Taken by the writer between two commit groups (see `backup.rs`).
    async fn consumer_snapshot(&self) -> Result<dcb_core::ConsumerSnapshot, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(Job::Snapshot(tx))?;
        crate::backup::into_consumer_snapshot(rx.await.map_err(|_| StoreError::Closed)??)
    }
}
