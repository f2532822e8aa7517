//! Consistent consumer snapshots for online backups ([`EventStore::consumer_snapshot`]).
//!
//! The writer thread takes the snapshot between two commit groups (a `Job::Snapshot` in its
//! queue): it commits what was queued before, then opens fjall's cross-keyspace
//! [`fjall::Database::snapshot`] and reads the head it has just published. Writes therefore pause
//! for at most the one commit in progress, and the snapshot sees every checkpoint and state
//! write of the groups up to that head and nothing after it. Checkpoints are read at once (one
//! per consumer); the state is streamed from the snapshot in pages of [`STATE_PAGE`] keys, so a
//! large read model never sits in memory.
//!
//! Only the `consumers` keyspace is read from the snapshot: events are immutable once committed,
//! so a backup reads them through [`EventStore::read`] up to the snapshot's head, whatever the
//! event storage is.
//!
//! [`EventStore::consumer_snapshot`]: dcb_core::EventStore::consumer_snapshot
//! [`EventStore::read`]: dcb_core::EventStore::read

use std::collections::BTreeMap;
use std::ops::Bound;

use dcb_core::{ConsumerSnapshot, Position, StateEntry, StoreError};
use fjall::Readable;
use futures::StreamExt;

use crate::store::{Shared, fjall_err};

/// State keys read from the snapshot per step.
const STATE_PAGE: usize = 256;

/// A snapshot as the writer took it, before its checkpoints are read.
pub(crate) struct Taken {
    snapshot: fjall::Snapshot,
    consumers: fjall::Keyspace,
    head: u64,
}

/// Opens the snapshot. Called by the writer thread between two commit groups only, so that the
/// head read here is exactly what the snapshot holds.
pub(crate) fn take(shared: &Shared) -> Result<Taken, StoreError> {
    let disk = shared.disk()?;
    let snapshot = disk.db.snapshot();
    let head = shared.index_read().head;
    Ok(Taken {
        snapshot,
        consumers: disk.consumers.clone(),
        head,
    })
}

/// Reads the checkpoints and wraps the state in a paged stream.
pub(crate) fn into_consumer_snapshot(taken: Taken) -> Result<ConsumerSnapshot, StoreError> {
    let mut checkpoints = BTreeMap::new();
    for kv in taken.snapshot.prefix(&taken.consumers, b"c") {
        let (k, v) = kv.into_inner().map_err(fjall_err)?;
        let (name, p) = crate::disk::decode_checkpoint(&k, &v)?;
        checkpoints.insert(name, p);
    }
    let head = (taken.head > 0).then(|| Position::from_u64(taken.head));
    let pages = Pages {
        taken,
        after: None,
        done: false,
    };
    let state = futures::stream::unfold(pages, |mut pages| async move {
        if pages.done {
            return None;
        }
        // Each page is synchronous work on the snapshot; let other tasks run in between.
        tokio::task::yield_now().await;
        let page = pages.next_page();
        if page.as_ref().map_or(true, |p| p.len() < STATE_PAGE) {
            pages.done = true;
        }
        Some((page, pages))
    })
    .flat_map(|page| match page {
        Ok(entries) => futures::stream::iter(entries.into_iter().map(Ok)).left_stream(),
        Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
    })
    .boxed();
    Ok(ConsumerSnapshot {
        head,
        checkpoints,
        state,
    })
}

struct Pages {
    taken: Taken,
    /// The last raw key returned.
    after: Option<Vec<u8>>,
    done: bool,
}

impl Pages {
    fn next_page(&mut self) -> Result<Vec<StateEntry>, StoreError> {
        let lower = match &self.after {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Included(vec![b's']),
        };
        let range = (lower, Bound::Excluded(vec![b't']));
        let mut out = Vec::with_capacity(STATE_PAGE);
        for kv in self
            .taken
            .snapshot
            .range(&self.taken.consumers, range)
            .take(STATE_PAGE)
        {
            let (k, v) = kv.into_inner().map_err(fjall_err)?;
            out.push(decode_state_key(&k, &v)?);
            self.after = Some(k.to_vec());
        }
        Ok(out)
    }
}

/// `b's' ++ len(consumer) as u8 ++ consumer ++ key` (see `keys::state_key`).
fn decode_state_key(k: &[u8], v: &[u8]) -> Result<StateEntry, StoreError> {
    let bad = || StoreError::Corrupted("consumer state key is malformed".into());
    let len = usize::from(*k.get(1).ok_or_else(bad)?);
    let name = k.get(2..2 + len).ok_or_else(bad)?;
    let consumer = std::str::from_utf8(name)
        .map_err(|_| StoreError::Corrupted("consumer name is not UTF-8".into()))?
        .to_owned();
    Ok(StateEntry {
        consumer,
        key: k[2 + len..].to_vec(),
        value: v.to_vec(),
    })
}
