//! `dcb-embedded`: the default DCB event store — durable, embedded, zero setup, one process.
//!
//! Events are stored in an append-only **segment log** of its own (`segments/*.seg` in the data
//! directory): each commit group is appended as one checksummed frame and `fdatasync`'d before
//! any of its appends is acknowledged, so the frame is both the journal and the data and each
//! event's bytes reach the disk once. Concurrent appends are queued to one writer thread that
//! decides them in order — each append's conditions checked against everything before it,
//! including earlier appends of the same group — and commits the whole group with one fsync
//! (group commit). A failed condition rejects only its own append. A synchronous caller
//! ([`EmbeddedStore::append_blocking`]) that finds the writer idle and appends not arriving
//! concurrently commits its own append on its own thread, under the same writer state, instead.
//!
//! Reads locate events by position (positions are dense from 1: segment, then the segment's
//! offset table) and hand records out without copying: a read fetches its records in position
//! order, records at most 4 KiB apart with one `pread`, all into one buffer per step of the read,
//! and each event's data is a slice of that buffer, as are a type or tag longer than
//! `Text::INLINE` (23 bytes; shorter ones are copied into the event; the record format is decoded
//! by hand, without serde). A small read pool of the store's own shares long steps (loaded and
//! checked in groups, the next one begun while the consumer works through the current one;
//! records are left in the buffers they were read into and decoded on the consumer's thread as
//! they are handed out, so that only that thread touches a buffer's reference count) and
//! scattered ones (their `pread`s in groups) with the reading thread
//! ([`Options::read_threads`]); a consumer that takes a read in batches
//! (`ReadStream::next_batch`) has its records decoded straight into its vector. Consumer
//! checkpoints and state and the
//! store's metadata are in [fjall](https://docs.rs/fjall); a tracked append's checkpoint move is
//! carried in its frame, so it is atomic with the events (see `keys` for the layout).
//!
//! The type, tag and id indexes are derived data (one posting per type and per tag of each
//! event: linear in tags). Those of the active segment are kept in memory; when a segment is
//! sealed, its postings and ids are written to an immutable, checksummed index file next to it
//! (`segments/*.idx`) and leave memory, which keeps a small summary per sealed segment (a sparse
//! key directory and a bloom filter) and the blocks of the newest ones, up to
//! [`Options::index_memory_bytes`]: index memory is bounded by the active segment and that budget.
//! Lookups read the sealed segments' files (through the page cache) only for positions older than
//! the active segment, and skip segments outside the span or without the key. The in-memory part
//! is saved to an index snapshot when the store closes and every million events, and at open it
//! is loaded from it and completed from the active segment's events after it (or indexed from the
//! active segment when there is no usable snapshot); a missing or damaged index file is rebuilt
//! from its segment.
//!
//! A data directory written by an older version (schema 1: events in a fjall keyspace) is
//! migrated to the segment log once, when it is first opened.
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
mod blockfmt;
mod disk;
mod index;
pub mod keys;
mod read;
mod readpool;
mod recent;
mod segindex;
mod segment;
pub mod snapshot;
mod store;
mod writer;

pub use store::{EmbeddedStore, Options, Stats};

/// The segment files seen from outside a store, for tests and fuzzing: a well-formed segment's
/// bytes ([`segment_file::segment_bytes`]) and a directory of them opened and read back, checked
/// ([`segment_file::inspect`]).
pub mod segment_file {
    pub use crate::segment::{DIR, Inspected, file_name, inspect, segment_bytes};
}
