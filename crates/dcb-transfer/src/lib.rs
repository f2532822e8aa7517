//! `dcb-transfer`: moves an event log between stores — a JSON-lines export and import, and a
//! store-to-store copy (what an online backup is made of).
//!
//! Layer: above the backends, below the host. It depends only on `dcb-core` (the
//! [`EventStore`](dcb_core::EventStore) trait), so it moves a log between any two backends; the
//! backends are only dev-dependencies, for its tests.
//!
//! - [`export()`] writes the [`format`](mod@format): a header with the head and every
//!   consumer's checkpoint, every consumer's state, one line per event (streamed from one read of
//!   `Query::All` up to that head: memory stays flat), and a trailer with counts and a CRC-32.
//! - [`import_from`] checks a whole export first (a truncated or damaged file is refused with
//!   nothing written), refuses a store that is not empty, then appends the events in order in
//!   large batches within `dcb_core::limits` (types, tags, data, metadata and ids preserved),
//!   and restores the consumers.
//! - [`copy()`] does the same from one store straight into another.
//!
//! **Positions and checkpoints.** The target store gives the events its own positions: the
//! embedded store's are dense from 1, so an embedded → embedded move keeps every position; a
//! FoundationDB (`KvStore`) store's are versionstamps. Each consumer's checkpoint is mapped to
//! the new position of the last event at or before it, so views and automations carry on where
//! they were without reprocessing anything. The mapping needs memory for the checkpoints only,
//! never for the events. Consumer state is copied as it is: a consumer that stores positions
//! *inside* its state (an automation's retry queue and dead letters name their trigger event by
//! position) keeps the old values, so drain those before moving to a backend with different
//! positions (see docs/operations.md).
//!
//! **Idempotent retries.** Event ids are kept, so a retried append never writes an event twice;
//! but an import regroups events into its own batches, so a client retrying a batch appended
//! before the move gets `IdConflict` instead of the original positions.
//!
//! ```
//! use dcb_core::{Event, EventStore, MemoryStore};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let source = MemoryStore::new();
//! source.append(vec![Event::new("ListCreated", br#"{"n":1}"#.to_vec()).tag("list:1")], vec![]).await?;
//! let mut file = Vec::new();
//! let exported = dcb_transfer::export(&source, &mut file, &mut |_| {}).await?;
//! let target = MemoryStore::new();
//! let imported = dcb_transfer::import_from(
//!     &target,
//!     || Ok(std::io::Cursor::new(file.clone())),
//!     dcb_transfer::ImportOptions::default(),
//!     &mut |_| {},
//! ).await?;
//! assert_eq!((exported.events, imported.source.events), (1, 1));
//! assert!(imported.same_positions);
//! # Ok::<(), dcb_transfer::TransferError>(())
//! # }).unwrap();
//! ```

mod copy;
mod export;
pub mod format;
mod import;
mod load;

pub use copy::copy;
pub use export::export;
pub use import::{import_from, verify};
pub use load::ImportOptions;

use dcb_core::{Position, StoreError};

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The source or target store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A line of the export is malformed (nothing was written).
    #[error("line {line}: {reason}")]
    Format {
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The export is incomplete or inconsistent: truncated, counts or head that do not match the
    /// trailer, a checksum mismatch (nothing was written).
    #[error("export is incomplete or damaged: {0}")]
    Damaged(String),
    /// The target store already holds events or consumers (nothing was written).
    #[error("the target store is not empty: {0}")]
    NotEmpty(String),
    /// The export file changed while it was being imported: the target holds part of it and
    /// must be discarded.
    #[error("the export changed during the import; discard the target store: {0}")]
    ChangedDuringImport(String),
}

/// What a transfer moved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// The head the source was copied at (`None`: it was empty).
    pub head: Option<Position>,
    /// Events moved.
    pub events: u64,
    /// Consumer state entries moved.
    pub state_entries: u64,
    /// Consumer checkpoints moved.
    pub checkpoints: u64,
    /// Whether consumers were moved (`false`: the source offers no consistent consumer snapshot).
    pub consumers: bool,
    /// CRC-32 of the export (for an import: of the file; for a copy or an export: of the export
    /// the source makes).
    pub crc32: u32,
    /// Bytes of the export.
    pub bytes: u64,
}

/// What an import or copy wrote into the target store.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Imported {
    /// What was read from the source (the file or the source store).
    pub source: Summary,
    /// The target's head after the import (`None`: nothing was imported).
    pub head: Option<Position>,
    /// Every event kept its source position (always so embedded → embedded).
    pub same_positions: bool,
    /// Each consumer's checkpoint in the target: the target position of the last event at or
    /// before its source checkpoint.
    pub checkpoints: std::collections::BTreeMap<String, Position>,
}

/// How far a transfer has come, reported to the progress callback now and then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Events done so far.
    pub events: u64,
    /// Events in all, when known (the head's count for an import, or the store's count).
    pub total: Option<u64>,
}
