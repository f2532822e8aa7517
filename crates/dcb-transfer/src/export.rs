//! The streaming exporter, and the consistent view of a source store it reads from.

use std::collections::BTreeMap;
use std::io::Write;

use dcb_core::{
    ConsumerSnapshot, EventStore, Position, Query, ReadOptions, ReadStream, StateEntry, StoreError,
};
use futures::stream::{BoxStream, StreamExt};

use crate::format::{self, FORMAT_VERSION, Header, Trailer};
use crate::{Progress, Summary, TransferError};

/// Events between two progress reports.
pub(crate) const PROGRESS_EVERY: u64 = 4096;

/// One consistent view of a source store: the head, the consumers at that head (when the backend
/// offers a snapshot), and a read of every event up to the head.
pub(crate) struct Source {
    pub(crate) head: Option<Position>,
    pub(crate) consumers: bool,
    pub(crate) checkpoints: BTreeMap<String, Position>,
    pub(crate) state: Option<BoxStream<'static, Result<StateEntry, StoreError>>>,
    pub(crate) events: ReadStream,
    pub(crate) total: Option<u64>,
}

impl Source {
    /// Takes the consumer snapshot (or, when the backend has none, only the head), then opens the
    /// read of every event up to that head.
    pub(crate) async fn open<S: EventStore + ?Sized>(store: &S) -> Result<Source, TransferError> {
        let (head, consumers, checkpoints, state) = match store.consumer_snapshot().await {
            Ok(ConsumerSnapshot {
                head,
                checkpoints,
                state,
            }) => (head, true, checkpoints, Some(state)),
            Err(StoreError::Unsupported(_)) => (store.head().await?, false, BTreeMap::new(), None),
            Err(e) => return Err(e.into()),
        };
        let total = store.stats().await?.events;
        let events = match head {
            None => ReadStream::from_vec(None, Vec::new()),
            Some(h) => {
                let options = match h.next() {
                    Some(after_head) => ReadOptions::new().before(after_head),
                    None => ReadOptions::new(),
                };
                store.read(Query::All, options).await?
            }
        };
        if events.head() < head {
            return Err(StoreError::Corrupted(format!(
                "the store's head went back from {head:?} to {:?} during the export",
                events.head()
            ))
            .into());
        }
        Ok(Source {
            head,
            consumers,
            checkpoints,
            state,
            events,
            total,
        })
    }

    pub(crate) fn header(&self) -> Header {
        Header {
            fairway_export: FORMAT_VERSION,
            head: self.head,
            consumers: self.consumers,
            checkpoints: self.checkpoints.clone(),
        }
    }
}

/// A running CRC-32 and byte count over what is written.
pub(crate) struct Tally {
    pub(crate) crc: crc32fast::Hasher,
    pub(crate) bytes: u64,
}

impl Tally {
    pub(crate) fn new() -> Tally {
        Tally {
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }

    pub(crate) fn add(&mut self, line: &[u8]) {
        self.crc.update(line);
        self.bytes += line.len() as u64;
    }

    pub(crate) fn trailer(&self, head: Option<Position>, events: u64, state: u64) -> Trailer {
        Trailer {
            fairway_export_end: FORMAT_VERSION,
            events,
            state_entries: state,
            head,
            crc32: format::crc_text(self.crc.clone().finalize()),
        }
    }
}

/// Writes every event up to one head, every consumer's checkpoint and state at that head, and the
/// trailer to `out`, streaming: memory does not grow with the log. Reports progress every few
/// thousand events.
///
/// The consumers come from [`EventStore::consumer_snapshot`]; on a backend without one the
/// export holds events only (`consumers: false` in the header and the summary).
pub async fn export<S: EventStore + ?Sized, W: Write>(
    store: &S,
    out: W,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Summary, TransferError> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut source = Source::open(store).await?;
    let mut tally = Tally::new();
    let mut line = Vec::with_capacity(4096);
    format::write_json(&mut line, &source.header());
    tally.add(&line);
    out.write_all(&line)?;
    let mut state_entries = 0u64;
    if let Some(mut state) = source.state.take() {
        while let Some(entry) = state.next().await {
            line.clear();
            format::write_state(&mut line, &entry?);
            tally.add(&line);
            out.write_all(&line)?;
            state_entries += 1;
        }
    }
    let mut events = 0u64;
    while let Some(e) = source.events.next().await {
        let e = e?;
        line.clear();
        format::write_event(&mut line, e.position, &e.event);
        tally.add(&line);
        out.write_all(&line)?;
        events += 1;
        if events.is_multiple_of(PROGRESS_EVERY) {
            progress(Progress {
                events,
                total: source.total,
            });
        }
    }
    line.clear();
    format::write_json(
        &mut line,
        &tally.trailer(source.head, events, state_entries),
    );
    out.write_all(&line)?;
    out.flush()?;
    progress(Progress {
        events,
        total: Some(events),
    });
    Ok(Summary {
        head: source.head,
        events,
        state_entries,
        checkpoints: source.checkpoints.len() as u64,
        consumers: source.consumers,
        crc32: tally.crc.finalize(),
        bytes: tally.bytes + line.len() as u64,
    })
}
