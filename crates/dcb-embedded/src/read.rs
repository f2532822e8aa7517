//! A read's stream: the steps of a read planned over the index, loaded (with the read pool's
//! help for long or scattered ones) and decoded as they are handed out, one event or one batch
//! at a time.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use dcb_core::codec;
use dcb_core::{EventBatches, Position, QueryItem, ReadOptions, SequencedEvent, Start, StoreError};
use futures::Stream;

use crate::index::Span;
use crate::readpool::ReadPool;
use crate::segment::Spans;
use crate::store::Shared;

/// Events fetched per step of a query's read: a read holds at most two steps in memory (the one
/// handed out and the one read ahead), and a step is the synchronous work between two yields of
/// a long read (well under a millisecond on a warm page cache).
const READ_CHUNK: usize = 2048;

/// Events fetched per step of a read of everything (a scan): its records are adjacent, so a
/// longer step costs no more memory per event, and each step costs the read pool a wake-up.
/// 4 096 scanned 1.05x faster than 2 048 (1M events, alternating), 8 192 no faster than 4 096.
const SCAN_CHUNK: usize = 4096;

/// Most bytes of records in one step (at least one record): a step of large events is shorter,
/// so that a read holds at most two steps of 4 MiB (plus, for a query whose events are spread
/// out, up to [`crate::segment`]'s 4 KiB gap beside each record).
const STEP_BYTES: u64 = 4 << 20;

/// Events of a read step at least, before the step is split among the read pool's threads.
const STEP_FAN_OUT: usize = 512;

/// The records of a group of a read step, fetched and checked, in the order of its positions,
/// still in the buffers they were read into.
type Records = Spans;

/// The work of one group of a read step: its records.
type GroupWork = Box<dyn Fn(usize) -> Result<Records, StoreError> + Send + Sync>;

/// A read step being loaded in groups by the read pool: its positions, and the groups (which
/// split the positions into consecutive ranges, in order).
struct Groups {
    positions: Arc<[u64]>,
    started: crate::readpool::Started<Result<Records, StoreError>, GroupWork>,
}

impl Groups {
    /// Takes the groups not begun, waits for the others: the step's buffer, or the first error.
    fn finish(self) -> Result<Buffer, StoreError> {
        Ok(Buffer {
            groups: self
                .started
                .finish()
                .into_iter()
                .map(crate::readpool::joined)
                .collect::<Result<_, _>>()?,
            positions: self.positions,
            next: 0,
            at: 0,
        })
    }
}

/// The records of a read step not handed out yet: one group per part fetched in parallel, and
/// the step's positions (the records of all the groups, in order, are at these positions).
/// Records are decoded straight out of their groups' buffers, on the consumer's thread: the
/// threads that fetched them never touched those buffers' reference counts.
struct Buffer {
    groups: VecDeque<Records>,
    positions: Arc<[u64]>,
    /// The position of the next record handed out.
    next: usize,
    /// The next record of the first group.
    at: usize,
}

impl Default for Buffer {
    fn default() -> Buffer {
        Buffer {
            groups: VecDeque::new(),
            positions: Arc::new([]),
            next: 0,
            at: 0,
        }
    }
}

impl Buffer {
    /// The buffer of a step loaded in one group.
    fn whole(positions: Arc<[u64]>, records: Records) -> Buffer {
        Buffer {
            groups: VecDeque::from([records]),
            positions,
            next: 0,
            at: 0,
        }
    }

    /// Decodes up to `n` (at most [`codec::BATCH`]) of the next records, all of one group, into
    /// `out` (see [`codec::decode_sequenced_spans`]): how many it took, 0 at the end. On a
    /// record that does not decode, the events before it are in `out` and its error is
    /// returned.
    #[inline]
    fn decode_into(
        &mut self,
        n: usize,
        out: &mut impl codec::EventSink,
    ) -> Result<usize, StoreError> {
        loop {
            let Some(group) = self.groups.front() else {
                return Ok(0);
            };
            let left = group.spans.len().saturating_sub(self.at);
            if left == 0 {
                self.groups.pop_front();
                self.at = 0;
                continue;
            }
            let take = n.min(left);
            let positions = self.positions.get(self.next..).unwrap_or_default();
            let records = group.spans[self.at..self.at + take]
                .iter()
                .zip(positions)
                .map(|((b, r), &p)| (Position::from_u64(p), *b, r.clone()));
            let decoded = codec::decode_sequenced_spans(&group.buffers, records, out);
            self.at += take;
            self.next += take;
            decoded?;
            return Ok(take);
        }
    }
}

