//! The group-commit writer: queued appends are decided in order, committed as one durable
//! (fdatasync'd) frame of the segment log, the in-memory indexes updated, then acknowledged. The
//! writer thread does this for the queue; a blocking append that finds the writer idle does it
//! for itself on its own thread ([`Writer::commit_here`]), holding the same state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use dcb_core::codec::{StoredEvent, decode_event_bytes, encode_event};
use dcb_core::{
    AppendRequest, Appended, Event, Position, StateCommit, StoreError, Uuid, classify_retry,
};
use fjall::PersistMode;
use tokio::sync::oneshot;

use crate::disk::Disk;
use crate::index::Index;
use crate::keys;
use crate::segindex;
use crate::store::{Shared, fjall_err};

/// Most requests committed together.
const MAX_GROUP: usize = 512;
/// Most event bytes committed together (a group is closed once it reaches this).
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

pub(crate) enum Job {
    Append(AppendRequest, oneshot::Sender<Result<Appended, StoreError>>),
    State(StateCommit, oneshot::Sender<Result<(), StoreError>>),
    Reset(String, oneshot::Sender<Result<(), StoreError>>),
    /// A consistent consumer snapshot, taken between two commit groups (see `crate::backup`).
    Snapshot(oneshot::Sender<Result<crate::backup::Taken, StoreError>>),
}

enum Reply {
    Append(
        oneshot::Sender<Result<Appended, StoreError>>,
        Result<Appended, StoreError>,
    ),
    Unit(
        oneshot::Sender<Result<(), StoreError>>,
        Result<(), StoreError>,
    ),
}

impl Reply {
    fn is_pending_write(&self) -> bool {
        matches!(
            self,
            Reply::Append(
                _,
                Ok(Appended {
                    replayed: false,
                    ..
                })
            ) | Reply::Unit(_, Ok(()))
        )
    }
    fn fail(self, msg: &str) -> Reply {
        match self {
            Reply::Append(tx, Ok(_)) => Reply::Append(tx, Err(StoreError::storage_msg(msg))),
            Reply::Unit(tx, Ok(())) => Reply::Unit(tx, Err(StoreError::storage_msg(msg))),
            other => other,
        }
    }
    fn send(self) {
        // A caller that gave up waiting has dropped its receiver; nothing to do then.
        match self {
            Reply::Append(tx, r) => {
                let _ = tx.send(r);
            }
            Reply::Unit(tx, r) => {
                let _ = tx.send(r);
            }
        }
    }
}

/// What the group has decided but not yet committed.
#[derive(Default)]
struct Group {
    events: Vec<(u64, Event)>,
    ids: HashMap<Uuid, (u64, StoredEvent)>,
    checkpoints: HashMap<String, Position>,
    /// Consumer-keyspace writes, deduplicated (last write wins inside one batch).
    consumer_writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The checkpoint moves of tracked appends, in order: carried in the group's frame, so they
    /// are durable with its events.
    tracking: Vec<(String, Position)>,
    /// Whether a state commit is in the group: its writes are durable only in fjall, which is
    /// then synced too.
    state: bool,
    replies: Vec<Reply>,
    bytes: usize,
}

/// The least time between two attempts to reopen the store after a storage failure.
const RECOVERY_BACKOFF: Duration = Duration::from_millis(500);
/// How long a reopen waits for readers to release the old database and for its lock to clear.
const RECOVERY_WAIT: Duration = Duration::from_secs(5);

/// What the writer decides with: held by whoever commits, the writer thread or a blocking
/// append that found the writer idle (`EmbeddedStore::append_blocking`), so commits stay one at
/// a time and in position order whichever thread makes them.
pub(crate) struct Core {
    /// Why writes are refused, after an I/O failure (until the store has reopened).
    failed: Option<String>,
    /// The position of the next event.
    next: u64,
    /// The last attempt to reopen after a failure.
    last_attempt: Option<Instant>,
    /// The head of the last index snapshot.
    snapshot_head: u64,
}

