//! Writing a moved log into the target store: batched appends in order, the checkpoint mapping,
//! consumer state.

use std::collections::BTreeMap;

use dcb_core::limits::{MAX_APPEND_BYTES, MAX_EVENTS_PER_APPEND, MAX_STATE_WRITES, event_size};
use dcb_core::{Event, EventStore, Position, StateCommit, StateEntry, StateWrite, StoreError};
use futures::StreamExt;

use crate::TransferError;

/// How an import or copy batches its writes.
///
/// The defaults (1000 events or 1 MiB per append, whichever comes first) keep each append well
/// inside FoundationDB's transaction limits (aim below 1 MB) while giving the embedded store few
/// enough fsyncs; both are clamped to `dcb_core::limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Most events per append (at most `dcb_core::limits::MAX_EVENTS_PER_APPEND`).
    pub batch_events: usize,
    /// Most event bytes per append, as `dcb_core::limits::event_size` counts them (at most
    /// `dcb_core::limits::MAX_APPEND_BYTES`).
    pub batch_bytes: usize,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            batch_events: 1000,
            batch_bytes: 1024 * 1024,
        }
    }
}

/// State bytes per commit (values and keys).
const STATE_BATCH_BYTES: usize = 1024 * 1024;
/// State writes per commit.
const STATE_BATCH_WRITES: usize = 1000;

