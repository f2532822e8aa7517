//! The DCB engine: appends, conditions, reads, checkpoints and consumer state over a
//! [`KvDatabase`].
//!
//! - `calls.rs`: every write is a *call* fenced by a commit token (retries, unknown results,
//!   late commits, settling an exhausted budget, clearing the token afterwards);
//! - `append.rs`: appends, conditions and FoundationDB's size accounting;
//! - `state.rs`: checkpoints and consumer state;
//! - `read.rs`: query plans, cursors and streaming reads;
//! - `head.rs`: the one head watcher per store that wakes local waiters.

mod append;
mod calls;
mod head;
mod options;
mod read;
mod retry;
mod snapshot;
mod state;

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use dcb_core::{
    AppendRequest, Appended, EventStore, Position, Query, ReadOptions, ReadStream, StateCommit,
    StoreError, Subscription, check_read,
};
use futures::StreamExt;
use tokio::time::Instant;

pub use append::MAX_EVENTS_PER_VERSIONSTAMP;
pub use options::KvOptions;

use crate::keys::{Keys, SCHEMA_VERSION};
use crate::kv::{KvDatabase, KvTransaction};
use calls::Call;
use read::{Cursor, ReadState, plan};
use retry::{AttemptErr, Backoff, kv_fatal, timed_out};

/// The DCB event store over a KV database. Cheap to clone (clones share the handle).
pub struct KvStore<D: KvDatabase> {
    inner: Arc<Inner<D>>,
}

impl<D: KvDatabase> Clone for KvStore<D> {
    fn clone(&self) -> Self {
        KvStore {
            inner: self.inner.clone(),
        }
    }
}

impl<D: KvDatabase> std::fmt::Debug for KvStore<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("options", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<D> {
    db: D,
    keys: Keys,
    opts: KvOptions,
    head: head::HeadWatch,
}

fn decode_pos(bytes: &[u8], what: &str) -> Result<Position, StoreError> {
    Position::from_bytes(bytes).map_err(|e| StoreError::Corrupted(format!("{what}: {e}")))
}

/// The commit version a position's versionstamp starts with.
fn commit_version(p: Position) -> u64 {
    let b = p.to_bytes();
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    u64::from_be_bytes(v)
}

impl<D: KvDatabase> KvStore<D> {
    /// Opens the namespace `namespace` of `db`: checks the schema marker, writing it on first
    /// use. A different schema version is [`StoreError::Corrupted`], and so is a head written
    /// at a commit version above the database's current read version: its positions come from
    /// another cluster (a disaster-recovery switch, a copied or restored backup), and new
    /// positions could sort below old ones.
    pub async fn open(db: D, namespace: &str, opts: KvOptions) -> Result<KvStore<D>, StoreError> {
        let store = KvStore {
            inner: Arc::new(Inner {
                db,
                keys: Keys::new(namespace),
                opts,
                head: head::HeadWatch::new(),
            }),
        };
        let key = store.inner.keys.schema();
        let mut backoff = Backoff::new(opts.max_retries);
        loop {
            let tx = store.inner.db.begin().map_err(kv_fatal)?;
            let attempt = async {
                match tx.get(&key, false).await? {
                    Some(v) if v.as_slice() == [SCHEMA_VERSION] => {}
                    Some(v) => {
                        return Err(AttemptErr::Store(StoreError::Corrupted(format!(
                            "namespace {namespace:?} holds key schema {v:?}, this build reads version {SCHEMA_VERSION}"
                        ))));
                    }
                    None => tx.set(&key, &[SCHEMA_VERSION]),
                }
                if let Some(head) = store.read_head(&tx).await? {
                    let read_version = tx.read_version().await?;
                    let written = commit_version(head);
                    if written > read_version {
                        return Err(AttemptErr::Store(StoreError::Corrupted(format!(
                            "namespace {namespace:?}: its head {head} was committed at version {written}, above this cluster's read version {read_version}; the data comes from another cluster (DR switch, copy or restore) and new positions would sort below stored ones. Re-import the events into a fresh namespace"
                        ))));
                    }
                }
                tx.commit().await?;
                Ok(())
            };
            match tokio::time::timeout(opts.tx_timeout, attempt)
                .await
                .unwrap_or(Err(AttemptErr::Kv(timed_out())))
            {
                Ok(()) => return Ok(store),
                Err(AttemptErr::Store(e)) => return Err(e),
                // Writing the marker twice is harmless, so an unknown result is simply retried.
                Err(AttemptErr::Kv(e)) => backoff.retry(e).await?,
            }
        }
    }

    /// The database handle.
    pub fn database(&self) -> &D {
        &self.inner.db
    }

    /// The key builder of this store's namespace.
    pub fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Deletes every key of this namespace (events, indexes, checkpoints, state, schema marker).
    /// The handle must not be used afterwards except to drop it. Fenced like every write: an
    /// attempt that timed out can never land after a later attempt succeeded.
    pub async fn destroy(&self) -> Result<(), StoreError> {
        self.run(&Call::Destroy).await.map(|_| ())
    }

    async fn read_head(&self, tx: &D::Tx) -> Result<Option<Position>, AttemptErr> {
        match tx.get(&self.inner.keys.head(), true).await? {
            Some(v) => Ok(Some(decode_pos(&v, "head")?)),
            None => Ok(None),
        }
    }

    async fn simple<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: for<'a> Fn(&'a Self, &'a D::Tx) -> futures::future::BoxFuture<'a, Result<T, AttemptErr>>,
    {
        let mut backoff = Backoff::new(self.inner.opts.max_retries);
        loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            let r = tokio::time::timeout(self.inner.opts.tx_timeout, op(self, &tx))
                .await
                .unwrap_or(Err(AttemptErr::Kv(timed_out())));
            match r {
                Ok(v) => return Ok(v),
                Err(AttemptErr::Store(e)) => return Err(e),
                Err(AttemptErr::Kv(e)) => backoff.retry(e).await?,
            }
        }
    }
}