/// The writer's shared half: its state, and how many jobs wait in its queue.
pub(crate) struct Writer {
    core: Mutex<Core>,
    /// Jobs sent to the writer thread and not taken by it yet.
    queued: AtomicUsize,
    /// Jobs committed by their caller.
    here: AtomicU64,
    /// Whether appends arrive concurrently: the writer thread's last group held more than one
    /// job, or jobs queued up while a caller committed its own. Callers then queue, so that
    /// their appends share group commits instead of taking turns at one fsync each.
    contended: AtomicBool,
}

impl Writer {
    pub(crate) fn new(shared: &Shared) -> Writer {
        Writer {
            core: Mutex::new(Core {
                failed: None,
                next: shared.index_read().head + 1,
                last_attempt: None,
                // Opened without a snapshot (or from an older one): the next snapshot is due
                // counting from there, and closing writes one.
                snapshot_head: shared.snapshot_head,
            }),
            queued: AtomicUsize::new(0),
            here: AtomicU64::new(0),
            contended: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a job about to be sent to the writer thread.
    pub(crate) fn sending(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
    }

    /// Undoes [`Writer::sending`] for a job the queue refused.
    pub(crate) fn not_sent(&self) {
        self.queued.fetch_sub(1, Ordering::SeqCst);
    }

    /// Commits `job` on the calling thread when nothing waits in the queue and no commit is in
    /// progress; gives it back otherwise (then it goes through the queue like any other).
    pub(crate) fn commit_here(&self, shared: &Shared, job: Job) -> Result<(), Job> {
        if self.queued.load(Ordering::SeqCst) != 0 || self.contended.load(Ordering::Relaxed) {
            return Err(job);
        }
        let mut core = match self.core.try_lock() {
            Ok(core) => core,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(job),
        };
        core.process(shared, job, || None);
        self.here.fetch_add(1, Ordering::Relaxed);
        if self.queued.load(Ordering::SeqCst) != 0 {
            // Others arrived meanwhile: appends are concurrent now, group them.
            self.contended.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Jobs committed by their caller so far.
    pub(crate) fn caller_commits(&self) -> u64 {
        self.here.load(Ordering::Relaxed)
    }
}

pub(crate) fn run(shared: Arc<Shared>, writer: Arc<Writer>, rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        writer.queued.fetch_sub(1, Ordering::SeqCst);
        let mut core = writer.lock();
        let taken = core.process(&shared, first, || {
            let job = rx.try_recv().ok();
            if job.is_some() {
                writer.queued.fetch_sub(1, Ordering::SeqCst);
            }
            job
        });
        // A group of one: appends are no longer concurrent, a caller may commit its own again.
        writer.contended.store(taken > 1, Ordering::Relaxed);
    }
    // The store is closing: save the indexes so that the next open starts from here.
    let core = writer.lock();
    if shared.snapshot_every > 0 && shared.index_read().head != core.snapshot_head {
        snapshot(&shared);
    }
}

impl Core {
    /// Decides and commits `first` and the jobs `more` gives (up to a group's limits) as one
    /// group, after reopening the store if a failure has stopped it and the backoff is over.
    /// Returns how many jobs the group took.
    fn process(
        &mut self,
        shared: &Shared,
        first: Job,
        mut more: impl FnMut() -> Option<Job>,
    ) -> usize {
        if self.failed.is_some()
            && self
                .last_attempt
                .is_none_or(|t| t.elapsed() >= RECOVERY_BACKOFF)
        {
            self.last_attempt = Some(Instant::now());
            match recover(shared) {
                Ok(head) => {
                    tracing::warn!(
                        head,
                        "embedded store reopened after a storage failure; accepting writes again"
                    );
                    self.failed = None;
                    self.next = head + 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedded store could not be reopened yet; writes keep failing");
                }
            }
        }
        let (failed, next) = (&mut self.failed, &mut self.next);
        let mut group = Group::default();
        let mut job = Some(first);
        let mut taken = 0usize;
        while let Some(j) = job.take() {
            taken += 1;
            if let Some(msg) = failed.as_deref() {
                fail_job(j, msg);
            } else if let Job::Reset(consumer, tx) = j {
                // A reset deletes keys; commit what came before it, then reset on its own.
                commit(shared, &mut group, failed, next);
                let r = reset(shared, &consumer);
                if let Err(e) = &r {
                    *failed = Some(format!(
                        "store writer stopped after an I/O failure: {e}; it reopens the store on the next write"
                    ));
                }
                let _ = tx.send(r);
            } else if let Job::Snapshot(tx) = j {
                // Commit what came before, then snapshot: the head is exactly what it holds.
                commit(shared, &mut group, failed, next);
                let _ = tx.send(crate::backup::take(shared));
            } else {
                decide(shared, &mut group, j, next);
            }
            if taken >= MAX_GROUP || group.bytes >= MAX_GROUP_BYTES {
                break;
            }
            job = more();
        }
        commit(shared, &mut group, failed, next);
        let head = shared.index_read().head;
        // Every `snapshot_every` events. A snapshot holds only the in-memory part of the
        // indexes (the active segment's), so each one is bounded by a segment's postings.
        if shared.snapshot_every > 0
            && head.saturating_sub(self.snapshot_head) >= shared.snapshot_every
        {
            snapshot(shared);
            self.snapshot_head = head;
        }
        taken
    }
}

fn snapshot(shared: &Shared) {
    let index = shared.index_read();
    match crate::snapshot::write(shared.path(), &index) {
        Ok(()) => tracing::debug!(head = index.head, "index snapshot written"),
        Err(e) => {
            tracing::warn!(error = %e, "index snapshot not written (the next open rebuilds more)")
        }
    }
}

/// Refuses a job while the store is failed: nothing of it was written, so it may be retried.
fn fail_job(job: Job, msg: &str) {
    match job {
        Job::Append(_, tx) => {
            let _ = tx.send(Err(StoreError::Unavailable(msg.to_owned())));
        }
        Job::State(_, tx) | Job::Reset(_, tx) => {
            let _ = tx.send(Err(StoreError::Unavailable(msg.to_owned())));
        }
        Job::Snapshot(tx) => {
            let _ = tx.send(Err(StoreError::Unavailable(msg.to_owned())));
        }
    }
}

fn stored_checkpoint(shared: &Shared, group: &Group, consumer: &str) -> Option<Position> {
    group
        .checkpoints
        .get(consumer)
        .copied()
        .or_else(|| shared.checkpoint_cached(consumer))
}

fn decide(shared: &Shared, group: &mut Group, job: Job, next: &mut u64) {
    match job {
        Job::Append(req, tx) => {
            let r = decide_append(shared, group, req, next);
            group.replies.push(Reply::Append(tx, r));
        }
        Job::State(commit, tx) => {
            let r = decide_state(shared, group, commit);
            group.replies.push(Reply::Unit(tx, r));
        }
        Job::Reset(..) | Job::Snapshot(..) => {}
    }
}

fn decide_append(
    shared: &Shared,
    group: &mut Group,
    req: AppendRequest,
    next: &mut u64,
) -> Result<Appended, StoreError> {
    let index = shared.index_read();
    let retry = classify_retry(&req.events, |id| {
        if let Some((p, se)) = group.ids.get(id) {
            return Ok(Some((Position::from_u64(*p), se.clone())));
        }
        match index.id(id)? {
            Some(p) => Ok(Some((Position::from_u64(p), shared.load(p)?))),
            None => Ok(None),
        }
    })?;
    if let Some(positions) = retry {
        return Ok(Appended {
            positions,
            replayed: true,
        });
    }
    for (i, c) in req.conditions.iter().enumerate() {
        let q = c.fail_if_events_match.normalized();
        let after = match c.after {
            None => 0,
            // Positions of this store fit in u64; a larger `after` is past every event.
            Some(p) => p.as_u64().unwrap_or(u64::MAX),
        };
        let hit = index.any_after(&q, after)?
            || group.events.iter().any(|(p, e)| *p > after && q.matches(e));
        if hit {
            return Err(StoreError::ConditionFailed { condition: i });
        }
    }
    drop(index);
    if let Some(t) = &req.tracking {
        let stored = stored_checkpoint(shared, group, &t.consumer);
        if stored.is_some_and(|s| s >= t.position) {
            return Err(StoreError::CheckpointConflict {
                consumer: t.consumer.clone(),
                stored,
                requested: Some(t.position),
            });
        }
    }
    let n = req.events.len();
    if next.checked_add(n as u64).is_none() {
        return Err(StoreError::PositionsExhausted);
    }
    let mut positions = Vec::with_capacity(n);
    for (i, event) in req.events.into_iter().enumerate() {
        let p = *next;
        *next += 1;
        group.bytes += dcb_core::limits::event_size(&event);
        if let Some(id) = event.id {
            group.ids.insert(
                id,
                (
                    p,
                    StoredEvent {
                        event: event.clone(),
                        batch_index: i as u32,
                        batch_len: n as u32,
                    },
                ),
            );
        }
        group.events.push((p, event));
        positions.push(Position::from_u64(p));
    }
    if let Some(t) = req.tracking {
        group.tracking.push((t.consumer.clone(), t.position));
        group.consumer_writes.insert(
            keys::checkpoint_key(&t.consumer),
            Some(t.position.to_bytes().to_vec()),
        );
        group.checkpoints.insert(t.consumer, t.position);
    }
    Ok(Appended {
        positions,
        replayed: false,
    })
}

fn decide_state(shared: &Shared, group: &mut Group, commit: StateCommit) -> Result<(), StoreError> {
    dcb_core::check_state_commit(&commit, stored_checkpoint(shared, group, &commit.consumer))?;
    group.state = true;
    for (k, v) in commit.writes {
        group.bytes += k.len() + v.as_ref().map_or(0, Vec::len);
        group
            .consumer_writes
            .insert(keys::state_key(&commit.consumer, &k), v);
    }
    if let Some(p) = commit.checkpoint {
        group.consumer_writes.insert(
            keys::checkpoint_key(&commit.consumer),
            Some(p.to_bytes().to_vec()),
        );
        group.checkpoints.insert(commit.consumer, p);
    }
    Ok(())
}

fn commit(shared: &Shared, group: &mut Group, failed: &mut Option<String>, next: &mut u64) {
    let g = std::mem::take(group);
    let has_writes = !g.events.is_empty() || !g.consumer_writes.is_empty();
    if !has_writes {
        // Nothing to write (all replays or rejections): no fsync.
        g.replies.into_iter().for_each(Reply::send);
        return;
    }
    let disk = match shared.disk() {
        Ok(d) => d,
        Err(e) => {
            let msg = e.to_string();
            *failed = Some(msg.clone());
            fail_pending(g.replies, &msg);
            return;
        }
    };
    match write_group(&disk, &g) {
        Ok(records) => {
            {
                let mut index = shared.index_write();
                for (p, e) in &g.events {
                    index.add(*p, e);
                }
            }
            {
                let mut recent = shared.recent();
                for ((p, _), r) in g.events.iter().zip(records) {
                    recent.push(*p, r);
                }
            }
            shared.cache_checkpoints(g.checkpoints);
            if let Some((p, _)) = g.events.last() {
                shared.publish_head(*p);
            }
            g.replies.into_iter().for_each(Reply::send);
            if disk.log.is_full()
                && let Err(e) = roll(shared, &disk)
            {
                tracing::error!(error = %e, "sealing a full segment failed; the embedded store refuses writes until it has reopened the data directory");
                *failed = Some(format!(
                    "store writer stopped after an I/O failure: {e}; it reopens the store on the next write"
                ));
                *next = u64::MAX;
            }
        }
        Err(e) => {
            let msg = format!("durable commit failed, the outcome of this write is unknown: {e}");
            tracing::error!(error = %e, "durable commit failed; the embedded store refuses writes until it has reopened the data directory");
            *failed = Some(format!(
                "store writer stopped after an I/O failure: {e}; it reopens the store on the next write"
            ));
            // Positions handed out to this group are not reused: the writer accepts nothing more.
            *next = u64::MAX;
            fail_pending(g.replies, &msg);
        }
    }
}

/// Tells the callers of a group's writes that their outcome is unknown.
fn fail_pending(replies: Vec<Reply>, msg: &str) {
    for r in replies {
        if r.is_pending_write() { r.fail(msg) } else { r }.send();
    }
}

/// Makes a group durable: its events and checkpoint moves as one frame of the segment log
/// (fdatasync'd), then the consumer writes in fjall with the log position they are applied up
/// to. fjall is synced only for state commits and resets; checkpoint moves of tracked appends are
/// already durable in the frame, and open replays the frames fjall may have lost. Returns the
/// events' records as written.
fn write_group(disk: &Disk, g: &Group) -> Result<Vec<bytes::Bytes>, StoreError> {
    let mut records = Vec::with_capacity(g.events.len());
    for reply in &g.replies {
        if let Reply::Append(
            _,
            Ok(Appended {
                positions,
                replayed: false,
            }),
        ) = reply
        {
            let start = records.len();
            let len = positions.len();
            for (k, (_, e)) in g.events[start..start + len].iter().enumerate() {
                records.push(encode_event(e, k as u32, len as u32));
            }
        }
    }
    let written = if records.is_empty() {
        Vec::new()
    } else {
        disk.log.append(&records, &g.tracking)?
    };
    if !g.consumer_writes.is_empty() {
        let durability = if g.state || g.events.is_empty() {
            PersistMode::SyncData
        } else {
            // Recovered from the frame at open if it is lost.
            PersistMode::Buffer
        };
        let mut batch = disk.db.batch().durability(Some(durability));
        for (k, v) in &g.consumer_writes {
            match v {
                Some(v) => batch.insert(&disk.consumers, k.as_slice(), v.as_slice()),
                None => batch.remove(&disk.consumers, k.as_slice()),
            }
        }
        batch.insert(&disk.meta, keys::APPLIED_KEY, disk.log.head().to_be_bytes());
        batch.commit().map_err(fjall_err)?;
    }
    Ok(written)
}

/// Seals the full active segment. fjall is synced first, so that the checkpoint moves of the
/// sealed segment's frames never need replaying (open replays only the active segment's). The
/// segment's postings (all that the in-memory index holds) are written to its index file, then
/// the segment is sealed, then the postings are dropped from memory for the file's summary.
fn roll(shared: &Shared, disk: &Disk) -> Result<(), StoreError> {
    // The next segment is of the current version: the directory is marked first.
    disk.mark_schema()?;
    disk.db.persist(PersistMode::SyncData).map_err(fjall_err)?;
    let base = disk.log.active_base();
    let head = disk.log.head();
    let count = head + 1 - base;
    {
        let index = shared.index_read();
        if index.base() != base || index.head != head {
            return Err(StoreError::Corrupted(format!(
                "the in-memory index covers positions {}..={}, the active segment {base}..={head}",
                index.base(),
                index.head
            )));
        }
        segindex::write(disk.log.dir(), base, count, &index)?;
    }
    disk.log.roll()?;
    let sealed = segindex::SegIndex::open(disk.log.dir(), base, count).map_err(|reason| {
        StoreError::Corrupted(format!(
            "segment index {} just written: {reason}",
            segindex::idx_name(base)
        ))
    })?;
    // Its blocks are held in memory when they fit (see `Options::index_memory_bytes`).
    let sealed = if segindex::held_run([sealed.blocks_len()], shared.index_memory) == 1 {
        sealed.with_blocks().map_err(|reason| {
            StoreError::Corrupted(format!(
                "segment index {} just written: {reason}",
                segindex::idx_name(base)
            ))
        })?
    } else {
        sealed
    };
    shared
        .index_write()
        .seal(Arc::new(sealed), shared.index_memory);
    Ok(())
}

/// Reopens the database after a failed durable commit (fjall refuses writes after one): releases
/// the old instance, opens the directory again, indexes whatever became durable after the last
/// acknowledged head (a failed group may or may not have reached the disk: its callers were told
/// the outcome is unknown), reloads the checkpoints, and returns the new head.
fn recover(shared: &Shared) -> Result<u64, StoreError> {
    let deadline = Instant::now() + RECOVERY_WAIT;
    if let Some(mut old) = shared.take_disk() {
        // Readers hold the database only for one chunk; wait for them to let go.
        loop {
            match Arc::try_unwrap(old) {
                Ok(disk) => {
                    drop(disk);
                    break;
                }
                Err(still_shared) if Instant::now() < deadline => {
                    old = still_shared;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(still_shared) => {
                    shared.put_disk(still_shared);
                    return Err(StoreError::Unavailable(
                        "readers kept the database busy; reopen postponed".into(),
                    ));
                }
            }
        }
    }
    let disk = loop {
        match Disk::open(shared.path(), shared.segment_bytes) {
            Ok(d) => break d,
            // fjall's background threads may hold the old instance for a moment.
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    };
    let head = shared.index_read().head;
    let mut newer = Index::continuing_after(head);
    disk.scan_into(&mut newer)?;
    let sealed = segindex::load_all(disk.log.dir(), &disk.log, shared.index_memory)?;
    let checkpoints = disk.checkpoints()?;
    let head = {
        let mut index = shared.index_write();
        index.append(newer);
        index.set_sealed(sealed);
        index.head
    };
    // Events found on disk here are not in the cache: restart it so it stays contiguous.
    shared.recent().clear();
    shared.replace_checkpoints(checkpoints);
    shared.put_disk(Arc::new(disk));
    shared.publish_head(head);
    Ok(head)
}

fn reset(shared: &Shared, consumer: &str) -> Result<(), StoreError> {
    let disk = shared.disk()?;
    let mut batch = disk.db.batch().durability(Some(PersistMode::SyncData));
    batch.remove(&disk.consumers, keys::checkpoint_key(consumer));
    batch.insert(&disk.meta, keys::APPLIED_KEY, disk.log.head().to_be_bytes());
    for kv in disk.consumers.prefix(keys::state_prefix(consumer)) {
        let (k, _) = kv.into_inner().map_err(fjall_err)?;
        batch.remove(&disk.consumers, k);
    }
    batch.commit().map_err(fjall_err)?;
    shared.forget_checkpoint(consumer);
    Ok(())
}

/// Decodes a stored record (used by reads) without copying: the event's type, tags and data are
/// slices of the record, itself a slice of the segment read (or of the frame the writer wrote).
pub(crate) fn decode(position: u64, record: bytes::Bytes) -> Result<StoredEvent, StoreError> {
    decode_event_bytes(&record).map_err(|e| e.at_position(position))
}

/// Decodes a stored record's indexed fields (used when rebuilding indexes).
pub(crate) fn decode_keys(
    position: u64,
    bytes: &[u8],
) -> Result<dcb_core::codec::EventKeys<'_>, StoreError> {
    dcb_core::codec::decode_keys(bytes).map_err(|e| e.at_position(position))
}
