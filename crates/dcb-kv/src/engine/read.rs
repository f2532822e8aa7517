//! Reads: the query plan (which index ranges a query needs), cursors over those ranges, and
//! the streaming k-way merge bounded by the head read at the start.

use std::collections::VecDeque;

use dcb_core::codec::decode_event_bytes;
use dcb_core::{Position, Query, SequencedEvent, StoreError};
use futures::future::join_all;
use tokio::time::Instant;

use super::KvStore;
use super::retry::{AttemptErr, Backoff, kv_fatal, timed_out};
use crate::keys::{Keys, PosRange};
use crate::kv::{KvDatabase, KvTransaction, RangeRead};

/// Where the candidates of one query item come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Every event record.
    Events,
    /// The type index of one type.
    Type(String),
    /// The tag index of one tag, keeping only the listed types (empty: any).
    Tag {
        /// The tag.
        tag: String,
        /// Types to keep.
        types: Vec<String>,
    },
}

/// The sources a normalised query needs; their union is a superset of its matches.
pub(crate) fn plan(query: &Query) -> Vec<Source> {
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
    pub(crate) fn prefix(&self, keys: &Keys) -> Vec<u8> {
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
pub(crate) struct Cursor {
    pub(crate) source: Source,
    pub(crate) range: PosRange,
    /// Positions fetched and not yet merged, with the event record when the source holds it.
    pub(crate) buf: VecDeque<(Position, Option<Vec<u8>>)>,
    pub(crate) done: bool,
}

impl Cursor {
    pub(crate) fn new(
        source: Source,
        keys: &Keys,
        lo: Option<Position>,
        hi: Option<Position>,
    ) -> Cursor {
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
    pub(crate) async fn fetch<T: KvTransaction>(
        &mut self,
        tx: &T,
        limit: usize,
        target_bytes: usize,
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
                target_bytes,
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

/// The state of a streaming read.
pub(crate) struct ReadState<D: KvDatabase> {
    pub(crate) store: KvStore<D>,
    pub(crate) query: Query,
    pub(crate) tx: Option<(D::Tx, Instant)>,
    pub(crate) cursors: Vec<Cursor>,
    pub(crate) backwards: bool,
    pub(crate) batch: usize,
    pub(crate) remaining: u64,
    /// Merged candidates whose events are not fetched yet.
    pub(crate) candidates: VecDeque<(Position, Option<Vec<u8>>)>,
    pub(crate) pending: VecDeque<SequencedEvent>,
    pub(crate) finished: bool,
    pub(crate) failed: bool,
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
            let target = self.store.inner.opts.read_target_bytes;
            while self.candidates.len() < max {
                let backwards = self.backwards;
                // Every cursor needs a buffered position (or to be exhausted) before the
                // smallest (largest, backwards) one can be picked.
                while self.cursors.iter().any(|c| c.buf.is_empty() && !c.done) {
                    let fetches = self
                        .cursors
                        .iter_mut()
                        .filter(|c| c.buf.is_empty() && !c.done)
                        .map(|c| c.fetch(tx, per_cursor, target, backwards, true));
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
            // The record is ours: the event shares its buffer instead of copying out of it.
            let stored = decode_event_bytes(&dcb_core::Bytes::from(record))?;
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

    pub(crate) async fn next(&mut self) -> Option<Result<SequencedEvent, StoreError>> {
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