impl Shared {
    /// Loads and checks the records of one read step, at `positions` (in that order): a step
    /// of at least [`STEP_FAN_OUT`] events is split into groups loaded in parallel by the caller
    /// and the read pool's threads.
    fn fetch_step(self: &Arc<Self>, positions: Vec<u64>) -> Result<Buffer, StoreError> {
        match self.begin_step(positions, false) {
            Ok(ahead) => ahead.finish(),
            Err(positions) => {
                // Recent ones from memory, the others from the segment log in position order
                // (with the pool, scattered records are fetched in parallel). They are decoded
                // as they are handed out, on the consumer's thread.
                let records = self.record_spans(&positions, self.pool.as_ref())?;
                Ok(Buffer::whole(positions.into(), records))
            }
        }
    }

    /// Begins loading a step of at least [`STEP_FAN_OUT`] events at `positions` in groups on
    /// the read pool (with `ahead`, all of them may start there: the caller is busy
    /// elsewhere); gives `positions` back when there is no pool or the step is short.
    fn begin_step(self: &Arc<Self>, positions: Vec<u64>, ahead: bool) -> Result<Groups, Vec<u64>> {
        let pool = match &self.pool {
            Some(pool) if positions.len() >= STEP_FAN_OUT => pool,
            _ => return Err(positions),
        };
        let n = positions.len();
        let groups = (pool.width() * 4).min(n / (STEP_FAN_OUT / 2));
        let positions: Arc<[u64]> = positions.into();
        let (shared, all) = (self.clone(), positions.clone());
        let work: GroupWork = Box::new(move |g| {
            shared.record_spans(&all[g * n / groups..(g + 1) * n / groups], None)
        });
        let helpers = if ahead { groups } else { groups - 1 };
        Ok(Groups {
            positions,
            started: pool.begin(groups, work, helpers),
        })
    }

    /// The stored records at `positions`, in that order.
    pub(crate) fn records(
        &self,
        positions: &[u64],
        pool: Option<&ReadPool>,
    ) -> Result<Vec<Bytes>, StoreError> {
        Ok(self.record_spans(positions, pool)?.into_records())
    }

    /// The stored records at `positions`, in that order, left in the buffers they were read
    /// into (a recent one, from memory, is a buffer of its own).
    fn record_spans(
        &self,
        positions: &[u64],
        pool: Option<&ReadPool>,
    ) -> Result<Spans, StoreError> {
        let cached: Option<Vec<Option<Bytes>>> = {
            let recent = self.recent_read();
            recent
                .may_hold(positions)
                .then(|| positions.iter().map(|&p| recent.get(p)).collect())
        };
        let Some(records) = cached else {
            // All on disk (a scan of older events): one planned read, no per-position lookups.
            return self.disk()?.log.read_spans(positions, pool);
        };
        let missing: Vec<u64> = positions
            .iter()
            .zip(&records)
            .filter(|(_, r)| r.is_none())
            .map(|(&p, _)| p)
            .collect();
        let Spans { mut buffers, spans } = if missing.is_empty() {
            Spans::default()
        } else {
            self.disk()?.log.read_spans(&missing, pool)?
        };
        let mut read = spans.into_iter();
        let mut spans = Vec::with_capacity(positions.len());
        for (&p, r) in positions.iter().zip(records) {
            let span = match r {
                Some(record) => {
                    let len = record.len();
                    buffers.push(record);
                    (buffers.len() - 1, 0..len)
                }
                None => read.next().ok_or_else(|| {
                    StoreError::Corrupted(format!("indexed event at position {p} is missing"))
                })?,
            };
            spans.push(span);
        }
        Ok(Spans { buffers, spans })
    }
}

/// The inclusive u64 span of a read, `None` when it is empty.
fn span_of(options: &ReadOptions, head: u64) -> Option<Span> {
    let lo = match options.start {
        None => 1,
        Some(Start::After(p)) => p.as_u64()?.checked_add(1)?,
        Some(Start::From(p)) => p.as_u64()?.max(1),
    };
    let mut hi = head;
    if let Some(b) = options.before.and_then(Position::as_u64) {
        hi = hi.min(b.checked_sub(1)?);
    }
    (lo <= hi).then_some(Span {
        lo,
        hi,
        backwards: options.backwards,
    })
}

