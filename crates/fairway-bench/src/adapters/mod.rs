//! One small blocking trait and one adapter per store.

use std::path::Path;

use crate::{BenchError, BenchEvent, Guard, Outcome, ReadSummary};

mod fairway;
mod tephra;
mod umadb;

/// The operations the workloads need, blocking, callable from many threads at once.
pub trait BenchStore: Send + Sync {
    /// The store's short name.
    fn name(&self) -> &'static str;

    /// Appends `events` atomically, guarded by `guard` when given.
    fn append(&self, events: Vec<BenchEvent>, guard: Option<Guard>) -> Result<Outcome, BenchError>;

    /// Reads every event carrying `tag`, in order, with the head the read was evaluated at.
    fn read_tag(&self, tag: &str) -> Result<ReadSummary, BenchError>;

    /// Streams every event of the store, in order.
    fn scan(&self) -> Result<ReadSummary, BenchError>;

    /// Index entries this store keeps (in memory) when it can report them.
    fn index_entries(&self) -> Option<u64> {
        None
    }
}

/// The stores under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Fairway's `dcb-embedded`.
    Fairway,
    /// `tephra` from crates.io.
    Tephra,
    /// `umadb-core` from crates.io.
    UmaDb,
    /// Fairway's `dcb-embedded` with its recent-records cache off: an in-run baseline for the
    /// cache (opt in with `--stores fairway,fairway-nocache,...`).
    FairwayNoCache,
    /// Fairway's `dcb-embedded` with no read pool: an in-run baseline for the pool (opt in with
    /// `--stores fairway,fairway-nopool,...`).
    FairwayNoPool,
    /// Fairway's `dcb-embedded` read one event at a time through the stream rather than in
    /// batches: an in-run baseline for `ReadStream::next_batch` (opt in with
    /// `--stores fairway,fairway-stream,...`).
    FairwayStream,
    /// Fairway's `dcb-embedded` with every append through the async API (the writer thread's
    /// queue) rather than `append_blocking`: an in-run baseline for commits on the caller's
    /// thread (opt in with `--stores fairway,fairway-queued,...`).
    FairwayQueued,
}

impl Kind {
    /// Every store, ours first.
    pub const ALL: [Kind; 3] = [Kind::Fairway, Kind::Tephra, Kind::UmaDb];

    /// Stores that run only when named with `--stores`.
    pub const EXTRA: [Kind; 4] = [
        Kind::FairwayNoCache,
        Kind::FairwayNoPool,
        Kind::FairwayStream,
        Kind::FairwayQueued,
    ];

    /// The short name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Kind::FairwayNoCache => "fairway-nocache",
            Kind::FairwayNoPool => "fairway-nopool",
            Kind::FairwayStream => "fairway-stream",
            Kind::FairwayQueued => "fairway-queued",
            Kind::Fairway => "fairway",
            Kind::Tephra => "tephra",
            Kind::UmaDb => "umadb",
        }
    }

    /// The store with this name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .chain(Kind::EXTRA)
            .find(|k| k.name() == name)
    }

    /// The durability and group-commit settings this bench opens the store with.
    pub fn settings(self) -> &'static str {
        match self {
            Kind::Fairway => fairway::SETTINGS,
            Kind::FairwayNoCache => fairway::SETTINGS_NO_CACHE,
            Kind::FairwayNoPool => fairway::SETTINGS_NO_POOL,
            Kind::FairwayStream => fairway::SETTINGS_STREAM,
            Kind::FairwayQueued => fairway::SETTINGS_QUEUED,
            Kind::Tephra => tephra::SETTINGS,
            Kind::UmaDb => umadb::SETTINGS,
        }
    }
}

/// Opens (creating) a store of `kind` in the empty directory `dir`, with durable settings.
pub fn open(kind: Kind, dir: &Path) -> Result<Box<dyn BenchStore>, BenchError> {
    Ok(match kind {
        Kind::Fairway => Box::new(fairway::Fairway::open(dir)?),
        Kind::FairwayNoCache => Box::new(fairway::Fairway::open_without_cache(dir)?),
        Kind::FairwayNoPool => Box::new(fairway::Fairway::open_without_pool(dir)?),
        Kind::FairwayStream => Box::new(fairway::Fairway::open_streaming(dir)?),
        Kind::FairwayQueued => Box::new(fairway::Fairway::open_queued(dir)?),
        Kind::Tephra => Box::new(tephra::Tephra::open(dir)?),
        Kind::UmaDb => Box::new(umadb::UmaDb::open(dir)?),
    })
}
