//! The DCB engine: appends, conditions, reads, checkpoints and consumer state over a
//! [`KvDatabase`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dcb_core::codec::{StoredEvent, decode_event, encode_event};
use dcb_core::limits::{validate_append, validate_consumer, validate_state_write};
use dcb_core::{
    AppendRequest, Appended, CheckpointGuard, EventStore, InputError, Position, Query, ReadOptions,
    ReadStream, SequencedEvent, StateCommit, StoreError, Subscription, Uuid, check_read,
    classify_retry,
};
use futures::StreamExt;
use futures::future::join_all;

use crate::keys::{self, Keys, POS_LEN, PosRange, SCHEMA_VERSION};
use crate::kv::{KvDatabase, KvError, KvErrorKind, KvTransaction, RangeRead, VERSIONSTAMP_LEN};

/// Most events in one versionstamp batch (the 2-byte user version).
pub const MAX_EVENTS_PER_VERSIONSTAMP: usize = 1 << 16;

/// Tuning and safety bounds of a [`KvStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvOptions {
    /// Deadline of one transaction attempt (FoundationDB refuses transactions older than 5 s).
    pub tx_timeout: Duration,
    /// Attempts of one operation before it fails with [`StoreError::Unavailable`].
    pub max_retries: u32,
    /// Largest estimated transaction size, in bytes (keys, values and conflict ranges); an
    /// append over it is rejected with [`InputError::TooLong`] before anything is written.
    /// FoundationDB's hard limit is 10 000 000 bytes.
    pub max_tx_bytes: usize,
    /// Keys fetched per range-read batch of a read (shared among the ranges a query needs).
    pub read_batch: usize,
    /// A long read moves to a fresh transaction after this long (FoundationDB: 5 s maximum).
    pub read_tx_span: Duration,
    /// `wait_for_head` re-reads the head at least this often even if no watch fires.
    pub watch_refresh: Duration,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            tx_timeout: Duration::from_secs(5),
            max_retries: 50,
            max_tx_bytes: 9_000_000,
            read_batch: 1024,
            read_tx_span: Duration::from_secs(3),
            watch_refresh: Duration::from_secs(10),
        }
    }
}

impl KvOptions {
    /// Defaults.
    pub fn new() -> KvOptions {
        KvOptions::default()
    }

    /// Sets [`KvOptions::tx_timeout`].
    pub fn tx_timeout(mut self, timeout: Duration) -> KvOptions {
        self.tx_timeout = timeout;
        self
    }

    /// Sets [`KvOptions::max_retries`].
    pub fn max_retries(mut self, retries: u32) -> KvOptions {
        self.max_retries = retries;
        self
    }

    /// Sets [`KvOptions::max_tx_bytes`].
    pub fn max_tx_bytes(mut self, bytes: usize) -> KvOptions {
        self.max_tx_bytes = bytes;
        self
    }

    /// Sets [`KvOptions::read_batch`] (at least 1).
    pub fn read_batch(mut self, batch: usize) -> KvOptions {
        self.read_batch = batch.max(1);
        self
    }

    /// Sets [`KvOptions::read_tx_span`].
    pub fn read_tx_span(mut self, span: Duration) -> KvOptions {
        self.read_tx_span = span;
        self
    }

    /// Sets [`KvOptions::watch_refresh`].
    pub fn watch_refresh(mut self, refresh: Duration) -> KvOptions {
        self.watch_refresh = refresh;
        self
    }
}

/// The DCB event store over a KV database. Cheap to clone (clones share the handle).
pub struct KvStore<D: KvDatabase> {
    inner: Arc<Inner<D>>,
}

impl<D: KvDatabase> Clone for KvStore<D> {
    fn clone(&self) -> Self {
        KvStore {
            inner: self.inner.clone(),
        }
    }
}

