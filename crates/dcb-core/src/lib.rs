//! `dcb-core`: the Dynamic Consistency Boundary (DCB) event store contract.
//!
//! This crate holds the types ([`Event`] with its [`Tags`] and [`Metadata`], [`Position`],
//! [`Query`], [`AppendCondition`], [`ReadOptions`], ...), the async [`EventStore`] trait every
//! backend implements, the input [`limits`], the stored-record [`codec`], the in-memory reference
//! store [`MemoryStore`], [`Delegating`] for stores that wrap another, and (feature `conformance`)
//! the conformance suite and model test that every backend runs.
//!
//! Layer: the bottom. It does no I/O and must not depend on any backend (fjall, FoundationDB) nor
//! on the framework.
//!
//! ```
//! use dcb_core::{AppendCondition, Event, EventStore, MemoryStore, Query, ReadOptions, StoreError};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = MemoryStore::new();
//! let q = Query::tagged("user:42");
//! // Decide on what we read, then append on condition that nothing matching appeared since.
//! let head = store.read(q.clone(), ReadOptions::new()).await?.head();
//! let ev = Event::new("UserRegistered", br#"{"name":"ada"}"#.to_vec()).tag("user:42");
//! store.append(vec![ev.clone()], vec![AppendCondition::new(q.clone(), head)]).await?;
//! // A second decision based on the same, now stale, head fails.
//! let err = store.append(vec![ev], vec![AppendCondition::new(q, head)]).await.unwrap_err();
//! assert!(matches!(err, StoreError::ConditionFailed { condition: 0 }));
//! # Ok::<(), StoreError>(())
//! # }).unwrap();
//! ```

pub mod codec;
mod delegate;
mod error;
mod event;
mod fields;
pub mod limits;
mod memory;
mod position;
mod query;
mod store;
pub mod subscribe;
mod text;

#[cfg(feature = "conformance")]
pub mod conformance;

/// The shared byte buffer of event data ([`Event::data`]), re-exported.
pub use bytes::Bytes;
pub use delegate::Delegating;
pub use error::{InputError, StoreError};
pub use event::{Event, SequencedEvent};
pub use fields::{Metadata, MetadataEntries, Tags};
pub use memory::{MemoryStore, classify_retry};
pub use position::{Position, PositionError};
pub use query::{Query, QueryItem};
pub use store::{
    AppendCondition, AppendRequest, Appended, CheckpointGuard, ConsumerSnapshot, EventBatches,
    EventStore, ReadOptions, ReadStream, Start, StateCommit, StateEntry, StateWrite, StoreStats,
    Subscription, SubscriptionItem, Tracking, check_read, check_state_commit,
};
pub use text::Text;
pub use uuid::Uuid;
