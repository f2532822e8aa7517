//! `SimKv`: an in-memory model of FoundationDB's transaction semantics, to test the engine on
//! machines without a cluster.
//!
//! What it models, as FoundationDB (7.3) does it:
//! - **MVCC**: a transaction reads at the version current when it began; later commits are
//!   invisible to it. Reads see the transaction's own buffered writes (read-your-writes).
//! - **Serializable optimistic concurrency**: non-snapshot reads record read conflict ranges
//!   (for a batch cut short, only up to the last key returned); every write records a write
//!   conflict range. A commit fails with a retryable conflict when a transaction committed
//!   after its read version wrote into one of its read conflict ranges. Snapshot reads conflict
//!   with nothing.
//! - **Versionstamps**: 8-byte commit version + 2-byte batch number, placed into keys and
//!   values at commit. Versions grow with random gaps; with [`Faults::shared_version`] several
//!   transactions commit at one version with batch numbers 1, 2, ... (a read version is only
//!   handed out once a version's batch is closed, as the proxies do). A versionstamped key's write
//!   conflict range is the exact stamped key (the commit proxy adds it), and reading a range
//!   that may hold one of the transaction's own versionstamped keys fails
//!   (`accessed_unreadable`, 1036).
//! - **The 5-second limit**: a transaction older than [`SimConfig::max_tx_age`] fails reads and
//!   commits with `transaction_too_old` (1007). Age is measured on tokio's clock: on a paused
//!   clock it is virtual time, with [`Latency`] per operation.
//! - **Sizes** (`size.rs`): FoundationDB's accounting of mutations and conflict ranges, and
//!   `transaction_too_large` (2101), `key_too_large` (2102), `value_too_large` (2103).
//! - **Watches**: armed at commit, fire when the key's value differs from the one the
//!   transaction saw; dropped with the transaction if it never commits; may fail
//!   ([`Faults::watch_error`]).
//! - **Faults** ([`Faults`], seeded, and scripted per commit with [`SimKv::script`]):
//!   `commit_unknown_result` after a commit, instead of one, or for a commit that conflicted;
//!   late commits (`transaction_timed_out` reported, the commit lands later, still checked for
//!   conflicts against its read version; a commit future dropped while in flight lands later
//!   too); spurious conflicts; `transaction_too_old`; short range batches with `more` set; watch
//!   errors.

mod faults;
pub(crate) mod size;
#[cfg(test)]
mod tests;
mod tx;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use faults::{CommitFault, Faults, Latency};
pub use size::{
    FDB_KEY_SIZE_LIMIT, FDB_TX_SIZE_LIMIT, FDB_VALUE_SIZE_LIMIT, MUTATION_OVERHEAD, RANGE_OVERHEAD,
};
pub use tx::SimTx;

use crate::kv::{KvDatabase, KvError, VERSIONSTAMP_LEN, Versionstamp};
use faults::Rng;
use tx::{Pending, Range};

/// Configuration of a [`SimKv`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Injected failures.
    pub faults: Faults,
    /// Age after which a transaction is too old (FoundationDB: 5 s).
    pub max_tx_age: Duration,
    /// Every read and commit first yields to the scheduler, as a network round trip would, so
    /// that concurrent transactions really interleave (when there is no [`Latency`]).
    pub yield_each_op: bool,
    /// Time every read and commit takes, on tokio's clock.
    pub latency: Latency,
    /// `TRANSACTION_SIZE_LIMIT` (FoundationDB: 10 000 000 bytes).
    pub tx_size_limit: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            faults: Faults::none(),
            max_tx_age: Duration::from_secs(5),
            yield_each_op: true,
            latency: Latency::none(),
            tx_size_limit: FDB_TX_SIZE_LIMIT,
        }
    }
}

/// Counters of what happened, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SimStats {
    /// Commits that wrote something.
    pub commits: u64,
    /// Commits refused because of a real conflict.
    pub conflicts: u64,
    /// Injected `commit_unknown_result` (after, without committing, and on a conflict).
    pub injected_unknown: u64,
    /// Injected conflicts.
    pub injected_conflicts: u64,
    /// Injected `transaction_too_old`.
    pub injected_too_old: u64,
    /// Commits reported as timed out while left in flight.
    pub late_commits: u64,
    /// Late commits that landed (passed their conflict check later).
    pub late_landed: u64,
    /// Late commits refused when they arrived (conflict or too old).
    pub late_refused: u64,
    /// Range batches cut short on purpose.
    pub short_batches: u64,
    /// Watches created.
    pub watches: u64,
    /// Injected watch failures.
    pub injected_watch_errors: u64,
    /// Commits refused with 2101/2102/2103.
    pub too_large: u64,
    /// The largest transaction size measured at a commit, as FoundationDB counts it.
    pub largest_commit_bytes: u64,
    /// Commits that shared their version with an earlier one (batch number > 0).
    pub shared_versions: u64,
    /// Point and range reads.
    pub reads: u64,
}

/// A key's history, oldest first (`None` = cleared).
type History = Vec<(u64, Option<Vec<u8>>)>;

/// A commit in flight past its reply.
struct Late {
    /// Lands once this many commits have been resolved (`None`: only when asked).
    due: Option<u64>,
    pending: Pending,
}

pub(crate) struct State {
    /// Per key: its history, oldest first (`None` = cleared).
    data: BTreeMap<Vec<u8>, History>,
    version: u64,
    /// Batch number of the last commit at `version`.
    batch: u16,
    /// Whether a commit may still join `version` (no read version handed out since).
    batch_open: bool,
    /// Write conflict ranges of recent commits.
    committed: VecDeque<(u64, Instant, Vec<Range>)>,
    rng: Rng,
    stats: SimStats,
    script: VecDeque<CommitFault>,
    late: Vec<Late>,
    /// Commits in flight (their future not resolved yet), by id.
    inflight: HashMap<u64, Pending>,
    next_inflight: u64,
    /// Commit attempts with writes resolved so far (drives late landings).
    resolved: u64,
}

