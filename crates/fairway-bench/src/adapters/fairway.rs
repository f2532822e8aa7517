//! Adapter for Fairway's embedded store (`dcb-embedded`).

use std::path::Path;

use dcb_core::{
    AppendCondition, AppendRequest, Event, EventStore, Position, Query, ReadOptions, StoreError,
};
use dcb_embedded::EmbeddedStore;
use futures::StreamExt;
use futures::executor::block_on;

use crate::{BenchError, BenchEvent, BenchStore, Guard, Outcome, ReadSummary};

pub(super) const SETTINGS: &str = "EmbeddedStore::open defaults: each group commit is one frame of \
the segment log, fdatasync'd before any acknowledgement; one writer thread groups up to 512 queued \
appends / 16 MiB; a read pool of one thread fewer than the cores (at least one) shares long or \
scattered read steps with the caller; the newest sealed segments' index blocks (64 MiB at most) \
are held in memory. Appends use EmbeddedStore::append_blocking (the caller \
commits on its own thread when the writer is idle, else joins the queue); reads are taken in \
batches of 32 (ReadStream::next_batch), driven with futures::executor::block_on (no async \
runtime needed).";

pub(super) const SETTINGS_NO_CACHE: &str = "As fairway, with Options::recent_bytes(0): every read goes \
to the segment files (the in-run baseline for the recent-records cache).";

pub(super) const SETTINGS_NO_POOL: &str = "As fairway, with Options::read_threads(0): every read step \
is done on the reading thread alone (the in-run baseline for the read pool).";

pub(super) const SETTINGS_QUEUED: &str = "As fairway, with appends through the async \
EventStore::append (always handed to the writer thread) instead of append_blocking (the in-run \
baseline for commits on the caller's thread).";

pub(super) const SETTINGS_STREAM: &str = "As fairway, with reads taken one event at a time \
through the stream instead of ReadStream::next_batch (the in-run baseline for batched reads).";

const NAME: &str = "fairway";

/// Events taken per `ReadStream::next_batch` call: 32 (4 KiB of events, decoded and consumed
/// while in the L1 cache) scanned 1M events at 9.1-11.6M events/s here, against 8.0-11.1M with
/// 256 and 9.1-10.3M with 2048 (same data directory, alternating, 2026-12-02).
const READ_BATCH: usize = 32;

fn err(e: StoreError) -> BenchError {
    BenchError::store(NAME, e)
}

/// `dcb-embedded` behind the bench trait.
pub(super) struct Fairway {
    store: EmbeddedStore,
    /// Reads one event at a time through the stream instead of in batches.
    streaming: bool,
    /// Appends through the async API (always the writer thread's queue) instead of
    /// `append_blocking`.
    queued: bool,
}

impl Fairway {
    pub(super) fn open(dir: &Path) -> Result<Fairway, BenchError> {
        Ok(Fairway {
            store: EmbeddedStore::open(dir).map_err(err)?,
            streaming: false,
            queued: false,
        })
    }

    pub(super) fn open_queued(dir: &Path) -> Result<Fairway, BenchError> {
        Ok(Fairway {
            store: EmbeddedStore::open(dir).map_err(err)?,
            streaming: false,
            queued: true,
        })
    }

    pub(super) fn open_streaming(dir: &Path) -> Result<Fairway, BenchError> {
        Ok(Fairway {
            store: EmbeddedStore::open(dir).map_err(err)?,
            streaming: true,
            queued: false,
        })
    }

    pub(super) fn open_without_cache(dir: &Path) -> Result<Fairway, BenchError> {
        let options = dcb_embedded::Options::default().recent_bytes(0);
        Ok(Fairway {
            store: EmbeddedStore::open_with(dir, options).map_err(err)?,
            streaming: false,
            queued: false,
        })
    }

    pub(super) fn open_without_pool(dir: &Path) -> Result<Fairway, BenchError> {
        let options = dcb_embedded::Options::default().read_threads(0);
        Ok(Fairway {
            store: EmbeddedStore::open_with(dir, options).map_err(err)?,
            streaming: false,
            queued: false,
        })
    }

    fn read(&self, query: Query) -> Result<ReadSummary, BenchError> {
        block_on(async {
            let mut stream = self
                .store
                .read(query, ReadOptions::new())
                .await
                .map_err(err)?;
            let mut s = ReadSummary {
                head: stream.head().and_then(Position::as_u64),
                ..ReadSummary::default()
            };
            if self.streaming {
                while let Some(e) = stream.next().await {
                    let e = e.map_err(err)?;
                    s.add(e.position.as_u64().unwrap_or(u64::MAX), &e.event.data);
                }
                return Ok(s);
            }
            // In batches: the events the stream would give, with less work per event.
            let mut batch = Vec::with_capacity(READ_BATCH);
            while stream
                .next_batch(&mut batch, READ_BATCH)
                .await
                .map_err(err)?
                > 0
            {
                for e in batch.drain(..) {
                    s.add(e.position.as_u64().unwrap_or(u64::MAX), &e.event.data);
                }
            }
            Ok(s)
        })
    }
}

impl BenchStore for Fairway {
    fn name(&self) -> &'static str {
        NAME
    }

    fn append(&self, events: Vec<BenchEvent>, guard: Option<Guard>) -> Result<Outcome, BenchError> {
        let events = events
            .into_iter()
            .map(|e| Event {
                event_type: e.event_type.into(),
                tags: e.tags.into_iter().collect(),
                data: e.data.into(),
                metadata: Default::default(),
                id: None,
            })
            .collect();
        let conditions = guard
            .map(|g| AppendCondition::new(Query::tagged(g.tag), g.after.map(Position::from_u64)))
            .into_iter()
            .collect();
        let appended = if self.queued {
            block_on(self.store.append(events, conditions))
        } else {
            let request = AppendRequest::new(events).conditions(conditions);
            self.store.append_blocking(request)
        };
        match appended {
            Ok(a) => Ok(Outcome::Written(
                a.last().and_then(Position::as_u64).unwrap_or(0),
            )),
            Err(StoreError::ConditionFailed { .. }) => Ok(Outcome::Conflict),
            Err(e) => Err(err(e)),
        }
    }

    fn read_tag(&self, tag: &str) -> Result<ReadSummary, BenchError> {
        self.read(Query::tagged(tag))
    }

    fn scan(&self) -> Result<ReadSummary, BenchError> {
        self.read(Query::All)
    }

    fn index_entries(&self) -> Option<u64> {
        // In memory (the active segment) and in the sealed segments' index files.
        let s = self.store.stats();
        Some(s.postings as u64 + s.sealed_postings)
    }
}
