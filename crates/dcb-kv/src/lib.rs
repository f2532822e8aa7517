//! `dcb-kv`: the DCB engine, written once against an ordered, transactional key-value store with
//! FoundationDB's semantics, and [`SimKv`], an in-memory model of those semantics.
//!
//! Layer: a backend engine above `dcb-core`. It implements [`dcb_core::EventStore`] as
//! [`KvStore`] over any [`KvDatabase`] (the seam in [`kv`]); `dcb-fdb` supplies FoundationDB.
//! It must not depend on FoundationDB (nor on any other concrete store) nor on the framework.
//!
//! - **Keys**: one layout, documented with its schema version in [`keys`].
//! - **Positions** are the commit versionstamp plus the event's index in its batch: appends
//!   never read a counter, so concurrent appends with disjoint conditions never conflict.
//! - **Conditions** are checked with ordinary (conflict-registering) range reads of the index
//!   ranges the condition's query needs, inside the append transaction. A concurrent commit that
//!   writes a versionstamped key into one of those ranges makes this commit fail with a retryable
//!   conflict; the retry re-reads and the condition then passes or fails on fresh data. A failed
//!   condition is definitive and never retried.
//! - **Every write is a fenced call** (appends, state commits, resets, `destroy`): a random
//!   commit token `b/<token>` is read serializably and written by every attempt, so an unknown
//!   result (`commit_unknown_result`, a timeout, a dropped future, a commit landing late) is
//!   resolved exactly and no abandoned attempt can land after a later one succeeded. When the
//!   retries run out after unknown outcomes, a fencing transaction settles the call (found:
//!   done; absent: a tombstone makes every abandoned attempt fail) before it returns; the token
//!   is cleared afterwards. Event ids add the cross-call rule: a batch whose ids are stored as
//!   exactly this batch returns the original positions with `replayed: true`.
//! - **Sizes** are counted as FoundationDB's client counts them (see [`kv::MUTATION_OVERHEAD`]),
//!   and FoundationDB's 2101/2102/2103 refusals are typed input errors.
//! - **Reads** merge the index ranges of the query (one cursor per range, fetched in batches,
//!   memory proportional to the number of ranges), deduplicate by position, and fetch event
//!   records in pipelined batches. They are bounded by the head read at the start, so a read that
//!   outlives one transaction continues in a fresh one without gaps or duplicates.
//! - **Waiting** for new events: one head watcher per store arms the KV's `watch` on the head
//!   key every append writes and broadcasts each new head to the store's local waiters.
//!
//! ```
//! use dcb_core::{AppendCondition, Event, EventStore, Query, ReadOptions, StoreError};
//! use dcb_kv::{KvOptions, KvStore, SimKv};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let store = KvStore::open(SimKv::new(), "example", KvOptions::new()).await?;
//! let q = Query::tagged("user:42");
//! let head = store.read(q.clone(), ReadOptions::new()).await?.head();
//! let ev = Event::new("UserRegistered", b"{}".to_vec()).tag("user:42");
//! store.append(vec![ev.clone()], vec![AppendCondition::new(q.clone(), head)]).await?;
//! let err = store.append(vec![ev], vec![AppendCondition::new(q, head)]).await.unwrap_err();
//! assert!(matches!(err, StoreError::ConditionFailed { condition: 0 }));
//! # Ok::<(), StoreError>(())
//! # }).unwrap();
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod engine;
pub mod key_decode;
pub mod keys;
pub mod kv;
mod sim;

pub use engine::{KvOptions, KvStore, MAX_EVENTS_PER_VERSIONSTAMP};
pub use kv::{
    KvDatabase, KvError, KvErrorKind, KvTransaction, RangeBatch, RangeRead, Versionstamp,
};
pub use sim::{
    CommitFault, FDB_KEY_SIZE_LIMIT, FDB_TX_SIZE_LIMIT, FDB_VALUE_SIZE_LIMIT, Faults, Latency,
    MUTATION_OVERHEAD, RANGE_OVERHEAD, SimConfig, SimKv, SimStats, SimTx,
};
