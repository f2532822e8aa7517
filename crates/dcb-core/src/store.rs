//! The `EventStore` trait and its request and response types.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::stream::{BoxStream, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::{Event, Position, Query, SequencedEvent, StoreError};

/// Where a read starts, where it stops, how many events it returns and in which order.
///
/// Bounds apply to positions whatever the direction; `backwards` reverses the order (newest
/// first) and `limit` then takes the first `n` in that order. So "the last event for this tag" is
/// `ReadOptions::new().backwards().limit(1)`.
///
/// ```
/// use dcb_core::{Position, ReadOptions};
/// let page = ReadOptions::new().after(Position::from_u64(10)).limit(100);
/// assert_eq!(page.limit, Some(100));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadOptions {
    /// Lower bound (exclusive `after` or inclusive `from`).
    pub start: Option<Start>,
    /// Exclusive upper bound: only events strictly before this position.
    pub before: Option<Position>,
    /// At most this many events.
    pub limit: Option<u64>,
    /// Newest first.
    pub backwards: bool,
}

/// A read's lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// Events strictly after this position.
    After(Position),
    /// Events at or after this position.
    From(Position),
}

impl ReadOptions {
    /// Every matching event, oldest first.
    pub fn new() -> ReadOptions {
        ReadOptions::default()
    }

    /// Only events strictly after `position` (replaces any earlier lower bound).
    pub fn after(mut self, position: Position) -> ReadOptions {
        self.start = Some(Start::After(position));
        self
    }

    /// Only events strictly after `position`, when given (`None` leaves the read unbounded).
    pub fn after_opt(self, position: Option<Position>) -> ReadOptions {
        match position {
            Some(p) => self.after(p),
            None => ReadOptions {
                start: None,
                ..self
            },
        }
    }

    /// Only events at or after `position` (replaces any earlier lower bound).
    pub fn from(mut self, position: Position) -> ReadOptions {
        self.start = Some(Start::From(position));
        self
    }

    /// Only events strictly before `position`.
    pub fn before(mut self, position: Position) -> ReadOptions {
        self.before = Some(position);
        self
    }

    /// At most `limit` events.
    pub fn limit(mut self, limit: u64) -> ReadOptions {
        self.limit = Some(limit);
        self
    }

    /// Newest first.
    pub fn backwards(mut self) -> ReadOptions {
        self.backwards = true;
        self
    }

    /// The smallest position the read may return, `None` when the range is empty.
    pub fn min_position(&self) -> Option<Position> {
        match self.start {
            None => Some(Position::ZERO),
            Some(Start::From(p)) => Some(p),
            Some(Start::After(p)) => p.next(),
        }
    }

    /// Whether `position` lies inside the bounds (ignoring limit and order).
    pub fn contains(&self, position: Position) -> bool {
        let above = match self.start {
            None => true,
            Some(Start::After(p)) => position > p,
            Some(Start::From(p)) => position >= p,
        };
        above && self.before.is_none_or(|b| position < b)
    }
}

/// "Fail this append if any event matching `fail_if_events_match` exists after `after`."
///
/// `after: None` means no matching event may exist at all. The appended batch itself is never
/// checked against its own conditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendCondition {
    /// The query whose matches fail the append.
    pub fail_if_events_match: Query,
    /// Only events strictly after this position count (typically the head a decision was read at).
    #[serde(default)]
    pub after: Option<Position>,
}

impl AppendCondition {
    /// Fail if any event matching `query` exists after `after` (`None`: at all).
    pub fn new(query: Query, after: Option<Position>) -> AppendCondition {
        AppendCondition {
            fail_if_events_match: query,
            after,
        }
    }

    /// Fail if any event matching `query` exists at all.
    pub fn none_match(query: Query) -> AppendCondition {
        AppendCondition {
            fail_if_events_match: query,
            after: None,
        }
    }
}