struct ReadState {
    shared: Arc<Shared>,
    items: Option<Arc<[dcb_core::QueryItem]>>,
    span: Option<Span>,
    remaining: u64,
    buffer: Buffer,
    /// Events decoded out of the buffer, not handed out yet (at most [`codec::BATCH`]).
    decoded: VecDeque<SequencedEvent>,
    /// The decoding error that ends the read, once `decoded` is handed out.
    failed: Option<StoreError>,
    /// The next step, planned (and when long, being loaded by the read pool) while the consumer
    /// works through the current one; `span` and `remaining` are already past it.
    ahead: Option<Ahead>,
}

/// A read's next step, planned ahead.
enum Ahead {
    /// Being loaded by the read pool.
    Started(Groups),
    /// Too short to hand to the pool: its positions, loaded when it is needed.
    Planned(Vec<u64>),
}

/// The positions of the next step of a read of `items` (`None`: everything) in `span`, with at
/// most `remaining` events left to hand out, and the span and count left after it.
fn plan(
    shared: &Shared,
    items: Option<&[dcb_core::QueryItem]>,
    span: Span,
    remaining: u64,
) -> Result<(Vec<u64>, Option<Span>, u64), StoreError> {
    let chunk = if items.is_none() {
        SCAN_CHUNK
    } else {
        READ_CHUNK
    };
    let max = usize::try_from(remaining).unwrap_or(usize::MAX).min(chunk);
    if max == 0 {
        return Ok((Vec::new(), None, remaining));
    }
    let mut positions: Vec<u64> = match items {
        None if span.backwards => (span.lo..=span.hi).rev().take(max).collect(),
        None => (span.lo..=span.hi).take(max).collect(),
        Some(items) => shared.matches(items, span, max)?,
    };
    let mut more = positions.len() == max;
    // While the store reopens, only the recent records (in memory) can be read: no bound then.
    if let Ok(disk) = shared.disk() {
        let keep = disk.log.within_bytes(&positions, STEP_BYTES);
        more |= keep < positions.len();
        positions.truncate(keep);
    }
    // Every position is fetched or the step fails: a full or shortened step may have more
    // after it.
    let next = match positions.last() {
        Some(&last) if more => {
            if span.backwards {
                last.checked_sub(1)
                    .filter(|&h| h >= span.lo)
                    .map(|hi| Span { hi, ..span })
            } else {
                last.checked_add(1)
                    .filter(|&l| l <= span.hi)
                    .map(|lo| Span { lo, ..span })
            }
        }
        _ => None,
    };
    let left = remaining - positions.len() as u64;
    Ok((positions, next, left))
}

impl ReadState {
    /// The next event of the step: decoded in batches of [`codec::BATCH`] records whose events
    /// share one list of tags (no allocation per event for them). A record that does not decode
    /// ends the read with the error, after the events before it (nothing after it is handed
    /// out, as when a step fails to load).
    #[inline]
    fn next_event(&mut self) -> Option<Result<SequencedEvent, StoreError>> {
        if let Some(e) = self.decoded.pop_front() {
            return Some(Ok(e));
        }
        if let Some(e) = self.failed.take() {
            return Some(Err(e));
        }
        if let Err(e) = self.buffer.decode_into(codec::BATCH, &mut self.decoded) {
            self.buffer = Buffer::default();
            self.ahead = None;
            self.span = None;
            self.failed = Some(e);
        }
        match self.decoded.pop_front() {
            Some(e) => Some(Ok(e)),
            None => self.failed.take().map(Err),
        }
    }

    /// Moves up to `n` of the next events to `out`: the decoded ones first, then records of
    /// the buffer decoded straight into `out`. Stops early at the end of the buffer or on a
    /// record that does not decode (then `failed` holds its error).
    fn take_into(&mut self, out: &mut Vec<SequencedEvent>, n: usize) {
        let queued = self.decoded.len().min(n);
        out.extend(self.decoded.drain(..queued));
        let mut left = n - queued;
        if !self.decoded.is_empty() || self.failed.is_some() {
            return;
        }
        while left > 0 {
            let before = out.len();
            let decoded = self.buffer.decode_into(left.min(codec::BATCH), out);
            let got = out.len() - before;
            if let Err(e) = decoded {
                self.buffer = Buffer::default();
                self.ahead = None;
                self.span = None;
                self.failed = Some(e);
                return;
            }
            if got == 0 {
                return;
            }
            left -= got;
        }
    }

