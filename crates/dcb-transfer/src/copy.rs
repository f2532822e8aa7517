//! Copying a log from one store straight into another.

use dcb_core::EventStore;
use futures::StreamExt;

use crate::export::{PROGRESS_EVERY, Source, Tally};
use crate::format;
use crate::load::{ImportOptions, Loader, ensure_empty};
use crate::{Imported, Progress, Summary, TransferError};

/// Copies every event up to one head of `source`, and every consumer's checkpoint and state at
/// that head, into the empty store `target` (refused otherwise, with nothing written).
///
/// This is an export piped into an import without the file: the same consistent view of the
/// source, the same batches and checkpoint mapping. The returned `source` summary carries the
/// CRC-32 the export of the source would have, so when every position is kept
/// (`same_positions`), an export of the target must show the same CRC.
pub async fn copy<S, T>(
    source: &S,
    target: &T,
    options: ImportOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Imported, TransferError>
where
    S: EventStore + ?Sized,
    T: EventStore + ?Sized,
{
    let mut from = Source::open(source).await?;
    ensure_empty(target, from.checkpoints.keys()).await?;
    let mut tally = Tally::new();
    let mut line = Vec::with_capacity(4096);
    format::write_json(&mut line, &from.header());
    tally.add(&line);
    let mut loader = Loader::new(target, options, &from.checkpoints);
    let mut state_entries = 0u64;
    if let Some(mut state) = from.state.take() {
        while let Some(entry) = state.next().await {
            let entry = entry?;
            line.clear();
            format::write_state(&mut line, &entry);
            tally.add(&line);
            loader.state(entry).await?;
            state_entries += 1;
        }
    }
    let mut events = 0u64;
    while let Some(e) = from.events.next().await {
        let e = e?;
        line.clear();
        format::write_event(&mut line, e.position, &e.event);
        tally.add(&line);
        loader.event(e.position, e.event).await?;
        events += 1;
        if events.is_multiple_of(PROGRESS_EVERY) {
            progress(Progress {
                events,
                total: from.total,
            });
        }
    }
    let loaded = loader.finish().await?;
    line.clear();
    format::write_json(&mut line, &tally.trailer(from.head, events, state_entries));
    progress(Progress {
        events,
        total: Some(events),
    });
    Ok(Imported {
        source: Summary {
            head: from.head,
            events,
            state_entries,
            checkpoints: from.checkpoints.len() as u64,
            consumers: from.consumers,
            crc32: tally.crc.finalize(),
            bytes: tally.bytes + line.len() as u64,
        },
        head: loaded.head,
        same_positions: loaded.same_positions,
        checkpoints: loaded.checkpoints,
    })
}