/// Refuses a target that holds any event or consumer.
pub(crate) async fn ensure_empty<S: EventStore + ?Sized>(
    store: &S,
    consumers: impl IntoIterator<Item = &String>,
) -> Result<(), TransferError> {
    if let Some(head) = store.head().await? {
        return Err(TransferError::NotEmpty(format!(
            "it holds events (head {head})"
        )));
    }
    match store.consumer_snapshot().await {
        Ok(mut snap) => {
            if let Some(name) = snap.checkpoints.keys().next() {
                return Err(TransferError::NotEmpty(format!(
                    "consumer {name:?} has a checkpoint"
                )));
            }
            if let Some(entry) = snap.state.next().await {
                return Err(TransferError::NotEmpty(format!(
                    "consumer {:?} has state",
                    entry?.consumer
                )));
            }
        }
        Err(StoreError::Unsupported(_)) => {
            for name in consumers {
                if store.checkpoint(name).await?.is_some() {
                    return Err(TransferError::NotEmpty(format!(
                        "consumer {name:?} has a checkpoint"
                    )));
                }
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// What a load wrote.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) events: u64,
    pub(crate) state_entries: u64,
    /// The checkpoints written, by consumer, at their new positions.
    pub(crate) checkpoints: BTreeMap<String, Position>,
    /// Every event kept its position.
    pub(crate) same_positions: bool,
    /// The target's position of the last event.
    pub(crate) head: Option<Position>,
}

/// Writes the state, then appends the events in order in batches, mapping checkpoints as it goes.
pub(crate) struct Loader<'s, S: ?Sized> {
    store: &'s S,
    batch_events: usize,
    batch_bytes: usize,
    batch: Vec<Event>,
    olds: Vec<Position>,
    bytes: usize,
    /// (old checkpoint, consumer, new checkpoint), sorted by the old one.
    checkpoints: Vec<(Position, String, Option<Position>)>,
    /// Checkpoints before this index are mapped.
    mapped: usize,
    last_new: Option<Position>,
    last_old: Option<Position>,
    events: u64,
    same_positions: bool,
    state: Vec<StateWrite>,
    state_consumer: String,
    state_bytes: usize,
    state_entries: u64,
}

impl<'s, S: EventStore + ?Sized> Loader<'s, S> {
    pub(crate) fn new(
        store: &'s S,
        options: ImportOptions,
        checkpoints: &BTreeMap<String, Position>,
    ) -> Loader<'s, S> {
        let mut cps: Vec<(Position, String, Option<Position>)> = checkpoints
            .iter()
            .map(|(c, p)| (*p, c.clone(), None))
            .collect();
        cps.sort();
        Loader {
            store,
            batch_events: options.batch_events.clamp(1, MAX_EVENTS_PER_APPEND),
            batch_bytes: options.batch_bytes.clamp(1, MAX_APPEND_BYTES),
            batch: Vec::new(),
            olds: Vec::new(),
            bytes: 0,
            checkpoints: cps,
            mapped: 0,
            last_new: None,
            last_old: None,
            events: 0,
            same_positions: true,
            state: Vec::new(),
            state_consumer: String::new(),
            state_bytes: 0,
            state_entries: 0,
        }
    }

    /// Events appended so far.
    pub(crate) fn events(&self) -> u64 {
        self.events
    }

    /// Queues the event that had position `old` in the source; appends a full batch.
    pub(crate) async fn event(&mut self, old: Position, event: Event) -> Result<(), TransferError> {
        self.flush_state().await?;
        if self.last_old.is_some_and(|l| old <= l) {
            return Err(TransferError::Damaged(format!(
                "position {old} does not follow {:?}",
                self.last_old
            )));
        }
        self.last_old = Some(old);
        let size = event_size(&event);
        if !self.batch.is_empty()
            && (self.batch.len() >= self.batch_events || self.bytes + size > self.batch_bytes)
        {
            self.flush_events().await?;
        }
        self.bytes += size;
        self.batch.push(event);
        self.olds.push(old);
        Ok(())
    }

    async fn flush_events(&mut self) -> Result<(), TransferError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len();
        let appended = self.store.append(batch, Vec::new()).await?;
        if appended.replayed || appended.positions.len() != n {
            // Only possible if someone else wrote the same ids into the target meanwhile.
            return Err(TransferError::NotEmpty(
                "the target already held events of this log (an id was replayed)".into(),
            ));
        }
        for (old, new) in self.olds.drain(..).zip(appended.positions) {
            // Every checkpoint below `old` ends at the previous event.
            while let Some((cp, _, slot)) = self.checkpoints.get_mut(self.mapped) {
                if *cp >= old {
                    break;
                }
                *slot = self.last_new;
                self.mapped += 1;
            }
            self.same_positions &= old == new;
            self.last_new = Some(new);
        }
        self.events += n as u64;
        self.bytes = 0;
        Ok(())
    }

    /// Queues one state entry (all state comes before the events).
    pub(crate) async fn state(&mut self, entry: StateEntry) -> Result<(), TransferError> {
        let size = entry.key.len() + entry.value.len();
        if !self.state.is_empty()
            && (entry.consumer != self.state_consumer
                || self.state.len() >= STATE_BATCH_WRITES.min(MAX_STATE_WRITES)
                || self.state_bytes + size > STATE_BATCH_BYTES)
        {
            self.flush_state().await?;
        }
        if self.state.is_empty() {
            self.state_consumer = entry.consumer;
        }
        self.state_bytes += size;
        self.state.push((entry.key, Some(entry.value)));
        self.state_entries += 1;
        Ok(())
    }

    async fn flush_state(&mut self) -> Result<(), TransferError> {
        if self.state.is_empty() {
            return Ok(());
        }
        self.store
            .commit_state(StateCommit {
                consumer: self.state_consumer.clone(),
                writes: std::mem::take(&mut self.state),
                ..Default::default()
            })
            .await?;
        self.state_bytes = 0;
        Ok(())
    }

    /// Writes what is queued and then every mapped checkpoint.
    pub(crate) async fn finish(mut self) -> Result<Loaded, TransferError> {
        self.flush_events().await?;
        self.flush_state().await?;
        for (_, _, slot) in &mut self.checkpoints[self.mapped..] {
            *slot = self.last_new;
        }
        let mut checkpoints = BTreeMap::new();
        for (old, consumer, new) in std::mem::take(&mut self.checkpoints) {
            // A checkpoint below every event stands for "nothing processed": store none.
            let Some(new) = new else { continue };
            let _ = old;
            self.store
                .commit_state(StateCommit {
                    consumer: consumer.clone(),
                    checkpoint: Some(new),
                    ..Default::default()
                })
                .await?;
            checkpoints.insert(consumer, new);
        }
        Ok(Loaded {
            events: self.events,
            state_entries: self.state_entries,
            checkpoints,
            same_positions: self.same_positions,
            head: self.last_new,
        })
    }
}
