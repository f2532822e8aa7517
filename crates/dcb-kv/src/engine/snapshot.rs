//! Consistent consumer snapshots ([`EventStore::consumer_snapshot`]).
//!
//! The head, every checkpoint and every state key are read in **one transaction**, so at one
//! read version: the snapshot is exactly what was committed at that version. FoundationDB ends
//! a transaction after 5 seconds, so this works for as much consumer state as one attempt can
//! read within the transaction timeout (typically tens of megabytes); past that the snapshot
//! fails with [`StoreError::Unavailable`] once the retries are spent. Back up larger
//! FoundationDB deployments with FoundationDB's own `fdbbackup` (docs/operations.md). The
//! state is held in memory for the same reason: it is bounded by what one transaction reads.
//!
//! [`EventStore::consumer_snapshot`]: dcb_core::EventStore::consumer_snapshot

use std::collections::BTreeMap;

use dcb_core::{ConsumerSnapshot, Position, StateEntry, StoreError};
use futures::StreamExt;

use super::retry::AttemptErr;
use super::{KvStore, decode_pos};
use crate::keys;
use crate::kv::{KvDatabase, KvTransaction, RangeRead};

/// Pairs per range request.
const PAGE: usize = 1000;

/// `<len16> <name> <rest>`: the consumer name and what follows it.
fn split_name(bytes: &[u8]) -> Result<(String, &[u8]), StoreError> {
    let bad = || StoreError::Corrupted("consumer key is malformed".into());
    let len = bytes.get(..2).ok_or_else(bad)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let name = bytes.get(2..2 + len).ok_or_else(bad)?;
    let name = std::str::from_utf8(name)
        .map_err(|_| StoreError::Corrupted("consumer name is not UTF-8".into()))?;
    Ok((name.to_owned(), &bytes[2 + len..]))
}

/// Every pair under `prefix`, snapshot reads in pages, all inside `tx`.
async fn read_all<T: KvTransaction>(
    tx: &T,
    prefix: &[u8],
    target_bytes: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, AttemptErr> {
    let end = keys::strinc(prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
    let mut begin = prefix.to_vec();
    let mut out = Vec::new();
    loop {
        let batch = tx
            .get_range(RangeRead {
                begin: &begin,
                end: &end,
                limit: PAGE,
                reverse: false,
                snapshot: true,
                target_bytes,
            })
            .await?;
        let Some((last, _)) = batch.pairs.last() else {
            break;
        };
        let mut next = last.clone();
        next.push(0);
        let more = batch.more;
        out.extend(batch.pairs);
        if !more {
            break;
        }
        begin = next;
    }
    Ok(out)
}

impl<D: KvDatabase> KvStore<D> {
    pub(crate) async fn snapshot_consumers(&self) -> Result<ConsumerSnapshot, StoreError> {
        let target_bytes = self.inner.opts.read_target_bytes;
        let (head, checkpoints, state) = self
            .simple(|s, tx| {
                Box::pin(async move {
                    let keys = &s.inner.keys;
                    let head = s.read_head(tx).await?;
                    let mut cp_prefix = keys.root().to_vec();
                    cp_prefix.push(keys::TAG_CHECKPOINT);
                    let mut state_prefix = keys.root().to_vec();
                    state_prefix.push(keys::TAG_STATE);
                    let mut checkpoints = BTreeMap::new();
                    for (k, v) in read_all(tx, &cp_prefix, target_bytes).await? {
                        let (name, _) = split_name(&k[cp_prefix.len()..])?;
                        let p: Position = decode_pos(&v, "checkpoint")?;
                        checkpoints.insert(name, p);
                    }
                    let mut state = Vec::new();
                    for (k, v) in read_all(tx, &state_prefix, target_bytes).await? {
                        let (consumer, key) = split_name(&k[state_prefix.len()..])?;
                        state.push(Ok(StateEntry {
                            consumer,
                            key: key.to_vec(),
                            value: v,
                        }));
                    }
                    Ok((head, checkpoints, state))
                })
            })
            .await?;
        Ok(ConsumerSnapshot {
            head,
            checkpoints,
            state: futures::stream::iter(state).boxed(),
        })
    }
}