/// Moves a consumer's checkpoint atomically with an append (exactly-once processing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    /// The consumer (a view or automation name).
    pub consumer: String,
    /// The new checkpoint: must be strictly greater than the stored one.
    pub position: Position,
}

/// A full append request: events, conditions and optional tracking.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppendRequest {
    /// The batch: all appended or none.
    pub events: Vec<Event>,
    /// All must hold (each is checked independently).
    pub conditions: Vec<AppendCondition>,
    /// Checkpoint to advance in the same atomic write.
    pub tracking: Option<Tracking>,
}

impl AppendRequest {
    /// A request appending `events` unconditionally.
    pub fn new(events: Vec<Event>) -> AppendRequest {
        AppendRequest {
            events,
            conditions: Vec::new(),
            tracking: None,
        }
    }

    /// Adds a condition.
    pub fn condition(mut self, condition: AppendCondition) -> AppendRequest {
        self.conditions.push(condition);
        self
    }

    /// Adds conditions.
    pub fn conditions(
        mut self,
        conditions: impl IntoIterator<Item = AppendCondition>,
    ) -> AppendRequest {
        self.conditions.extend(conditions);
        self
    }

    /// Advances `consumer`'s checkpoint to `position` atomically with the append; the append fails
    /// with [`StoreError::CheckpointConflict`] unless the stored checkpoint is below `position`.
    pub fn track(mut self, consumer: impl Into<String>, position: Position) -> AppendRequest {
        self.tracking = Some(Tracking {
            consumer: consumer.into(),
            position,
        });
        self
    }
}

/// The outcome of a successful append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The position of each event, in batch order.
    pub positions: Vec<Position>,
    /// `true` when this was an idempotent retry of a batch already stored: nothing new was
    /// written and `positions` are the original ones.
    pub replayed: bool,
}

impl Appended {
    /// The position of the batch's last event.
    pub fn last(&self) -> Option<Position> {
        self.positions.last().copied()
    }
}

/// One write in a consumer-state commit: `Some(value)` sets, `None` deletes.
pub type StateWrite = (Vec<u8>, Option<Vec<u8>>);

/// An atomic update of a consumer's own key-value state and checkpoint (a materialized view's
/// read model).
///
/// Build it with a struct literal ending in `..Default::default()` so that new fields keep
/// their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateCommit {
    /// The consumer whose namespace is written.
    pub consumer: String,
    /// Puts and deletes, applied in order.
    pub writes: Vec<StateWrite>,
    /// The new checkpoint: must be strictly greater than the stored one.
    pub checkpoint: Option<Position>,
    /// An extra requirement on the stored checkpoint, checked atomically with the write.
    pub guard: CheckpointGuard,
}

/// What a [`StateCommit`] requires of the consumer's stored checkpoint, besides a new checkpoint
/// being greater than it.
///
/// `Exactly` is a compare-and-set: a consumer that read its checkpoint, processed events from
/// there and commits with `Exactly(what it read)` fails with [`StoreError::CheckpointConflict`]
/// when anyone else moved the checkpoint in between (e.g. another replica that took over a view),
/// so the same events are never applied twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointGuard {
    /// No requirement beyond a new checkpoint advancing (the default).
    #[default]
    Advancing,
    /// The stored checkpoint must be exactly this (`None`: no checkpoint stored).
    Exactly(Option<Position>),
}

impl CheckpointGuard {
    /// Whether `stored` satisfies the guard.
    pub fn admits(self, stored: Option<Position>) -> bool {
        match self {
            CheckpointGuard::Advancing => true,
            CheckpointGuard::Exactly(expected) => expected == stored,
        }
    }
}

