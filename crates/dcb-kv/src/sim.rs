//! `SimKv`: an in-memory model of FoundationDB's transaction semantics, to test the engine on
//! machines without a cluster.
//!
//! What it models, as FoundationDB does it:
//! - **MVCC**: a transaction reads at the version current when it began; later commits are
//!   invisible to it. Reads see the transaction's own buffered writes (read-your-writes).
//! - **Serializable optimistic concurrency**: non-snapshot reads record read conflict ranges
//!   (for a batch cut short by its limit, only up to the last key returned); every write records a
//!   write conflict range. A commit fails with a retryable conflict when a transaction committed
//!   after its read version wrote into one of its read conflict ranges. Snapshot reads conflict
//!   with nothing.
//! - **Versionstamps**: 8-byte commit version + 2-byte batch number (always 0 here), placed into
//!   keys and values at commit. Versions grow with random gaps. A versionstamped key's write
//!   conflict range spans every key it could produce from the read version upwards, and reading
//!   a range that may hold one of the transaction's own versionstamped keys fails
//!   (`accessed_unreadable`), as in FoundationDB.
//! - **The 5-second limit**: a transaction older than [`SimConfig::max_tx_age`] fails reads and
//!   commits with `transaction_too_old`.
//! - **Watches**: armed at commit, fire when the key's value differs from the one the
//!   transaction saw; dropped with the transaction if it never commits.
//! - **Faults** ([`Faults`]): random `commit_unknown_result` after a successful commit or instead
//!   of one, random conflicts, random `transaction_too_old` on reads.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch};

use crate::kv::{
    KvDatabase, KvError, KvErrorKind, KvTransaction, RangeBatch, RangeRead, VERSIONSTAMP_LEN,
    Versionstamp,
};

/// Probabilities of injected failures (each in `0.0..=1.0`), with the seed of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// A successful commit reports `commit_unknown_result` anyway.
    pub unknown_after_commit: f64,
    /// A commit is dropped and reports `commit_unknown_result`.
    pub unknown_without_commit: f64,
    /// A commit fails with `not_committed` although nothing conflicted.
    pub conflict: f64,
    /// A transaction is doomed at its start: every read after its first fails with
    /// `transaction_too_old` (as if it had outlived the MVCC window).
    pub too_old: f64,
}

impl Faults {
    /// No faults.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// A rough mix of every fault, for soak-style tests.
    pub fn chaos(seed: u64) -> Faults {
        Faults {
            seed,
            unknown_after_commit: 0.05,
            unknown_without_commit: 0.03,
            conflict: 0.05,
            too_old: 0.03,
        }
    }
}

/// Configuration of a [`SimKv`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Injected failures.
    pub faults: Faults,
    /// Age after which a transaction is too old (FoundationDB: 5 s).
    pub max_tx_age: Duration,
    /// Every read and commit first yields to the scheduler, as a network round trip would, so
    /// that concurrent transactions really interleave.
    pub yield_each_op: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            faults: Faults::none(),
            max_tx_age: Duration::from_secs(5),
            yield_each_op: true,
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
    /// Injected `commit_unknown_result` (after and without committing).
    pub injected_unknown: u64,
    /// Injected conflicts.
    pub injected_conflicts: u64,
    /// Injected `transaction_too_old`.
    pub injected_too_old: u64,
}

type Range = (Vec<u8>, Vec<u8>);
/// A key's history, oldest first (`None` = cleared).
type History = Vec<(u64, Option<Vec<u8>>)>;

struct State {
    /// Per key: its history, oldest first (`None` = cleared).
    data: BTreeMap<Vec<u8>, History>,
    version: u64,
    /// Write conflict ranges of recent commits.
    committed: VecDeque<(u64, Instant, Vec<Range>)>,
    rng: u64,
    stats: SimStats,
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

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn next_gap(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        1 + (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 62)
    }
}