#[async_trait]
impl<D: KvDatabase> EventStore for KvStore<D> {
    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        self.append_call(request).await
    }

    async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        check_read(&query, &options)?;
        let query = query.normalized();
        let (tx, head) = {
            let mut backoff = Backoff::new(self.inner.opts.max_retries);
            loop {
                let tx = self.inner.db.begin().map_err(kv_fatal)?;
                let r = tokio::time::timeout(self.inner.opts.tx_timeout, self.read_head(&tx))
                    .await
                    .unwrap_or(Err(AttemptErr::Kv(timed_out())));
                match r {
                    Ok(head) => break (tx, head),
                    Err(AttemptErr::Store(e)) => return Err(e),
                    Err(AttemptErr::Kv(e)) => backoff.retry(e).await?,
                }
            }
        };
        let lo = options.min_position();
        let hi = match (head.and_then(Position::next), options.before) {
            (Some(h), Some(b)) => Some(h.min(b)),
            (Some(h), None) => Some(h),
            (None, b) => b,
        };
        let empty = head.is_none()
            || lo.is_none()
            || options.limit == Some(0)
            || matches!((lo, hi), (Some(l), Some(h)) if l >= h);
        if empty {
            return Ok(ReadStream::from_vec(head, Vec::new()));
        }
        let cursors = plan(&query)
            .into_iter()
            .map(|s| Cursor::new(s, &self.inner.keys, lo, hi))
            .collect();
        let state = ReadState {
            store: self.clone(),
            query,
            tx: Some((tx, Instant::now())),
            cursors,
            backwards: options.backwards,
            batch: self.inner.opts.read_batch,
            remaining: options.limit.unwrap_or(u64::MAX),
            candidates: VecDeque::new(),
            pending: VecDeque::new(),
            finished: false,
            failed: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            st.next().await.map(|item| (item, st))
        });
        Ok(ReadStream::new(head, stream.boxed()))
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.simple(|s, tx| Box::pin(s.read_head(tx))).await
    }

    async fn wait_for_head(&self, after: Option<Position>) -> Result<Option<Position>, StoreError> {
        self.wait_head(after).await
    }

    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription {
        dcb_core::subscribe::poll_subscription(Arc::new(self.clone()), query, after)
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<Position>, StoreError> {
        self.read_checkpoint(consumer).await
    }

    async fn commit_state(&self, commit: StateCommit) -> Result<(), StoreError> {
        self.state_call(commit).await
    }

    async fn get_state(&self, consumer: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_state(consumer, key).await
    }

    async fn scan_state(
        &self,
        consumer: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.scan(consumer, prefix, after, limit).await
    }

    async fn reset_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        self.reset(consumer).await
    }

    /// Head, checkpoints and state at one read version (see `snapshot.rs`).
    async fn consumer_snapshot(&self) -> Result<dcb_core::ConsumerSnapshot, StoreError> {
        self.snapshot_consumers().await
    }
}
