//! `fairway-bench`: side-by-side benchmarks of Fairway's embedded DCB store against UmaDB and
//! Tephra, the two embeddable Rust DCB stores with durable group commit.
//!
//! Each store is driven through one small, blocking trait ([`BenchStore`]) by OS-thread clients,
//! so every store sees the same load shape. The [`workloads`] module holds the measured
//! scenarios, [`measure`] the process-level probes (`/proc/self/io`, `VmHWM`, directory size) and
//! [`stats`] the medians and percentiles. The `fairway-bench` binary alternates the stores
//! round by round and reports our figures as ratios to each peer (see `docs/BENCHMARKS.md`).
//!
//! [`scale`] measures how the costs grow with the log (1M, 10M events: bytes written, memory,
//! open time, tag and hot-tag reads, full scans), each phase in its own child process.
//!
//! [`framework`] measures what the id and metadata that every framework event carries cost a
//! scan (`--framework-events`), against the same events without them.
//!
//! [`invoices`] is the one workload above the store: gapless invoice numbers under contention,
//! through `fairway-runtime` and the `invoices-create-invoice` module (`--invoices`).
//!
//! Layer: a tool on top of the backends. It depends on `dcb-core`, `dcb-embedded`, the two
//! peer crates and, for [`invoices`], `fairway-runtime` and one module; nothing may depend on
//! it, and it stays out of the workspace's default members.

pub mod adapters;
pub mod framework;
pub mod invoices;
pub mod measure;
pub mod scale;
pub mod stats;
pub mod workloads;

pub use adapters::{BenchStore, Kind, open};

/// Why a benchmark operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The store under test returned an error.
    #[error("{store}: {message}")]
    Store {
        /// Which store.
        store: &'static str,
        /// Its error, rendered.
        message: String,
    },
    /// Local I/O (temp dirs, /proc files).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A workload's invariant did not hold (e.g. not exactly one winner per contention round).
    #[error("check failed: {0}")]
    Check(String),
}

impl BenchError {
    /// A store error from anything displayable.
    pub fn store(store: &'static str, e: impl std::fmt::Display) -> BenchError {
        BenchError::Store {
            store,
            message: e.to_string(),
        }
    }
}

/// An event to append, in the neutral shape every adapter converts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchEvent {
    /// Event type.
    pub event_type: String,
    /// Tags (distinct).
    pub tags: Vec<String>,
    /// Payload.
    pub data: Vec<u8>,
}

impl BenchEvent {
    /// An event of `event_type` with `tags` and `data`.
    pub fn new(event_type: &str, tags: Vec<String>, data: Vec<u8>) -> BenchEvent {
        BenchEvent {
            event_type: event_type.to_owned(),
            tags,
            data,
        }
    }
}

/// "Fail if any event carrying `tag` exists after `after`" (`None`: at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The tag whose events fail the append.
    pub tag: String,
    /// Exclusive lower bound (the head the decision was read at).
    pub after: Option<u64>,
}

/// The outcome of an append the store did not reject as an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written; the position of the last event.
    Written(u64),
    /// The guard failed: a matching event exists after `after`.
    Conflict,
}

/// What a read saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// The head the read was evaluated at (`None`: empty store).
    pub head: Option<u64>,
    /// Events returned.
    pub events: u64,
    /// Payload bytes returned (summed, so no store can skip decoding).
    pub bytes: u64,
    /// The last position returned.
    pub last: Option<u64>,
}

impl ReadSummary {
    /// Counts one returned event.
    pub fn add(&mut self, position: u64, data: &[u8]) {
        self.events += 1;
        self.bytes += data.len() as u64;
        self.last = Some(position);
    }
}
