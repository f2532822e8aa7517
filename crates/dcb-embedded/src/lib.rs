//! `dcb-embedded`: the default DCB event store — durable, embedded, zero setup, one process.
//!
//! Events are stored in [fjall](https://docs.rs/fjall) by position; every acknowledged append
//! has been committed in one atomic batch and `fdatasync`'d ([`fjall::PersistMode::SyncData`]).
//! Concurrent appends are queued to one writer thread that decides them in order — each append's
//! conditions checked against everything before it, including earlier appends of the same group —
//! and commits the whole group with one fsync (group commit). A failed condition rejects only its
//! own append.
//!
//! The type, tag and id indexes are derived data kept in memory (one posting per type and per tag
//! of each event: linear in tags), so the durable commit writes only the events. They are saved to
//! an index snapshot when the store closes and every million events, and at open they are loaded
//! from it and completed from the events after it (or rebuilt from all events when there is no
//! usable snapshot). See `keys` for the on-disk layout and `snapshot` for the snapshot file.
//!
//! Layer: a backend. Depends on `dcb-core` and fjall; must not depend on the framework, the host,
//! or FoundationDB.
//!
//! ```
//! use dcb_core::{Event, EventStore, Query, ReadOptions};
//! use dcb_embedded::EmbeddedStore;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let store = EmbeddedStore::open(dir.path())?;
//! store.append(vec![Event::new("ListCreated", b"{}".to_vec()).tag("list:1")], vec![]).await?;
//! let events = store.read(Query::tagged("list:1"), ReadOptions::new()).await?.collect_all().await?;
//! assert_eq!(events.len(), 1);
//! # Ok::<(), dcb_core::StoreError>(())
//! # }).unwrap();
//! ```

mod backup;
mod index;
pub mod keys;
pub mod snapshot;
mod store;
mod writer;

pub use store::{EmbeddedStore, Options, Stats};