impl<D: KvDatabase> std::fmt::Debug for KvStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("options", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

struct Inner<D> {
    db: D,
    keys: Keys,
    opts: KvOptions,
}

/// Why one transaction attempt stopped.
enum AttemptErr {
    /// A KV failure: retried when its kind allows.
    Kv(KvError),
    /// A definitive answer (condition failed, bad data): returned as is.
    Store(StoreError),
}

impl From<KvError> for AttemptErr {
    fn from(e: KvError) -> Self {
        AttemptErr::Kv(e)
    }
}

impl From<StoreError> for AttemptErr {
    fn from(e: StoreError) -> Self {
        AttemptErr::Store(e)
    }
}

fn kv_fatal(e: KvError) -> StoreError {
    StoreError::storage(e)
}

fn timed_out() -> KvError {
    KvError::new(
        KvErrorKind::Timeout,
        "transaction attempt exceeded its timeout",
    )
}

/// Bounded retries with exponential, jittered backoff.
struct Backoff {
    attempt: u32,
    max: u32,
}

impl Backoff {
    fn new(max: u32) -> Backoff {
        Backoff { attempt: 0, max }
    }

    /// Sleeps before the next attempt, or gives up: fatal errors become
    /// [`StoreError::Storage`], exhausted retries [`StoreError::Unavailable`].
    async fn retry(&mut self, e: KvError) -> Result<(), StoreError> {
        if e.kind == KvErrorKind::Fatal {
            return Err(kv_fatal(e));
        }
        self.attempt += 1;
        if self.attempt >= self.max {
            return Err(StoreError::Unavailable(format!(
                "gave up after {} attempts: {e}",
                self.attempt
            )));
        }
        tracing::debug!(attempt = self.attempt, error = %e, "retrying transaction");
        let cap_ms = 1u64 << self.attempt.min(9);
        let jitter = (Uuid::new_v4().as_u128() as u64) % (cap_ms + 1);
        tokio::time::sleep(Duration::from_millis(jitter.max(1))).await;
        Ok(())
    }
}

fn decode_pos(bytes: &[u8], what: &str) -> Result<Position, StoreError> {
    Position::from_bytes(bytes).map_err(|e| StoreError::Corrupted(format!("{what}: {e}")))
}

fn stamp_of(pos12: &[u8]) -> Result<[u8; VERSIONSTAMP_LEN], StoreError> {
    let mut s = [0u8; VERSIONSTAMP_LEN];
    let src = pos12
        .get(..VERSIONSTAMP_LEN)
        .ok_or_else(|| StoreError::Corrupted("short commit token".into()))?;
    s.copy_from_slice(src);
    Ok(s)
}

fn batch_positions(stamp: [u8; VERSIONSTAMP_LEN], n: usize) -> Vec<Position> {
    (0..n)
        .map(|i| Position::from_versionstamp(stamp, i as u16))
        .collect()
}

/// Where the candidates of one query item come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// Every event record.
    Events,
    /// The type index of one type.
    Type(String),
    /// The tag index of one tag, keeping only the listed types (empty: any).
    Tag { tag: String, types: Vec<String> },
}

/// The sources a normalised query needs; their union is a superset of its matches.
fn plan(query: &Query) -> Vec<Source> {
    match query {
        Query::All => vec![Source::Events],
        Query::Items(items) => {
            let mut out: Vec<Source> = Vec::new();
            for item in items {
                let sources: Vec<Source> = match item.tags.first() {
                    Some(tag) => vec![Source::Tag {
                        tag: tag.clone(),
                        types: item.types.clone(),
                    }],
                    None => item.types.iter().map(|t| Source::Type(t.clone())).collect(),
                };
                for s in sources {
                    if !out.contains(&s) {
                        out.push(s);
                    }
                }
            }
            out
        }
    }
}

impl Source {
    fn prefix(&self, keys: &Keys) -> Vec<u8> {
        match self {
            Source::Events => keys.events_prefix(),
            Source::Type(t) => keys.type_prefix(t),
            Source::Tag { tag, .. } => keys.tag_prefix(tag),
        }
    }

    /// Whether an index entry's value passes this source's type filter.
    fn accepts(&self, value: &[u8]) -> bool {
        match self {
            Source::Tag { types, .. } => {
                types.is_empty() || types.iter().any(|t| t.as_bytes() == value)
            }
            _ => true,
        }
    }
}

/// One index range being read in batches.
struct Cursor {
    source: Source,
    range: PosRange,
    /// Positions fetched and not yet merged, with the event record when the source holds it.
    buf: VecDeque<(Position, Option<Vec<u8>>)>,
    done: bool,
}

impl Cursor {
    fn new(source: Source, keys: &Keys, lo: Option<Position>, hi: Option<Position>) -> Cursor {
        let range = PosRange::new(source.prefix(keys), lo, hi);
        let done = range.begin >= range.end;
        Cursor {
            source,
            range,
            buf: VecDeque::new(),
            done,
        }
    }