    /// Whether events may come after the buffer.
    fn more(&self) -> bool {
        self.ahead.is_some() || (self.remaining > 0 && self.span.is_some())
    }

    /// Fetches the next step (the one read ahead, or now on the caller's thread); narrows the
    /// span past it.
    fn fill(&mut self) -> Result<(), StoreError> {
        match self.ahead.take() {
            Some(Ahead::Started(groups)) => {
                self.buffer = groups.finish()?;
                return Ok(());
            }
            Some(Ahead::Planned(positions)) => {
                self.buffer = self.shared.fetch_step(positions)?;
                return Ok(());
            }
            None => {}
        }
        let Some(span) = self.span else { return Ok(()) };
        let (positions, next, left) =
            plan(&self.shared, self.items.as_deref(), span, self.remaining)?;
        // One batch per step, fetched in position order: adjacent records come from one read.
        self.buffer = self.shared.fetch_step(positions)?;
        self.span = next;
        self.remaining = left;
        Ok(())
    }

    /// Plans the step after the current one, and begins loading it on the read pool when it is
    /// a long one. A failure to plan it is left for the step itself to report, when it is
    /// needed.
    fn read_ahead(&mut self) {
        let Some(span) = self
            .span
            .filter(|_| self.remaining > 0 && self.ahead.is_none())
        else {
            return;
        };
        if self.shared.pool.is_none() {
            return;
        }
        let Ok((positions, next, left)) =
            plan(&self.shared, self.items.as_deref(), span, self.remaining)
        else {
            return;
        };
        self.ahead = Some(match self.shared.begin_step(positions, true) {
            Ok(groups) => Ahead::Started(groups),
            Err(positions) => Ahead::Planned(positions),
        });
        self.span = next;
        self.remaining = left;
    }
}

/// The stream of a read: events handed out of the buffer in place (no per-event future), the
/// next step fetched when the buffer is empty. A long step is begun by the read pool as soon as
/// the one before it is handed over (read-ahead), and the consumer takes its groups left, if
/// any, when it gets there. A batch ([`EventBatches`]) is decoded straight into the caller's
/// vector.
pub(crate) struct Chunks {
    state: ReadState,
    /// Whether a step was fetched already (the first never waits).
    filled: bool,
    /// The yield in progress before the next step.
    pause: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Chunks {
    /// The read of `items` (`None`: everything) within `options`, evaluated at `head`.
    pub(crate) fn new(
        shared: Arc<Shared>,
        items: Option<Arc<[QueryItem]>>,
        options: &ReadOptions,
        head: u64,
    ) -> Chunks {
        Chunks {
            state: ReadState {
                shared,
                items,
                span: span_of(options, head),
                remaining: options.limit.unwrap_or(u64::MAX),
                buffer: Buffer::default(),
                decoded: VecDeque::with_capacity(codec::BATCH),
                failed: None,
                ahead: None,
            },
            filled: false,
            pause: None,
        }
    }

    /// Loads the next step into the buffer. Each step is synchronous work (memory or the
    /// segment files, with the read pool's help). Between steps a long read yields to the
    /// scheduler, so that a scan, a rebuild or an export never holds an async worker for more
    /// than one step: timers and other requests on the same runtime keep running. A read of one
    /// step never yields.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StoreError>> {
        if self.filled {
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::task::yield_now()));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        self.filled = true;
        if let Err(e) = self.state.fill() {
            self.state.span = None;
            return Poll::Ready(Err(e));
        }
        self.state.read_ahead();
        Poll::Ready(Ok(()))
    }
}

impl Stream for Chunks {
    type Item = Result<SequencedEvent, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(next) = this.state.next_event() {
            return Poll::Ready(Some(next));
        }
        if !this.state.more() {
            return Poll::Ready(None);
        }
        match this.poll_step(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => Poll::Ready(this.state.next_event()),
        }
    }
}