struct Shared {
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
        let (version_tx, _) = watch::channel(1);
        let state = State {
            data: BTreeMap::new(),
            version: 1,
            committed: VecDeque::new(),
            rng: config.faults.seed | 1,
            stats: SimStats::default(),
        };
        SimKv {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                version_tx,
                config,
            }),
        }
    }

    /// What happened so far.
    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats
    }

    /// Number of live keys (for tests).
    pub fn live_keys(&self) -> usize {
        let st = self.shared.lock();
        st.data
            .keys()
            .filter(|k| st.value_at(k, st.version).is_some())
            .count()
    }
}

impl KvDatabase for SimKv {
    type Tx = SimTx;

    fn begin(&self) -> Result<SimTx, KvError> {
        let mut st = self.shared.lock();
        let read_version = st.version;
        let doomed = st.chance(self.shared.config.faults.too_old);
        drop(st);
        Ok(SimTx {
            shared: self.shared.clone(),
            read_version,
            started: Instant::now(),
            inner: Mutex::new(TxInner {
                doomed,
                ..TxInner::default()
            }),
        })
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(Vec<u8>, Vec<u8>),
    Clear(Vec<u8>),
    ClearRange(Vec<u8>, Vec<u8>),
    StampKey(Vec<u8>, usize, Vec<u8>),
    StampValue(Vec<u8>, Vec<u8>, usize),
}

#[derive(Default)]
struct TxInner {
    writes: Vec<Mutation>,
    read_conflicts: Vec<Range>,
    write_conflicts: Vec<Range>,
    stamped: bool,
    /// Ranges this transaction cannot read (may hold its own versionstamped keys or values).
    unreadable: Vec<Range>,
    watches: Vec<oneshot::Sender<()>>,
    /// Injected `transaction_too_old` after the first read.
    doomed: bool,
    /// Reads so far.
    reads: u64,
}

/// A transaction of a [`SimKv`].
pub struct SimTx {
    shared: Arc<Shared>,
    read_version: u64,
    started: Instant,
    inner: Mutex<TxInner>,
}

impl std::fmt::Debug for SimTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTx")
            .field("read_version", &self.read_version)
            .finish_non_exhaustive()
    }
}

fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

fn overlaps(a: &Range, b: &Range) -> bool {
    a.0 < b.1 && b.0 < a.1
}

fn too_old() -> KvError {
    KvError::new(KvErrorKind::Retryable, "transaction_too_old (1007)")
}

fn stamp_of(version: u64) -> Versionstamp {
    let mut s = [0u8; VERSIONSTAMP_LEN];
    s[..8].copy_from_slice(&version.to_be_bytes());
    s
}

fn place(bytes: &[u8], offset: usize, stamp: &Versionstamp) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    out.get_mut(offset..offset + VERSIONSTAMP_LEN)?
        .copy_from_slice(stamp);
    Some(out)
}

impl SimTx {
    fn lock(&self) -> MutexGuard<'_, TxInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn round_trip(&self) {
        if self.shared.config.yield_each_op {
            tokio::task::yield_now().await;
        }
    }

    fn check_age(&self, st: &mut State) -> Result<(), KvError> {
        if self.started.elapsed() > self.shared.config.max_tx_age {
            return Err(too_old());
        }
        let mut inner = self.lock();
        if inner.doomed && inner.reads > 0 {
            st.stats.injected_too_old += 1;
            return Err(too_old());
        }
        inner.reads += 1;
        Ok(())
    }

    fn check_readable(inner: &TxInner, range: &Range) -> Result<(), KvError> {
        if inner.unreadable.iter().any(|u| overlaps(u, range)) {
            return Err(KvError::fatal(
                "accessed_unreadable (1036): read of a versionstamped write",
            ));
        }
        Ok(())
    }

    /// The value of `key` after this transaction's own writes, given the stored one.
    fn overlay(writes: &[Mutation], key: &[u8], mut value: Option<Vec<u8>>) -> Option<Vec<u8>> {
        for m in writes {
            match m {
                Mutation::Set(k, v) if k == key => value = Some(v.clone()),
                Mutation::Clear(k) if k == key => value = None,
                Mutation::ClearRange(b, e) if b.as_slice() <= key && key < e.as_slice() => {
                    value = None
                }
                _ => {}
            }
        }
        value
    }
}

