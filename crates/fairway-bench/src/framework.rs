//! What an event's id and metadata cost a read (`fairway-bench --framework-events`).
//!
//! Every event `fairway-runtime` appends carries an id and a `recorded_at_ms` metadata entry;
//! the events of the other workloads carry neither, so their scans do not show what decoding
//! those costs. Here two fresh embedded stores get the same `n` events of the scale log's shape
//! (type `Loaded`, one of `n / 100` random tags, a 100-byte payload), the events of the second
//! with an id and that metadata entry too, as the framework writes them. Both are then scanned,
//! alternating, once per round; the plain store is the in-run baseline.

use std::path::Path;
use std::time::Instant;

use dcb_core::{AppendRequest, Event, EventStore, Query, ReadOptions, Uuid};
use dcb_embedded::EmbeddedStore;
use futures::executor::block_on;

use crate::BenchError;
use crate::scale::scale_event;

/// The metadata key the framework records each event's time under.
const RECORDED_AT: &str = "recorded_at_ms";

/// Events per append while populating.
const APPEND: usize = 1000;

/// Event `j` of an `n`-event log: the scale log's, with an id and a recorded-at entry when
/// `framework`.
fn event(j: u64, n: usize, framework: bool) -> Event {
    let e = scale_event(j, n);
    let event = Event::new(e.event_type, e.data).tags(e.tags);
    if framework {
        event
            .meta(RECORDED_AT, (1_764_000_000_000 + j).to_string())
            .with_id(Uuid::from_u128(u128::from(j) + 1))
    } else {
        event
    }
}

/// A store error, as the bench reports it.
fn err(e: dcb_core::StoreError) -> BenchError {
    BenchError::Store {
        store: "fairway",
        message: e.to_string(),
    }
}

/// Opens a fresh store at `dir` and appends the `n` events of the log (`framework`: with ids
/// and metadata).
pub fn populate(dir: &Path, n: usize, framework: bool) -> Result<EmbeddedStore, BenchError> {
    let store = EmbeddedStore::open(dir).map_err(err)?;
    let mut j = 0usize;
    while j < n {
        let k = APPEND.min(n - j);
        let events = (j..j + k).map(|i| event(i as u64, n, framework)).collect();
        store
            .append_blocking(AppendRequest::new(events))
            .map_err(err)?;
        j += k;
    }
    Ok(store)
}

/// What one scan saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scan {
    /// Events read.
    pub events: u64,
    /// Events carrying a recorded-at entry (read with `Metadata::value`, as the runtime does).
    pub recorded: u64,
    /// Events per second.
    pub per_s: f64,
}

/// Reads every event of `store` in batches of 32, looking at each one's recorded-at entry.
pub fn scan(store: &EmbeddedStore) -> Result<Scan, BenchError> {
    let t = Instant::now();
    let (mut events, mut recorded) = (0u64, 0u64);
    block_on(async {
        let mut stream = store
            .read(Query::All, ReadOptions::new())
            .await
            .map_err(err)?;
        let mut batch = Vec::with_capacity(32);
        while stream.next_batch(&mut batch, 32).await.map_err(err)? > 0 {
            for e in batch.drain(..) {
                events += 1;
                recorded += u64::from(e.event.metadata.value(RECORDED_AT).is_some());
            }
        }
        Ok::<(), BenchError>(())
    })?;
    Ok(Scan {
        events,
        recorded,
        per_s: events as f64 / t.elapsed().as_secs_f64().max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_logs_hold_the_same_events_and_only_one_carries_metadata() -> Result<(), BenchError> {
        let dir = tempfile::tempdir()?;
        let n = 2500;
        let plain = populate(&dir.path().join("plain"), n, false)?;
        let framework = populate(&dir.path().join("framework"), n, true)?;
        let (a, b) = (scan(&plain)?, scan(&framework)?);
        assert_eq!((a.events, a.recorded), (n as u64, 0));
        assert_eq!((b.events, b.recorded), (n as u64, n as u64));
        assert!(a.per_s > 0.0 && b.per_s > 0.0);
        Ok(())
    }
}