impl EventBatches for Chunks {
    fn poll_batch(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut Vec<SequencedEvent>,
        max: usize,
    ) -> Poll<Result<usize, StoreError>> {
        let this = self.get_mut();
        let (start, max) = (out.len(), max.max(1));
        loop {
            this.state.take_into(out, max - (out.len() - start));
            let got = out.len() - start;
            if got >= max {
                return Poll::Ready(Ok(got));
            }
            // The step is handed out: what is left is its error, or the next step.
            if let Some(e) = this.state.failed.take() {
                if got == 0 {
                    return Poll::Ready(Err(e));
                }
                this.state.failed = Some(e);
                return Poll::Ready(Ok(got));
            }
            // A batch holds at most one step: the next one is loaded when it is asked for.
            if got > 0 || !this.state.more() {
                return Poll::Ready(Ok(got));
            }
            match this.poll_step(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::EmbeddedStore;
    use dcb_core::{AppendRequest, Event, EventStore, Query, Tags};

    /// Walks a read of `items` over the whole log step by step, as [`ReadState`] plans it:
    /// the positions of each step.
    fn steps(
        shared: &Shared,
        items: Option<&[QueryItem]>,
        head: u64,
        backwards: bool,
    ) -> Vec<Vec<u64>> {
        let mut span = Some(Span {
            lo: 1,
            hi: head,
            backwards,
        });
        let mut steps = Vec::new();
        while let Some(s) = span {
            let (positions, next, _) = plan(shared, items, s, u64::MAX).unwrap();
            if positions.is_empty() {
                break;
            }
            steps.push(positions);
            span = next;
        }
        steps
    }

    #[test]
    fn a_step_holds_at_most_its_bytes_of_large_events_and_a_read_still_gets_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        // 200 events of 60 KiB (12 MiB, three steps' worth), then 5 000 small ones.
        const BIG: usize = 60 * 1024;
        for first in (0..200).step_by(50) {
            let events = (first..first + 50)
                .map(|i| {
                    let mut e = Event::new("Big", vec![b'x'; BIG]);
                    e.tags = Tags::from([format!("n:{}", i % 2)]);
                    e
                })
                .collect();
            store.append_blocking(AppendRequest::new(events)).unwrap();
        }
        for _ in 0..5 {
            let events = (0..1000)
                .map(|i| {
                    let mut e = Event::new("Small", b"{}".to_vec());
                    e.tags = Tags::from([format!("n:{}", i % 2)]);
                    e
                })
                .collect();
            store.append_blocking(AppendRequest::new(events)).unwrap();
        }
        let head = 5200;
        let shared = store.shared();
        let tagged = [QueryItem::new().tag("n:0")];
        let most_big = (STEP_BYTES / BIG as u64) as usize;
        for items in [None, Some(&tagged[..])] {
            for backwards in [false, true] {
                let steps = steps(shared, items, head, backwards);
                let all: Vec<u64> = steps.iter().flatten().copied().collect();
                let mut expected: Vec<u64> = (1..=head)
                    .filter(|p| items.is_none() || (p - 1) % 2 == 0)
                    .collect();
                if backwards {
                    expected.reverse();
                }
                assert_eq!(all, expected, "{items:?} backwards: {backwards}");
                let chunk = if items.is_none() {
                    SCAN_CHUNK
                } else {
                    READ_CHUNK
                };
                for step in &steps {
                    let big = step.iter().filter(|&&p| p <= 200).count();
                    assert!(big <= most_big, "{big} large events in one step");
                    assert!(step.len() <= chunk);
                }
                // The large events take as many steps as their bytes need, no more; the small
                // ones fill whole steps.
                let big = expected.iter().filter(|&&p| p <= 200).count();
                let with_big = steps.iter().filter(|s| s.iter().any(|&p| p <= 200)).count();
                assert_eq!(
                    with_big,
                    big.div_ceil(most_big),
                    "{items:?} backwards: {backwards}"
                );
                assert!(steps.iter().any(|s| s.len() == chunk));
            }
        }
        // And the stream hands every event out, in order.
        let read = futures::executor::block_on(async {
            let stream = store.read(Query::All, ReadOptions::new()).await.unwrap();
            stream.collect_all().await.unwrap()
        });
        assert_eq!(read.len(), 5200);
        assert!(
            read.iter()
                .zip(1..)
                .all(|(e, p)| e.position == Position::from_u64(p))
        );
        assert!(read[..200].iter().all(|e| e.event.data.len() == BIG));
    }
}