    /// Fetches the next batch. The cursor only moves when the read succeeds, so a failed fetch
    /// is simply retried (in a fresh transaction: the data below the read's head never changes).
    async fn fetch<T: KvTransaction>(
        &mut self,
        tx: &T,
        limit: usize,
        reverse: bool,
        snapshot: bool,
    ) -> Result<(), AttemptErr> {
        let batch = tx
            .get_range(RangeRead {
                begin: &self.range.begin,
                end: &self.range.end,
                limit,
                reverse,
                snapshot,
                target_bytes: 0,
            })
            .await?;
        let Some((last, _)) = batch.pairs.last() else {
            self.done = true;
            return Ok(());
        };
        let last = last.clone();
        for (k, v) in batch.pairs {
            let pos = self.range.position_of(&k).ok_or_else(|| {
                StoreError::Corrupted(format!("index key of unexpected shape: {k:?}"))
            })?;
            if self.source.accepts(&v) {
                let record = matches!(self.source, Source::Events).then_some(v);
                self.buf.push_back((pos, record));
            }
        }
        if reverse {
            self.range.end = last;
        } else {
            let mut next = last;
            next.push(0);
            self.range.begin = next;
        }
        if !batch.more || self.range.begin >= self.range.end {
            self.done = true;
        }
        Ok(())
    }
}

impl<D: KvDatabase> KvStore<D> {
    /// Opens the namespace `namespace` of `db`: checks the schema marker, writing it on first
    /// use. A different schema version is [`StoreError::Corrupted`].
    pub async fn open(db: D, namespace: &str, opts: KvOptions) -> Result<KvStore<D>, StoreError> {
        let store = KvStore {
            inner: Arc::new(Inner {
                db,
                keys: Keys::new(namespace),
                opts,
            }),
        };
        let key = store.inner.keys.schema();
        let mut backoff = Backoff::new(opts.max_retries);
        loop {
            let tx = store.inner.db.begin().map_err(kv_fatal)?;
            let attempt = async {
                match tx.get(&key, false).await? {
                    Some(v) if v.as_slice() == [SCHEMA_VERSION] => {}
                    Some(v) => {
                        return Err(AttemptErr::Store(StoreError::Corrupted(format!(
                            "namespace {namespace:?} holds key schema {v:?}, this build reads version {SCHEMA_VERSION}"
                        ))));
                    }
                    None => tx.set(&key, &[SCHEMA_VERSION]),
                }
                tx.commit().await?;
                Ok(())
            };
            match tokio::time::timeout(opts.tx_timeout, attempt)
                .await
                .unwrap_or(Err(AttemptErr::Kv(timed_out())))
            {
                Ok(()) => return Ok(store),
                Err(AttemptErr::Store(e)) => return Err(e),
                // Writing the marker twice is harmless, so an unknown result is simply retried.
                Err(AttemptErr::Kv(e)) => backoff.retry(e).await?,
            }
        }
    }

    /// The database handle.
    pub fn database(&self) -> &D {
        &self.inner.db
    }