/// Checks a state commit's checkpoint rules against the `stored` checkpoint: the guard must admit
/// it and a new checkpoint must advance it. Shared by every backend.
pub fn check_state_commit(
    commit: &StateCommit,
    stored: Option<Position>,
) -> Result<(), StoreError> {
    let advancing = commit
        .checkpoint
        .is_none_or(|p| stored.is_none_or(|s| p > s));
    if commit.guard.admits(stored) && advancing {
        return Ok(());
    }
    Err(StoreError::CheckpointConflict {
        consumer: commit.consumer.clone(),
        stored,
        requested: commit.checkpoint,
    })
}

/// The events of a read, in order, and the head the read was evaluated at.
///
/// It is a [`Stream`] of events; memory use does not grow with the result size. A consumer of
/// many events (a scan, a view's catch-up, an export) can take them a batch at a time with
/// [`next_batch`](ReadStream::next_batch) instead: same events, same order, same errors, with
/// less work per event on a store that hands out batches natively ([`EventBatches`]).
pub struct ReadStream {
    head: Option<Position>,
    source: Source,
    /// An error met while filling a batch that already held events: it is the next item.
    failed: Option<StoreError>,
    /// The source has ended: it is not polled again (a stream need not be fused).
    ended: bool,
}

enum Source {
    Events(BoxStream<'static, Result<SequencedEvent, StoreError>>),
    Batches(Pin<Box<dyn EventBatches>>),
}

/// A read's events as a store hands them out many at a time (see [`ReadStream::next_batch`]).
///
/// It is also the stream of the same events one at a time; the two may be mixed, and together
/// hand out each event once, in order.
pub trait EventBatches: Stream<Item = Result<SequencedEvent, StoreError>> + Send {
    /// Moves up to `max` (at least one) of the next events to the end of `out`, and says how
    /// many: `Ready(Ok(0))` at the end of the read. Events found before an error are handed out
    /// first (`Ok(n)`), the error on the next call, as the stream would.
    fn poll_batch(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut Vec<SequencedEvent>,
        max: usize,
    ) -> Poll<Result<usize, StoreError>>;
}

impl ReadStream {
    /// A read result from a head and a stream of events.
    pub fn new(
        head: Option<Position>,
        inner: BoxStream<'static, Result<SequencedEvent, StoreError>>,
    ) -> ReadStream {
        ReadStream {
            head,
            source: Source::Events(inner),
            failed: None,
            ended: false,
        }
    }

    /// A read result from a head and a source that hands out batches (see [`EventBatches`]).
    pub fn batched(head: Option<Position>, source: impl EventBatches + 'static) -> ReadStream {
        ReadStream {
            head,
            source: Source::Batches(Box::pin(source)),
            failed: None,
            ended: false,
        }
    }

    /// A read result from events already in memory.
    pub fn from_vec(head: Option<Position>, events: Vec<SequencedEvent>) -> ReadStream {
        ReadStream::new(
            head,
            futures::stream::iter(events.into_iter().map(Ok)).boxed(),
        )
    }

    /// The store's head when the read was evaluated (`None`: the store was empty). Use it as the
    /// `after` of an append condition: no event below it can appear later.
    pub fn head(&self) -> Option<Position> {
        self.head
    }

    /// Moves up to `max` (at least one) of the next events to the end of `out` and returns how
    /// many; `Ok(0)` is the end of the read. It waits only for the first of them: a batch holds
    /// what the store has ready, so it may be shorter than `max` before the end. On an error the
    /// events before it come first, in their batch; the error is the next call's answer.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use dcb_core::{Event, EventStore, MemoryStore, Query, ReadOptions};
    /// let store = MemoryStore::new();
    /// for n in 0..5 {
    ///     store.append(vec![Event::new("Ticked", n.to_string()).tag("clock:1")], vec![]).await?;
    /// }
    /// let mut read = store.read(Query::All, ReadOptions::new()).await?;
    /// let (mut batch, mut seen) = (Vec::new(), 0);
    /// while read.next_batch(&mut batch, 2).await? > 0 {
    ///     seen += batch.len();
    ///     batch.clear();
    /// }
    /// assert_eq!(seen, 5);
    /// # Ok::<(), dcb_core::StoreError>(()) }).unwrap();
    /// ```
    pub async fn next_batch(
        &mut self,
        out: &mut Vec<SequencedEvent>,
        max: usize,
    ) -> Result<usize, StoreError> {
        futures::future::poll_fn(|cx| self.poll_next_batch(cx, out, max)).await
    }

