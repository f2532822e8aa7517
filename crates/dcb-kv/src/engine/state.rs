//! Consumer checkpoints and state: reads, fenced state commits, resets.
//!
//! Every state commit and reset is a call fenced by its commit token (`calls.rs`). On top,
//! every one of them reads the consumer's checkpoint key serializably and every reset and
//! checkpointed commit writes it: a late blind write conflicts with a reset that happened after
//! it read, and a late reset conflicts with every checkpoint written after it read.

use dcb_core::limits::{MAX_STATE_WRITES, validate_consumer, validate_state_write};
use dcb_core::{InputError, Position, StateCommit, StoreError, check_state_commit};

use super::calls::Call;
use super::retry::AttemptErr;
use super::{KvStore, decode_pos};
use crate::keys;
use crate::kv::{KvDatabase, KvTransaction, MUTATION_OVERHEAD, RANGE_OVERHEAD, RangeRead};

impl<D: KvDatabase> KvStore<D> {
    /// The transaction size of a state commit, as FoundationDB counts it (an upper bound).
    pub(crate) fn estimate_state_bytes(&self, commit: &StateCommit) -> usize {
        let keys = &self.inner.keys;
        let prefix = keys.state_prefix(&commit.consumer).len();
        let point = |k: usize| RANGE_OVERHEAD + 2 * k + 1;
        let mut size = 0usize;
        for (k, v) in &commit.writes {
            let key = prefix + k.len();
            size += MUTATION_OVERHEAD + point(key);
            size += match v {
                Some(v) => key + v.len(),
                None => 2 * key + 1,
            };
        }
        // Token (read and written) and checkpoint (read and written).
        let token = keys.root().len() + 1 + 16;
        let cp = keys.checkpoint(&commit.consumer).len();
        size + 2 * point(token)
            + MUTATION_OVERHEAD
            + token
            + 8
            + 2 * point(cp)
            + MUTATION_OVERHEAD
            + cp
            + 12
    }

    pub(crate) async fn read_checkpoint(
        &self,
        consumer: &str,
    ) -> Result<Option<Position>, StoreError> {
        validate_consumer(consumer)?;
        let key = self.inner.keys.checkpoint(consumer);
        self.simple(|_, tx| {
            let key = key.clone();
            Box::pin(async move {
                match tx.get(&key, true).await? {
                    Some(v) => Ok(Some(decode_pos(&v, "checkpoint")?)),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    pub(crate) async fn state_call(&self, commit: StateCommit) -> Result<(), StoreError> {
        validate_consumer(&commit.consumer)?;
        if commit.writes.len() > MAX_STATE_WRITES {
            return Err(InputError::TooMany {
                field: "state writes",
                count: commit.writes.len(),
                max: MAX_STATE_WRITES,
            }
            .into());
        }
        for (k, v) in &commit.writes {
            validate_state_write(k, v.as_deref())?;
        }
        let size = self.estimate_state_bytes(&commit);
        if size > self.inner.opts.max_tx_bytes {
            return Err(InputError::TooLong {
                field: "transaction",
                len: size,
                max: self.inner.opts.max_tx_bytes,
            }
            .into());
        }
        self.run(&Call::State(&commit)).await.map(|_| ())
    }

    /// The reads and writes of one state-commit attempt (after its token).
    pub(crate) async fn state_attempt(
        &self,
        tx: &D::Tx,
        commit: &StateCommit,
    ) -> Result<(), AttemptErr> {
        let keys = &self.inner.keys;
        let cp_key = keys.checkpoint(&commit.consumer);
        // Always serializable: fences this write against resets (see the module docs).
        let stored = match tx.get(&cp_key, false).await? {
            Some(v) => Some(decode_pos(&v, "checkpoint")?),
            None => None,
        };
        check_state_commit(commit, stored)?;
        if let Some(p) = commit.checkpoint {
            tx.set(&cp_key, &p.to_bytes());
        }
        for (k, v) in &commit.writes {
            let key = keys.state(&commit.consumer, k);
            match v {
                Some(v) => tx.set(&key, v),
                None => tx.clear(&key),
            }
        }
        Ok(())
    }

    pub(crate) async fn reset(&self, consumer: &str) -> Result<(), StoreError> {
        validate_consumer(consumer)?;
        self.run(&Call::Reset(consumer)).await.map(|_| ())
    }

    /// The reads and writes of one reset attempt (after its token).
    pub(crate) async fn reset_attempt(&self, tx: &D::Tx, consumer: &str) -> Result<(), AttemptErr> {
        let keys = &self.inner.keys;
        let cp = keys.checkpoint(consumer);
        let prefix = keys.state_prefix(consumer);
        let end = keys::strinc(&prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
        // Serializable: a late reset conflicts with every checkpoint written since.
        tx.get(&cp, false).await?;
        tx.clear(&cp);
        tx.clear_range(&prefix, &end);
        Ok(())
    }

    pub(crate) async fn read_state(
        &self,
        consumer: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        validate_consumer(consumer)?;
        let key = self.inner.keys.state(consumer, key);
        self.simple(|_, tx| {
            let key = key.clone();
            Box::pin(async move { Ok(tx.get(&key, true).await?) })
        })
        .await
    }

    pub(crate) async fn scan(
        &self,
        consumer: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        validate_consumer(consumer)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let base = self.inner.keys.state_prefix(consumer);
        let full_prefix = self.inner.keys.state(consumer, prefix);
        let end = keys::strinc(&full_prefix).unwrap_or_else(|| vec![0xff; full_prefix.len() + 1]);
        let mut begin = full_prefix.clone();
        if let Some(a) = after {
            let mut k = self.inner.keys.state(consumer, a);
            k.push(0);
            begin = begin.max(k);
        }
        let target_bytes = self.inner.opts.read_target_bytes;
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        while out.len() < limit && begin < end {
            let want = limit - out.len();
            let (b, e) = (begin.clone(), end.clone());
            let batch = self
                .simple(|_, tx| {
                    let (b, e) = (b.clone(), e.clone());
                    Box::pin(async move {
                        Ok(tx
                            .get_range(RangeRead {
                                begin: &b,
                                end: &e,
                                limit: want,
                                reverse: false,
                                snapshot: true,
                                target_bytes,
                            })
                            .await?)
                    })
                })
                .await?;
            let Some((last, _)) = batch.pairs.last() else {
                break;
            };
            let mut next = last.clone();
            next.push(0);
            for (k, v) in batch.pairs {
                if let Some(rest) = k.strip_prefix(base.as_slice()) {
                    out.push((rest.to_vec(), v));
                }
            }
            begin = next;
            if !batch.more {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }
}