    /// The key builder of this store's namespace.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Deletes every key of this namespace (events, indexes, checkpoints, state, schema marker).
    /// The handle must not be used afterwards except to drop it.
    pub async fn destroy(&self) -> Result<(), StoreError> {
        let (begin, end) = self.inner.keys.namespace_range();
        let mut backoff = Backoff::new(self.inner.opts.max_retries);
        loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            tx.clear_range(&begin, &end);
            match tokio::time::timeout(self.inner.opts.tx_timeout, tx.commit())
                .await
                .unwrap_or(Err(timed_out()))
            {
                Ok(_) => return Ok(()),
                // Clearing is idempotent: an unknown result is simply retried.
                Err(e) => backoff.retry(e).await?,
            }
        }
    }

    fn estimate_tx_bytes(&self, request: &AppendRequest, records: &[Vec<u8>]) -> usize {
        // Keys count three times (mutation, write conflict range begin and end).
        let keys = &self.inner.keys;
        let root = keys.root().len() + 1;
        let mut total = 0usize;
        for (e, rec) in request.events.iter().zip(records) {
            total += 3 * (root + POS_LEN) + rec.len();
            total += 3 * (root + 2 + e.event_type.len() + POS_LEN);
            for tag in &e.tags {
                total += 3 * (root + 2 + tag.len() + POS_LEN) + e.event_type.len();
            }
            if e.id.is_some() {
                total += 3 * (root + 16) + POS_LEN;
            }
        }
        // Head, commit token, checkpoint.
        total + 512
    }

    async fn append_attempt(
        &self,
        tx: &D::Tx,
        request: &AppendRequest,
        conditions: &[(Query, Option<Position>)],
        token: Uuid,
    ) -> Result<Option<Appended>, AttemptErr> {
        let keys = &self.inner.keys;
        let n = request.events.len();
        // 1. Our own earlier attempt, if its commit result was unknown. Read serializably: this
        //    attempt and the earlier one both read and write the token, so at most one commits.
        if let Some(first) = tx.get(&keys.batch(&token), false).await? {
            return Ok(Some(Appended {
                positions: batch_positions(stamp_of(&first)?, n),
                replayed: false,
            }));
        }
        // 2. Idempotent retry by event ids.
        let ids: Vec<Uuid> = request.events.iter().filter_map(|e| e.id).collect();
        if !ids.is_empty() {
            let id_keys: Vec<Vec<u8>> = ids.iter().map(|id| keys.id(id)).collect();
            let hits = join_all(id_keys.iter().map(|k| tx.get(k, false))).await;
            let mut found: HashMap<Uuid, (Position, StoredEvent)> = HashMap::new();
            for (id, hit) in ids.iter().zip(hits) {
                if let Some(pos) = hit? {
                    let pos = decode_pos(&pos, "id index")?;
                    let mut ek = keys.events_prefix();
                    ek.extend_from_slice(&pos.to_bytes());
                    let rec = tx.get(&ek, true).await?.ok_or_else(|| {
                        StoreError::Corrupted(format!("id {id} points at missing event {pos}"))
                    })?;
                    found.insert(*id, (pos, decode_event(&rec)?));
                }
            }
            if !found.is_empty() {
                let retry = classify_retry(&request.events, |id| Ok(found.get(id).cloned()))?;
                if let Some(positions) = retry {
                    return Ok(Some(Appended {
                        positions,
                        replayed: true,
                    }));
                }
            }
        }
        // 3. Conditions, with conflict-registering reads.
        for (i, (query, after)) in conditions.iter().enumerate() {
            if self.condition_hit(tx, query, *after).await? {
                return Err(StoreError::ConditionFailed { condition: i }.into());
            }
        }
        // 4. The checkpoint.
        if let Some(t) = &request.tracking {
            let stored = match tx.get(&keys.checkpoint(&t.consumer), false).await? {
                Some(v) => Some(decode_pos(&v, "checkpoint")?),
                None => None,
            };
            if stored.is_some_and(|s| s >= t.position) {
                return Err(StoreError::CheckpointConflict {
                    consumer: t.consumer.clone(),
                    stored,
                    requested: Some(t.position),
                }
                .into());
            }
        }
        Ok(None)
    }

    fn write_batch(&self, tx: &D::Tx, request: &AppendRequest, records: &[Vec<u8>], token: Uuid) {
        let keys = &self.inner.keys;
        let events_prefix = keys.events_prefix();
        for (i, (event, record)) in request.events.iter().zip(records).enumerate() {
            let index = i as u16;
            let (k, off) = keys::stamped(&events_prefix, index);
            tx.set_versionstamped_key(&k, off, record);
            let (k, off) = keys::stamped(&keys.type_prefix(&event.event_type), index);
            tx.set_versionstamped_key(&k, off, &[]);
            for tag in &event.tags {
                let (k, off) = keys::stamped(&keys.tag_prefix(tag), index);
                tx.set_versionstamped_key(&k, off, event.event_type.as_bytes());
            }
            if let Some(id) = event.id {
                tx.set_versionstamped_value(&keys.id(&id), &keys::stamped_value(index), 0);
            }
        }
        tx.set_versionstamped_value(&keys.batch(&token), &keys::stamped_value(0), 0);
        let last = request.events.len().saturating_sub(1) as u16;
        tx.set_versionstamped_value(&keys.head(), &keys::stamped_value(last), 0);
        if let Some(t) = &request.tracking {
            tx.set(&keys.checkpoint(&t.consumer), &t.position.to_bytes());
        }
    }

    /// Whether an event matching `query` exists after `after`, read serializably so that a
    /// concurrent commit of a matching event aborts this transaction.
    async fn condition_hit(
        &self,
        tx: &D::Tx,
        query: &Query,
        after: Option<Position>,
    ) -> Result<bool, AttemptErr> {
        let lo = match after {
            Some(a) => match a.next() {
                Some(n) => Some(n),
                None => return Ok(false),
            },
            None => None,
        };
        let keys = &self.inner.keys;
        let items = match query {
            Query::All => {
                let mut c = Cursor::new(Source::Events, keys, lo, None);
                c.fetch(tx, 1, false, false).await?;
                return Ok(!c.buf.is_empty());
            }
            Query::Items(items) => items,
        };
        for item in items {
            let (sources, rest): (Vec<Source>, &[String]) = match item.tags.split_first() {
                Some((tag, rest)) => (
                    vec![Source::Tag {
                        tag: tag.clone(),
                        types: item.types.clone(),
                    }],
                    rest,
                ),
                None => (
                    item.types.iter().map(|t| Source::Type(t.clone())).collect(),
                    &[],
                ),
            };
            for source in sources {
                let mut c = Cursor::new(source, keys, lo, None);
                let mut limit = 16;
                while !c.done {
                    c.fetch(tx, limit, false, false).await?;
                    limit = (limit * 4).min(self.inner.opts.read_batch);
                    while let Some((pos, _)) = c.buf.pop_front() {
                        if self.has_tags(tx, pos, rest).await? {
                            return Ok(true);
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    async fn has_tags(
        &self,
        tx: &D::Tx,
        pos: Position,
        tags: &[String],
    ) -> Result<bool, AttemptErr> {
        let keys = &self.inner.keys;
        let probes: Vec<Vec<u8>> = tags
            .iter()
            .map(|t| {
                let mut k = keys.tag_prefix(t);
                k.extend_from_slice(&pos.to_bytes());
                k
            })
            .collect();
        for hit in join_all(probes.iter().map(|k| tx.get(k, false))).await {
            if hit?.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn read_head(&self, tx: &D::Tx) -> Result<Option<Position>, AttemptErr> {
        match tx.get(&self.inner.keys.head(), true).await? {
            Some(v) => Ok(Some(decode_pos(&v, "head")?)),
            None => Ok(None),
        }
    }

    async fn simple<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'a> Fn(&'a Self, &'a D::Tx) -> futures::future::BoxFuture<'a, Result<T, AttemptErr>>,
    {
        let mut backoff = Backoff::new(self.inner.opts.max_retries);
        loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            let r = tokio::time::timeout(self.inner.opts.tx_timeout, op(self, &tx))
                .await
                .unwrap_or(Err(AttemptErr::Kv(timed_out())));
            match r {
                Ok(v) => return Ok(v),
                Err(AttemptErr::Store(e)) => return Err(e),
                Err(AttemptErr::Kv(e)) => backoff.retry(e).await?,
            }
        }
    }
}

/// The state of a streaming read.
struct ReadState<D: KvDatabase> {
    store: KvStore<D>,
    query: Query,
    tx: Option<(D::Tx, Instant)>,
    cursors: Vec<Cursor>,
    backwards: bool,
    batch: usize,
    remaining: u64,
    /// Merged candidates whose events are not fetched yet.
    candidates: VecDeque<(Position, Option<Vec<u8>>)>,
    pending: VecDeque<SequencedEvent>,
    finished: bool,
    failed: bool,
}

impl<D: KvDatabase> ReadState<D> {
    /// Merges the cursors into up to `max` new candidates, then fetches their events.
    async fn fill(&mut self, tx: &D::Tx) -> Result<(), AttemptErr> {
        if self.candidates.is_empty() {
            let max = self
                .batch
                .min(usize::try_from(self.remaining).unwrap_or(usize::MAX))
                .max(1);
            let per_cursor = (self.batch / self.cursors.len().max(1)).clamp(16, 1024);
            while self.candidates.len() < max {
                let backwards = self.backwards;
                // Every cursor needs a buffered position (or to be exhausted) before the
                // smallest (largest, backwards) one can be picked.
                while self.cursors.iter().any(|c| c.buf.is_empty() && !c.done) {
                    let fetches = self
                        .cursors
                        .iter_mut()
                        .filter(|c| c.buf.is_empty() && !c.done)
                        .map(|c| c.fetch(tx, per_cursor, backwards, true));
                    for r in join_all(fetches).await {
                        r?;
                    }
                }
                let best = self
                    .cursors
                    .iter()
                    .filter_map(|c| c.buf.front().map(|(p, _)| *p));
                let best = if backwards { best.max() } else { best.min() };
                let Some(best) = best else {
                    break;
                };
                let mut record = None;
                for c in &mut self.cursors {
                    if c.buf.front().is_some_and(|(p, _)| *p == best)
                        && let Some((_, r)) = c.buf.pop_front()
                    {
                        record = record.or(r);
                    }
                }
                self.candidates.push_back((best, record));
            }
            if self.candidates.is_empty() {
                self.finished = true;
                return Ok(());
            }
        }
        let events_prefix = self.store.inner.keys.events_prefix();
        let missing: Vec<Vec<u8>> = self
            .candidates
            .iter()
            .filter(|(_, r)| r.is_none())
            .map(|(p, _)| {
                let mut k = events_prefix.clone();
                k.extend_from_slice(&p.to_bytes());
                k
            })
            .collect();
        let mut fetched = join_all(missing.iter().map(|k| tx.get(k, true)))
            .await
            .into_iter();
        let mut out = Vec::with_capacity(self.candidates.len());
        for (pos, record) in &self.candidates {
            let record = match record {
                Some(r) => r.clone(),
                None => fetched
                    .next()
                    .ok_or_else(|| StoreError::Corrupted("event fetch mismatch".into()))??
                    .ok_or_else(|| {
                        StoreError::Corrupted(format!("index points at missing event {pos}"))
                    })?,
            };
            let stored = decode_event(&record)?;
            if self.query.matches(&stored.event) {
                out.push(SequencedEvent {
                    position: *pos,
                    event: stored.event,
                });
            }
        }
        self.candidates.clear();
        for e in out {
            if self.remaining == 0 {
                break;
            }
            self.remaining -= 1;
            self.pending.push_back(e);
        }
        if self.remaining == 0 {
            self.finished = true;
        }
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<SequencedEvent, StoreError>> {
        let opts = self.store.inner.opts;
        let mut backoff = Backoff::new(opts.max_retries);
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            if self.finished || self.failed {
                return None;
            }
            if self
                .tx
                .as_ref()
                .is_none_or(|(_, started)| started.elapsed() > opts.read_tx_span)
            {
                match self.store.inner.db.begin() {
                    Ok(tx) => self.tx = Some((tx, Instant::now())),
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(kv_fatal(e)));
                    }
                }
            }
            let Some((tx, started)) = self.tx.take() else {
                continue;
            };
            let r = tokio::time::timeout(opts.tx_timeout, self.fill(&tx))
                .await
                .unwrap_or(Err(AttemptErr::Kv(timed_out())));
            match r {
                Ok(()) => self.tx = Some((tx, started)),
                Err(AttemptErr::Store(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
                // The transaction is dropped; the next attempt starts a fresh one and resumes
                // where the cursors stand, bounded by the head captured at the start.
                Err(AttemptErr::Kv(e)) => {
                    if let Err(e) = backoff.retry(e).await {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

#[async_trait]
impl<D: KvDatabase> EventStore for KvStore<D> {
    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        validate_append(&request)?;
        let n = request.events.len();
        if n > MAX_EVENTS_PER_VERSIONSTAMP {
            return Err(InputError::TooMany {
                field: "events per versionstamp batch",
                count: n,
                max: MAX_EVENTS_PER_VERSIONSTAMP,
            }
            .into());
        }
        let n32 = n as u32;
        let records: Vec<Vec<u8>> = request
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| encode_event(e, i as u32, n32))
            .collect();
        let size = self.estimate_tx_bytes(&request, &records);
        if size > self.inner.opts.max_tx_bytes {
            return Err(InputError::TooLong {
                field: "transaction",
                len: size,
                max: self.inner.opts.max_tx_bytes,
            }
            .into());
        }
        let conditions: Vec<(Query, Option<Position>)> = request
            .conditions
            .iter()
            .map(|c| (c.fail_if_events_match.normalized(), c.after))
            .collect();
        // Every append writes a commit token, so that an unknown commit result is resolved
        // exactly, and reported as this call's own write (`replayed: false`), with or without
        // event ids (see the crate docs).
        let token = Uuid::new_v4();
        let opts = self.inner.opts;
        let mut backoff = Backoff::new(opts.max_retries);
        loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            let checked = tokio::time::timeout(
                opts.tx_timeout,
                self.append_attempt(&tx, &request, &conditions, token),
            )
            .await
            .unwrap_or(Err(AttemptErr::Kv(timed_out())));
            match checked {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {}
                Err(AttemptErr::Store(e)) => return Err(e),
                Err(AttemptErr::Kv(e)) => {
                    backoff.retry(e).await?;
                    continue;
                }
            }
            self.write_batch(&tx, &request, &records, token);
            let committed = tokio::time::timeout(opts.tx_timeout, tx.commit())
                .await
                .unwrap_or(Err(timed_out()));
            match committed {
                Ok(Some(stamp)) => {
                    return Ok(Appended {
                        positions: batch_positions(stamp, n),
                        replayed: false,
                    });
                }
                Ok(None) => {
                    return Err(StoreError::storage_msg(
                        "commit of an append returned no versionstamp",
                    ));
                }
                Err(e) => {
                    // MaybeCommitted and Timeout: the next attempt first looks for this call's
                    // commit token and returns the batch if the commit did happen.
                    let e = if e.kind == KvErrorKind::Timeout {
                        KvError::new(KvErrorKind::MaybeCommitted, e.message)
                    } else {
                        e
                    };
                    tracing::debug!(error = %e, "append commit failed");
                    backoff.retry(e).await?;
                }
            }
        }
    }

    async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        check_read(&query, &options)?;
        let query = query.normalized();
        let (tx, head) = {
            let mut backoff = Backoff::new(self.inner.opts.max_retries);
            loop {
                let tx = self.inner.db.begin().map_err(kv_fatal)?;
                let r = tokio::time::timeout(self.inner.opts.tx_timeout, self.read_head(&tx))
                    .await
                    .unwrap_or(Err(AttemptErr::Kv(timed_out())));
                match r {
                    Ok(head) => break (tx, head),
                    Err(AttemptErr::Store(e)) => return Err(e),
                    Err(AttemptErr::Kv(e)) => backoff.retry(e).await?,
                }
            }
        };
        let lo = options.min_position();
        let hi = match (head.and_then(Position::next), options.before) {
            (Some(h), Some(b)) => Some(h.min(b)),
            (Some(h), None) => Some(h),
            (None, b) => b,
        };
        let empty = head.is_none()
            || lo.is_none()
            || options.limit == Some(0)
            || matches!((lo, hi), (Some(l), Some(h)) if l >= h);
        if empty {
            return Ok(ReadStream::from_vec(head, Vec::new()));
        }
        let cursors = plan(&query)
            .into_iter()
            .map(|s| Cursor::new(s, &self.inner.keys, lo, hi))
            .collect();
        let state = ReadState {
            store: self.clone(),
            query,
            tx: Some((tx, Instant::now())),
            cursors,
            backwards: options.backwards,
            batch: self.inner.opts.read_batch,
            remaining: options.limit.unwrap_or(u64::MAX),
            candidates: VecDeque::new(),
            pending: VecDeque::new(),
            finished: false,
            failed: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            st.next().await.map(|item| (item, st))
        });
        Ok(ReadStream::new(head, stream.boxed()))
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.simple(|s, tx| Box::pin(s.read_head(tx))).await
    }

    async fn wait_for_head(&self, after: Option<Position>) -> Result<Option<Position>, StoreError> {
        let opts = self.inner.opts;
        let key = self.inner.keys.head();
        let mut backoff = Backoff::new(opts.max_retries);
        loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            let head = match tokio::time::timeout(opts.tx_timeout, self.read_head(&tx))
                .await
                .unwrap_or(Err(AttemptErr::Kv(timed_out())))
            {
                Ok(h) => h,
                Err(AttemptErr::Store(e)) => return Err(e),
                Err(AttemptErr::Kv(e)) => {
                    backoff.retry(e).await?;
                    continue;
                }
            };
            if head > after {
                return Ok(head);
            }
            let watch = tx.watch(&key);
            match tokio::time::timeout(opts.tx_timeout, tx.commit())
                .await
                .unwrap_or(Err(timed_out()))
            {
                Ok(_) => {}
                Err(e) => {
                    backoff.retry(e).await?;
                    continue;
                }
            }
            match tokio::time::timeout(opts.watch_refresh, watch).await {
                // Fired, or refresh time: re-read the head.
                Ok(Ok(())) | Err(_) => backoff = Backoff::new(opts.max_retries),
                // A watch that cannot be set (e.g. FDB's `too_many_watches`) degrades to polling
                // the head at a modest rate instead of failing the waiter.
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "watch on the head key failed; polling instead");
                    tokio::time::sleep(opts.watch_refresh.min(Duration::from_millis(250))).await;
                }
            }
        }
    }

    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription {
        dcb_core::subscribe::poll_subscription(Arc::new(self.clone()), query, after)
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<Position>, StoreError> {
        validate_consumer(consumer)?;
        let key = self.inner.keys.checkpoint(consumer);
        self.simple(|_, tx| {
            let key = key.clone();
            Box::pin(async move {
                match tx.get(&key, true).await? {
                    Some(v) => Ok(Some(decode_pos(&v, "checkpoint")?)),
                    None => Ok(None),
                }
            })
        })
        .await
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
        let keys = &self.inner.keys;
        let mut size = 512usize;
        for (k, v) in &commit.writes {
            validate_state_write(k, v.as_deref())?;
            size += 3 * (keys.state_prefix(&commit.consumer).len() + k.len())
                + v.as_ref().map_or(0, Vec::len);
        }
        if size > self.inner.opts.max_tx_bytes {
            return Err(InputError::TooLong {
                field: "transaction",
                len: size,
                max: self.inner.opts.max_tx_bytes,
            }
            .into());
        }
        let cp_key = keys.checkpoint(&commit.consumer);
        let opts = self.inner.opts;
        let mut backoff = Backoff::new(opts.max_retries);
        let mut unknown = false;
        loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            if commit.checkpoint.is_some() || commit.guard != CheckpointGuard::Advancing {
                let r = tokio::time::timeout(opts.tx_timeout, tx.get(&cp_key, false))
                    .await
                    .unwrap_or(Err(timed_out()));
                let stored = match r {
                    Ok(Some(v)) => Some(decode_pos(&v, "checkpoint")?),
                    Ok(None) => None,
                    Err(e) => {
                        backoff.retry(e).await?;
                        continue;
                    }
                };
                // After an unknown result, finding exactly our checkpoint means our commit
                // happened (checkpoint and writes are one atomic write).
                if unknown && commit.checkpoint.is_some() && stored == commit.checkpoint {
                    return Ok(());
                }
                dcb_core::check_state_commit(&commit, stored)?;
                if let Some(p) = commit.checkpoint {
                    tx.set(&cp_key, &p.to_bytes());
                }
            }
            for (k, v) in &commit.writes {
                let key = keys.state(&commit.consumer, k);
                match v {
                    Some(v) => tx.set(&key, v),
                    None => tx.clear(&key),
                }
            }
            match tokio::time::timeout(opts.tx_timeout, tx.commit())
                .await
                .unwrap_or(Err(timed_out()))
            {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if matches!(e.kind, KvErrorKind::MaybeCommitted | KvErrorKind::Timeout) {
                        unknown = true;
                    }
                    let e = if e.kind == KvErrorKind::Timeout {
                        KvError::new(KvErrorKind::MaybeCommitted, e.message)
                    } else {
                        e
                    };
                    backoff.retry(e).await?;
                }
            }
        }
    }

    async fn get_state(&self, consumer: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        validate_consumer(consumer)?;
        let key = self.inner.keys.state(consumer, key);
        self.simple(|_, tx| {
            let key = key.clone();
            Box::pin(async move { Ok(tx.get(&key, true).await?) })
        })
        .await
    }

    async fn scan_state(
        &self,
        consumer: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        validate_consumer(consumer)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let base = self.inner.keys.state_prefix(consumer);
        let full_prefix = self.inner.keys.state(consumer, prefix);
        let end = keys::strinc(&full_prefix).unwrap_or_else(|| vec![0xff; full_prefix.len() + 1]);
        let mut begin = full_prefix.clone();
        if let Some(a) = after {
            let mut k = self.inner.keys.state(consumer, a);
            k.push(0);
            begin = begin.max(k);
        }
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        while out.len() < limit && begin < end {
            let want = limit - out.len();
            let (b, e) = (begin.clone(), end.clone());
            let batch = self
                .simple(|_, tx| {
                    let (b, e) = (b.clone(), e.clone());
                    Box::pin(async move {
                        Ok(tx
                            .get_range(RangeRead {
                                begin: &b,
                                end: &e,
                                limit: want,
                                reverse: false,
                                snapshot: true,
                                target_bytes: 0,
                            })
                            .await?)
                    })
                })
                .await?;
            let Some((last, _)) = batch.pairs.last() else {
                break;
            };
            let mut next = last.clone();
            next.push(0);
            for (k, v) in batch.pairs {
                if let Some(rest) = k.strip_prefix(base.as_slice()) {
                    out.push((rest.to_vec(), v));
                }
            }
            begin = next;
            if !batch.more {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn reset_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        validate_consumer(consumer)?;
        let keys = &self.inner.keys;
        let cp = keys.checkpoint(consumer);
        let prefix = keys.state_prefix(consumer);
        let end = keys::strinc(&prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
        let opts = self.inner.opts;
        let mut backoff = Backoff::new(opts.max_retries);
        loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            tx.clear(&cp);
            tx.clear_range(&prefix, &end);
            match tokio::time::timeout(opts.tx_timeout, tx.commit())
                .await
                .unwrap_or(Err(timed_out()))
            {
                Ok(_) => return Ok(()),
                // Clearing is idempotent: retrying after an unknown result is safe.
                Err(e) => {
                    let e = if e.kind == KvErrorKind::Timeout {
                        KvError::new(KvErrorKind::Retryable, e.message)
                    } else {
                        e
                    };
                    backoff.retry(e).await?
                }
            }
        }
    }
}