#[async_trait]
impl KvTransaction for SimTx {
    async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        self.round_trip().await;
        let mut st = self.shared.lock();
        self.check_age(&mut st)?;
        let mut inner = self.lock();
        let range = (key.to_vec(), key_after(key));
        Self::check_readable(&inner, &range)?;
        let stored = st.value_at(key, self.read_version).cloned();
        let value = Self::overlay(&inner.writes, key, stored);
        if !snapshot {
            inner.read_conflicts.push(range);
        }
        Ok(value)
    }

    async fn get_range(&self, read: RangeRead<'_>) -> Result<RangeBatch, KvError> {
        self.round_trip().await;
        let mut st = self.shared.lock();
        self.check_age(&mut st)?;
        let mut inner = self.lock();
        let full = (read.begin.to_vec(), read.end.to_vec());
        Self::check_readable(&inner, &full)?;
        let limit = read.limit.max(1);
        if read.begin >= read.end {
            return Ok(RangeBatch::default());
        }
        let bounds = (Bound::Included(read.begin), Bound::Excluded(read.end));
        let rv = self.read_version;
        let (pairs, more) = if inner.writes.is_empty() {
            let iter = st
                .data
                .range::<[u8], _>(bounds)
                .filter_map(|(k, _)| st.value_at(k, rv).map(|v| (k.clone(), v.clone())));
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = if read.reverse {
                iter.rev().take(limit + 1).collect()
            } else {
                iter.take(limit + 1).collect()
            };
            let more = pairs.len() > limit;
            pairs.truncate(limit);
            (pairs, more)
        } else {
            let mut view: BTreeMap<Vec<u8>, Vec<u8>> = st
                .data
                .range::<[u8], _>(bounds)
                .filter_map(|(k, _)| st.value_at(k, rv).map(|v| (k.clone(), v.clone())))
                .collect();
            for m in &inner.writes {
                match m {
                    Mutation::Set(k, v)
                        if k.as_slice() >= read.begin && k.as_slice() < read.end =>
                    {
                        view.insert(k.clone(), v.clone());
                    }
                    Mutation::Clear(k) => {
                        view.remove(k);
                    }
                    Mutation::ClearRange(b, e) => view.retain(|k, _| !(k >= b && k < e)),
                    _ => {}
                }
            }
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = if read.reverse {
                view.into_iter().rev().take(limit + 1).collect()
            } else {
                view.into_iter().take(limit + 1).collect()
            };
            let more = pairs.len() > limit;
            pairs.truncate(limit);
            (pairs, more)
        };
        if !read.snapshot {
            let covered = match (more, pairs.last()) {
                (true, Some((last, _))) if read.reverse => (last.clone(), read.end.to_vec()),
                (true, Some((last, _))) => (read.begin.to_vec(), key_after(last)),
                _ => full,
            };
            inner.read_conflicts.push(covered);
        }
        Ok(RangeBatch { pairs, more })
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        let mut inner = self.lock();
        inner.write_conflicts.push((key.to_vec(), key_after(key)));
        inner
            .writes
            .push(Mutation::Set(key.to_vec(), value.to_vec()));
    }

    fn clear(&self, key: &[u8]) {
        let mut inner = self.lock();
        inner.write_conflicts.push((key.to_vec(), key_after(key)));
        inner.writes.push(Mutation::Clear(key.to_vec()));
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) {
        let mut inner = self.lock();
        inner.write_conflicts.push((begin.to_vec(), end.to_vec()));
        inner
            .writes
            .push(Mutation::ClearRange(begin.to_vec(), end.to_vec()));
    }

    fn set_versionstamped_key(&self, key: &[u8], offset: usize, value: &[u8]) {
        let mut inner = self.lock();
        // As FoundationDB: the conflict range spans the stamps from the read version up.
        let low = place(key, offset, &stamp_of(self.read_version)).unwrap_or_else(|| key.to_vec());
        let high = place(key, offset, &[0xff; VERSIONSTAMP_LEN]).unwrap_or_else(|| key.to_vec());
        inner.write_conflicts.push((low.clone(), key_after(&high)));
        let prefix = key.get(..offset).unwrap_or(key).to_vec();
        let unreadable_end =
            crate::keys::strinc(&prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]);
        inner.unreadable.push((prefix, unreadable_end));
        inner.stamped = true;
        inner
            .writes
            .push(Mutation::StampKey(key.to_vec(), offset, value.to_vec()));
    }

    fn set_versionstamped_value(&self, key: &[u8], value: &[u8], offset: usize) {
        let mut inner = self.lock();
        inner.write_conflicts.push((key.to_vec(), key_after(key)));
        inner.unreadable.push((key.to_vec(), key_after(key)));
        inner.stamped = true;
        inner
            .writes
            .push(Mutation::StampValue(key.to_vec(), value.to_vec(), offset));
    }

    fn watch(&self, key: &[u8]) -> BoxFuture<'static, Result<(), KvError>> {
        let (arm_tx, arm_rx) = oneshot::channel();
        self.lock().watches.push(arm_tx);
        let seen = self.shared.lock().value_at(key, self.read_version).cloned();
        let shared = self.shared.clone();
        let key = key.to_vec();
        async move {
            arm_rx
                .await
                .map_err(|_| KvError::fatal("watch cancelled: its transaction did not commit"))?;
            let mut versions = shared.version_tx.subscribe();
            loop {
                {
                    let st = shared.lock();
                    if st.value_at(&key, st.version) != seen.as_ref() {
                        return Ok(());
                    }
                }
                versions
                    .changed()
                    .await
                    .map_err(|_| KvError::fatal("database dropped"))?;
            }
        }
        .boxed()
    }

    async fn commit(self) -> Result<Option<Versionstamp>, KvError> {
        self.round_trip().await;
        let shared = self.shared.clone();
        let inner = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        let mut st = shared.lock();
        let faults = shared.config.faults;
        if self.started.elapsed() > shared.config.max_tx_age {
            return Err(too_old());
        }
        if inner.writes.is_empty() {
            drop(st);
            for w in inner.watches {
                let _ = w.send(());
            }
            return Ok(None);
        }
        if st.chance(faults.conflict) {
            st.stats.injected_conflicts += 1;
            return Err(KvError::new(
                KvErrorKind::Conflict,
                "not_committed (1020), injected",
            ));
        }
        let conflict = st.committed.iter().any(|(v, _, writes)| {
            *v > self.read_version
                && writes
                    .iter()
                    .any(|w| inner.read_conflicts.iter().any(|r| overlaps(r, w)))
        });
        if conflict {
            st.stats.conflicts += 1;
            return Err(KvError::new(KvErrorKind::Conflict, "not_committed (1020)"));
        }
        if st.chance(faults.unknown_without_commit) {
            st.stats.injected_unknown += 1;
            return Err(KvError::new(
                KvErrorKind::MaybeCommitted,
                "commit_unknown_result (1021), injected, not committed",
            ));
        }
        let version = st.version + st.next_gap();
        let stamp = stamp_of(version);
        for m in inner.writes {
            let (key, value) = match m {
                Mutation::Set(k, v) => (k, Some(v)),
                Mutation::Clear(k) => (k, None),
                Mutation::ClearRange(b, e) => {
                    let bounds = (Bound::Included(b.as_slice()), Bound::Excluded(e.as_slice()));
                    let keys: Vec<Vec<u8>> = st
                        .data
                        .range::<[u8], _>(bounds)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in keys {
                        if let Some(h) = st.data.get_mut(&k) {
                            h.push((version, None));
                        }
                    }
                    continue;
                }
                Mutation::StampKey(k, off, v) => match place(&k, off, &stamp) {
                    Some(k) => (k, Some(v)),
                    None => continue,
                },
                Mutation::StampValue(k, v, off) => match place(&v, off, &stamp) {
                    Some(v) => (k, Some(v)),
                    None => continue,
                },
            };
            st.data.entry(key).or_default().push((version, value));
        }
        let now = Instant::now();
        let window = shared.config.max_tx_age * 2;
        while st
            .committed
            .front()
            .is_some_and(|(_, at, _)| now.duration_since(*at) > window)
        {
            st.committed.pop_front();
        }
        st.committed
            .push_back((version, now, inner.write_conflicts));
        st.version = version;
        st.stats.commits += 1;
        let report_unknown = st.chance(faults.unknown_after_commit);
        if report_unknown {
            st.stats.injected_unknown += 1;
        }
        drop(st);
        shared.version_tx.send_replace(version);
        for w in inner.watches {
            let _ = w.send(());
        }
        if report_unknown {
            return Err(KvError::new(
                KvErrorKind::MaybeCommitted,
                "commit_unknown_result (1021), injected, committed",
            ));
        }
        Ok(inner.stamped.then_some(stamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(begin: &[u8], end: &[u8], snapshot: bool) -> RangeRead<'static> {
        RangeRead {
            begin: Box::leak(begin.to_vec().into_boxed_slice()),
            end: Box::leak(end.to_vec().into_boxed_slice()),
            limit: 100,
            reverse: false,
            snapshot,
        }
    }

    #[tokio::test]
    async fn mvcc_and_read_your_writes() {
        let db = SimKv::new();
        let t1 = db.begin().unwrap();
        t1.set(b"a", b"1");
        assert_eq!(t1.get(b"a", false).await.unwrap(), Some(b"1".to_vec()));
        let t2 = db.begin().unwrap();
        t1.commit().await.unwrap();
        assert_eq!(
            t2.get(b"a", true).await.unwrap(),
            None,
            "t2 reads at its own version"
        );
        let t3 = db.begin().unwrap();
        assert_eq!(t3.get(b"a", true).await.unwrap(), Some(b"1".to_vec()));
        t3.clear_range(b"a", b"b");
        assert!(
            t3.get_range(rr(b"a", b"b", true))
                .await
                .unwrap()
                .pairs
                .is_empty()
        );
    }

    #[tokio::test]
    async fn serializable_reads_conflict_snapshot_reads_do_not() {
        let db = SimKv::new();
        let reader = db.begin().unwrap();
        let snap = db.begin().unwrap();
        assert!(
            reader
                .get_range(rr(b"k", b"l", false))
                .await
                .unwrap()
                .pairs
                .is_empty()
        );
        assert!(
            snap.get_range(rr(b"k", b"l", true))
                .await
                .unwrap()
                .pairs
                .is_empty()
        );
        let writer = db.begin().unwrap();
        writer.set(b"k1", b"x");
        writer.commit().await.unwrap();
        reader.set(b"z", b"1");
        snap.set(b"y", b"1");
        assert_eq!(
            reader.commit().await.unwrap_err().kind,
            KvErrorKind::Conflict
        );
        assert!(snap.commit().await.is_ok());
    }

    #[tokio::test]
    async fn versionstamped_keys_conflict_with_range_readers_and_are_unreadable() {
        let db = SimKv::new();
        let reader = db.begin().unwrap();
        reader.get_range(rr(b"p", b"q", false)).await.unwrap();
        let writer = db.begin().unwrap();
        let mut key = b"p".to_vec();
        key.extend_from_slice(&[0; 12]);
        writer.set_versionstamped_key(&key, 1, b"v");
        assert!(writer.get_range(rr(b"p", b"q", true)).await.is_err());
        let stamp = writer.commit().await.unwrap().unwrap();
        reader.set(b"z", b"1");
        assert_eq!(
            reader.commit().await.unwrap_err().kind,
            KvErrorKind::Conflict
        );
        let t = db.begin().unwrap();
        let got = t.get_range(rr(b"p", b"q", true)).await.unwrap().pairs;
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].0[1..11], &stamp);
    }

    #[tokio::test]
    async fn watches_fire_on_change() {
        let db = SimKv::new();
        let t = db.begin().unwrap();
        let w = t.watch(b"h");
        t.commit().await.unwrap();
        let t2 = db.begin().unwrap();
        t2.set(b"h", b"1");
        t2.commit().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn old_transactions_are_too_old() {
        let db = SimKv::with_config(SimConfig {
            max_tx_age: Duration::from_millis(10),
            ..SimConfig::default()
        });
        let t = db.begin().unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            t.get(b"a", true).await.unwrap_err().kind,
            KvErrorKind::Retryable
        );
    }
}