impl State {
    fn value_at(&self, key: &[u8], version: u64) -> Option<&Vec<u8>> {
        let history = self.data.get(key)?;
        history
            .iter()
            .rev()
            .find(|(v, _)| *v <= version)
            .and_then(|(_, value)| value.as_ref())
    }

    /// The versionstamp of the next commit, and its version.
    fn next_stamp(&mut self, p_shared: f64) -> (u64, Versionstamp) {
        if self.batch_open && self.batch < u16::MAX && self.rng.chance(p_shared) {
            self.batch += 1;
            self.stats.shared_versions += 1;
        } else {
            self.version += 1 + (self.rng.next_u64() >> 62);
            self.batch = 0;
        }
        self.batch_open = true;
        let mut s = [0u8; VERSIONSTAMP_LEN];
        s[..8].copy_from_slice(&self.version.to_be_bytes());
        s[8..].copy_from_slice(&self.batch.to_be_bytes());
        (self.version, s)
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    version_tx: watch::Sender<u64>,
    config: SimConfig,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation of the state completes before any call that could panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The in-memory model of a FoundationDB database. Clones share the data.
#[derive(Clone)]
pub struct SimKv {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SimKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimKv")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Default for SimKv {
    fn default() -> Self {
        SimKv::new()
    }
}

impl SimKv {
    /// An empty database without faults.
    pub fn new() -> SimKv {
        SimKv::with_config(SimConfig::default())
    }

    /// An empty database with `config`.
    pub fn with_config(config: SimConfig) -> SimKv {
        SimKv::with_data(config, BTreeMap::new(), 1)
    }

    fn with_data(config: SimConfig, data: BTreeMap<Vec<u8>, History>, version: u64) -> SimKv {
        let (version_tx, _) = watch::channel(version);
        let state = State {
            data,
            version,
            batch: 0,
            batch_open: false,
            committed: VecDeque::new(),
            rng: Rng::new(config.faults.seed),
            stats: SimStats::default(),
            script: VecDeque::new(),
            late: Vec::new(),
            inflight: HashMap::new(),
            next_inflight: 0,
            resolved: 0,
        };
        SimKv {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                version_tx,
                config,
            }),
        }
    }

    /// A different "cluster" holding a copy of this one's current data, whose versions start
    /// at `version` (a disaster-recovery switch or a backup restored elsewhere: commit versions
    /// are monotonic only within one cluster).
    pub fn copy_to_new_cluster(&self, version: u64) -> SimKv {
        let st = self.shared.lock();
        let data = st
            .data
            .keys()
            .filter_map(|k| {
                st.value_at(k, st.version)
                    .map(|v| (k.clone(), vec![(version, Some(v.clone()))]))
            })
            .collect();
        SimKv::with_data(self.shared.config, data, version.max(1))
    }

    /// The configuration.
    pub fn config(&self) -> SimConfig {
        self.shared.config
    }

    /// What happened so far.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats
    }

    /// The newest commit version.
    pub fn version(&self) -> u64 {
        self.shared.lock().version
    }

    /// Number of live keys (for tests).
    pub fn live_keys(&self) -> usize {
        let st = self.shared.lock();
        st.data
            .keys()
            .filter(|k| st.value_at(k, st.version).is_some())
            .count()
    }

    /// Number of live keys starting with `prefix` (for tests).
    pub fn live_keys_with_prefix(&self, prefix: &[u8]) -> usize {
        let st = self.shared.lock();
        st.data
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| st.value_at(k, st.version).is_some())
            .count()
    }

    /// Every value `key` has held, oldest first, with the commit version that wrote it (`None`:
    /// cleared): the history an oracle checks (e.g. that lease versions never repeat).
    pub fn history(&self, key: &[u8]) -> Vec<(u64, Option<Vec<u8>>)> {
        self.shared
            .lock()
            .data
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    /// Scripts the outcomes of the next commits that write something, in order; random faults
    /// apply again once the script is used up.
    pub fn script(&self, faults: impl IntoIterator<Item = CommitFault>) {
        self.shared.lock().script.extend(faults);
    }

    /// Commits still in flight past their reply.
    pub fn late_in_flight(&self) -> usize {
        self.shared.lock().late.len()
    }

    /// Lets every commit still in flight arrive now, oldest first: each is checked for
    /// conflicts against its original read version (and its age) and applied if it passes.
    /// Returns how many landed.
    pub fn land_late_commits(&self) -> usize {
        let mut st = self.shared.lock();
        let late: Vec<Late> = std::mem::take(&mut st.late);
        let mut landed = 0;
        let mut newest = None;
        for l in late {
            if let Some(v) = tx::land(&mut st, &self.shared.config, l.pending) {
                landed += 1;
                newest = Some(v);
            }
        }
        drop(st);
        if let Some(v) = newest {
            self.shared.version_tx.send_replace(v);
        }
        landed
    }
}

impl KvDatabase for SimKv {
    type Tx = SimTx;

    fn begin(&self) -> Result<SimTx, KvError> {
        let mut st = self.shared.lock();
        let read_version = st.version;
        // A read version closes the current version's commit batch.
        st.batch_open = false;
        let doomed = st.rng.chance(self.shared.config.faults.too_old);
        drop(st);
        Ok(SimTx::new(self.shared.clone(), read_version, doomed))
    }
}