    /// The polling form of [`next_batch`](ReadStream::next_batch).
    pub fn poll_next_batch(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<SequencedEvent>,
        max: usize,
    ) -> Poll<Result<usize, StoreError>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        if self.ended {
            return Poll::Ready(Ok(0));
        }
        let max = max.max(1);
        match &mut self.source {
            Source::Batches(source) => {
                let polled = source.as_mut().poll_batch(cx, out, max);
                if let Poll::Ready(Ok(0)) = polled {
                    self.ended = true;
                }
                polled
            }
            Source::Events(events) => {
                let mut got = 0;
                while got < max {
                    match events.as_mut().poll_next(cx) {
                        Poll::Ready(Some(Ok(e))) => {
                            out.push(e);
                            got += 1;
                        }
                        Poll::Ready(Some(Err(e))) if got == 0 => return Poll::Ready(Err(e)),
                        Poll::Ready(Some(Err(e))) => {
                            self.failed = Some(e);
                            break;
                        }
                        Poll::Ready(None) => {
                            self.ended = true;
                            break;
                        }
                        Poll::Pending if got == 0 => return Poll::Pending,
                        Poll::Pending => break,
                    }
                }
                Poll::Ready(Ok(got))
            }
        }
    }

    /// Collects every event (for small reads).
    pub async fn collect_all(mut self) -> Result<Vec<SequencedEvent>, StoreError> {
        let mut out = Vec::new();
        while self.next_batch(&mut out, usize::MAX).await? > 0 {}
        Ok(out)
    }
}

impl Stream for ReadStream {
    type Item = Result<SequencedEvent, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        let polled = match &mut self.source {
            Source::Events(events) => events.as_mut().poll_next(cx),
            Source::Batches(source) => source.as_mut().poll_next(cx),
        };
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }
}

impl std::fmt::Debug for ReadStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadStream")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

/// Store-wide figures (see [`EventStore::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoreStats {
    /// The last committed position.
    pub head: Option<Position>,
    /// The number of events, when the backend counts them cheaply.
    pub events: Option<u64>,
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionItem {
    /// The next matching event.
    Event(SequencedEvent),
    /// Emitted once: every matching event up to `head` has been yielded; what follows is live.
    CaughtUp {
        /// The head at the moment of catching up.
        head: Option<Position>,
    },
}

/// A catch-up-then-live stream of matching events (see [`EventStore::subscribe`]).
pub type Subscription = BoxStream<'static, Result<SubscriptionItem, StoreError>>;

/// One key of a consumer's state, as a [`ConsumerSnapshot`] streams it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// The consumer owning the key.
    pub consumer: String,
    /// The state key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

/// A consistent copy of every consumer's checkpoint and state, and the head it is consistent
/// with (see [`EventStore::consumer_snapshot`]): every checkpoint is at or below `head`, and the
/// state is exactly what was committed when the head was `head`.
pub struct ConsumerSnapshot {
    /// The store's head at the snapshot (`None`: no event yet).
    pub head: Option<Position>,
    /// Every stored checkpoint, by consumer.
    pub checkpoints: std::collections::BTreeMap<String, Position>,
    /// Every state entry of every consumer, grouped by consumer (consumers in the backend's
    /// order: by name length, then name, on the embedded and FoundationDB stores), each
    /// consumer's keys in order. Memory stays bounded where the backend streams it in pages.
    pub state: BoxStream<'static, Result<StateEntry, StoreError>>,
}

impl std::fmt::Debug for ConsumerSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSnapshot")
            .field("head", &self.head)
            .field("checkpoints", &self.checkpoints)
            .finish_non_exhaustive()
    }
}

/// A DCB event store. Every backend implements it and passes the conformance suite.
///
/// All methods validate their input first; an invalid request is
/// [`StoreError::InvalidInput`] and writes nothing.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends a batch atomically if every condition holds, optionally advancing a consumer
    /// checkpoint in the same write.
    ///
    /// Idempotent retry: when every event carries an `id` and those ids are stored as exactly this
    /// batch (same events, same order, nothing more), the original positions are returned with
    /// `replayed: true` and nothing is written (conditions are not re-checked). Any other reuse of
    /// a stored id is [`StoreError::IdConflict`].
    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError>;

    /// Appends `events` atomically if every condition holds (see [`EventStore::append_request`]).
    async fn append(
        &self,
        events: Vec<Event>,
        conditions: Vec<AppendCondition>,
    ) -> Result<Appended, StoreError> {
        self.append_request(AppendRequest {
            events,
            conditions,
            tracking: None,
        })
        .await
    }

    /// Streams the events matching `query` within `options`, in position order, from one
    /// consistent snapshot, together with the head that snapshot was taken at.
    async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError>;

    /// The position of the last committed event (`None` for an empty store).
    async fn head(&self) -> Result<Option<Position>, StoreError>;

    /// Store-wide figures, as far as the backend knows them cheaply (for status pages and
    /// operators). The default knows only the head.
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(StoreStats {
            head: self.head().await?,
            events: None,
        })
    }

    /// Waits until the head is past `after` and returns it (immediately if it already is).
    async fn wait_for_head(&self, after: Option<Position>) -> Result<Option<Position>, StoreError>;

    /// Catch-up from `after` (exclusive; `None` = from the start), then live. Emits
    /// [`SubscriptionItem::CaughtUp`] once when the catch-up is done. Resumable from the last
    /// position seen; memory stays bounded because the stream is pulled: a slow consumer simply
    /// reads later.
    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription;

    /// The stored checkpoint of `consumer`.
    async fn checkpoint(&self, consumer: &str) -> Result<Option<Position>, StoreError>;

    /// Applies a consumer-state commit atomically (writes and checkpoint together).
    async fn commit_state(&self, commit: StateCommit) -> Result<(), StoreError>;

    /// Reads one key of a consumer's state.
    async fn get_state(&self, consumer: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads up to `limit` keys of a consumer's state starting with `prefix`, in key order,
    /// starting strictly after `after` when given.
    async fn scan_state(
        &self,
        consumer: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// Deletes a consumer's whole state and checkpoint (to rebuild a view from scratch).
    async fn reset_consumer(&self, consumer: &str) -> Result<(), StoreError>;

    /// A consistent snapshot of every consumer's checkpoint and state, with the head it is
    /// consistent with (for online backups: events up to that head plus this snapshot are one
    /// consistent copy). Writes pause for at most one commit while it is taken.
    ///
    /// The default is [`StoreError::Unsupported`]: a backend offers it only where one snapshot
    /// can stay open for the whole copy.
    async fn consumer_snapshot(&self) -> Result<ConsumerSnapshot, StoreError> {
        Err(StoreError::Unsupported(
            "a consistent consumer snapshot (online backup)".into(),
        ))
    }
}

/// Validates read input, including range sanity.
pub fn check_read(query: &Query, options: &ReadOptions) -> Result<(), StoreError> {
    crate::limits::validate_read(query, options)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> SequencedEvent {
        SequencedEvent {
            position: Position::from_u64(n),
            event: Event::new("T", n.to_string()),
        }
    }

    /// Events 1..=3, an error, then event 5: the stream a store with a bad record hands out.
    fn broken() -> ReadStream {
        let items = vec![
            Ok(event(1)),
            Ok(event(2)),
            Ok(event(3)),
            Err(StoreError::Corrupted("record 4".into())),
            Ok(event(5)),
        ];
        ReadStream::new(
            Some(Position::from_u64(5)),
            futures::stream::iter(items).boxed(),
        )
    }

    fn at(v: &[SequencedEvent]) -> Vec<u64> {
        v.iter().filter_map(|e| e.position.as_u64()).collect()
    }

    #[test]
    fn a_batch_stops_before_an_error_which_is_the_next_answer() {
        futures::executor::block_on(async {
            let mut read = broken();
            let mut out = Vec::new();
            assert!(matches!(read.next_batch(&mut out, 10).await, Ok(3)));
            assert_eq!(at(&out), [1, 2, 3]);
            assert!(matches!(
                read.next_batch(&mut out, 10).await,
                Err(StoreError::Corrupted(_))
            ));
            assert_eq!(out.len(), 3, "a failed call adds nothing");
        });
    }

    #[test]
    fn the_stream_sees_the_error_a_batch_stopped_at() {
        futures::executor::block_on(async {
            let mut read = broken();
            let mut out = Vec::new();
            assert!(matches!(read.next_batch(&mut out, 2).await, Ok(2)));
            assert!(matches!(read.next_batch(&mut out, 2).await, Ok(1)));
            assert!(matches!(
                read.next().await,
                Some(Err(StoreError::Corrupted(_)))
            ));
            assert_eq!(at(&out), [1, 2, 3]);
        });
    }

    #[test]
    fn batches_respect_max_and_end_with_zero() {
        futures::executor::block_on(async {
            let events: Vec<_> = (1..=10).map(event).collect();
            let mut read = ReadStream::from_vec(Some(Position::from_u64(10)), events);
            let mut out = Vec::new();
            // A `max` of 0 is taken as 1: every call makes progress.
            assert!(matches!(read.next_batch(&mut out, 0).await, Ok(1)));
            assert!(matches!(read.next_batch(&mut out, 4).await, Ok(4)));
            assert!(
                matches!(read.next().await, Some(Ok(e)) if e.position == Position::from_u64(6))
            );
            assert!(matches!(read.next_batch(&mut out, 100).await, Ok(4)));
            assert!(matches!(read.next_batch(&mut out, 100).await, Ok(0)));
            assert_eq!(at(&out), [1, 2, 3, 4, 5, 7, 8, 9, 10]);
            assert_eq!(read.head(), Some(Position::from_u64(10)));
        });
    }

    #[test]
    fn an_ended_source_is_never_polled_again() {
        futures::executor::block_on(async {
            // `unfold` panics when polled after its end: the read must not do that.
            let source = futures::stream::unfold(1u64, |n| async move {
                (n <= 3).then(|| (Ok(event(n)), n + 1))
            });
            let mut read = ReadStream::new(None, source.boxed());
            let mut out = Vec::new();
            assert!(matches!(read.next_batch(&mut out, 10).await, Ok(3)));
            assert!(matches!(read.next_batch(&mut out, 10).await, Ok(0)));
            assert!(read.next().await.is_none());
            assert!(matches!(read.next_batch(&mut out, 10).await, Ok(0)));
            let source = futures::stream::unfold(1u64, |n| async move {
                (n <= 2).then(|| (Ok(event(n)), n + 1))
            });
            let all = ReadStream::new(None, source.boxed()).collect_all().await;
            assert!(matches!(all.as_deref().map(at), Ok(ref p) if p == &[1, 2]));
        });
    }

    #[test]
    fn collect_all_returns_every_event_or_the_first_error() {
        futures::executor::block_on(async {
            let events: Vec<_> = (1..=3).map(event).collect();
            let all = ReadStream::from_vec(None, events).collect_all().await;
            assert!(matches!(all.as_deref().map(at), Ok(ref p) if p == &[1, 2, 3]));
            assert!(matches!(
                broken().collect_all().await,
                Err(StoreError::Corrupted(_))
            ));
        });
    }
}
