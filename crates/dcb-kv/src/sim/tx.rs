//! `SimTx`: one transaction of a [`crate::SimKv`], and commit resolution (conflicts, sizes,
//! versionstamps, late landings).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::faults::CommitFault;
use super::size;
use super::{Late, Shared, SimConfig, State};
use crate::kv::{
    KvError, KvErrorKind, KvTransaction, RangeBatch, RangeRead, VERSIONSTAMP_LEN, Versionstamp,
};

pub(crate) type Range = (Vec<u8>, Vec<u8>);
type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone)]
pub(crate) enum Mutation {
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

/// A commit on its way to the resolver.
pub(crate) struct Pending {
    read_version: u64,
    started: Instant,
    writes: Vec<Mutation>,
    read_conflicts: Vec<Range>,
    write_conflicts: Vec<Range>,
}

/// A transaction of a [`crate::SimKv`].
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

pub(crate) fn key_after(key: &[u8]) -> Vec<u8> {
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

fn place(bytes: &[u8], offset: usize, stamp: &Versionstamp) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    out.get_mut(offset..offset + VERSIONSTAMP_LEN)?
        .copy_from_slice(stamp);
    Some(out)
}

/// Resolves a commit that arrived: age, sizes, conflicts, then applies it. Returns the commit
/// version and stamp. Counts as one resolved commit.
fn resolve(
    st: &mut State,
    config: &SimConfig,
    p: Pending,
    now: Instant,
    unknown_on_conflict: bool,
) -> Result<(u64, Versionstamp), KvError> {
    st.resolved += 1;
    if now.duration_since(p.started) > config.max_tx_age {
        return Err(too_old());
    }
    if let Err(e) = size::check_key_value_sizes(&p.writes) {
        st.stats.too_large += 1;
        return Err(e);
    }
    let bytes = size::transaction_size(&p.writes, &p.read_conflicts);
    st.stats.largest_commit_bytes = st.stats.largest_commit_bytes.max(bytes as u64);
    if bytes > config.tx_size_limit {
        st.stats.too_large += 1;
        return Err(KvError::new(
            KvErrorKind::TransactionTooLarge,
            format!(
                "transaction_too_large (2101): {bytes} bytes, limit {}",
                config.tx_size_limit
            ),
        ));
    }
    let conflict = st.committed.iter().any(|(v, _, writes)| {
        *v > p.read_version
            && writes
                .iter()
                .any(|w| p.read_conflicts.iter().any(|r| overlaps(r, w)))
    });
    if conflict {
        st.stats.conflicts += 1;
        if unknown_on_conflict && st.rng.chance(config.faults.unknown_on_conflict) {
            st.stats.injected_unknown += 1;
            return Err(KvError::new(
                KvErrorKind::MaybeCommitted,
                "commit_unknown_result (1021), injected, conflicted: not committed",
            ));
        }
        return Err(KvError::new(KvErrorKind::Conflict, "not_committed (1020)"));
    }
    let (version, stamp) = st.next_stamp(config.faults.shared_version);
    let mut write_conflicts = p.write_conflicts;
    for m in p.writes {
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
            // As FoundationDB's commit proxy: the exact stamped key is the conflict range.
            Mutation::StampKey(k, off, v) => match place(&k, off, &stamp) {
                Some(k) => {
                    write_conflicts.push((k.clone(), key_after(&k)));
                    (k, Some(v))
                }
                None => continue,
            },
            Mutation::StampValue(k, v, off) => match place(&v, off, &stamp) {
                Some(v) => (k, Some(v)),
                None => continue,
            },
        };
        st.data.entry(key).or_default().push((version, value));
    }
    let window = config.max_tx_age * 2;
    while st
        .committed
        .front()
        .is_some_and(|(_, at, _)| now.duration_since(*at) > window)
    {
        st.committed.pop_front();
    }
    st.committed.push_back((version, now, write_conflicts));
    st.stats.commits += 1;
    Ok((version, stamp))
}

/// Lands one late commit now; `Some(version)` when it committed.
pub(crate) fn land(st: &mut State, config: &SimConfig, p: Pending) -> Option<u64> {
    match resolve(st, config, p, Instant::now(), false) {
        Ok((v, _)) => {
            st.stats.late_landed += 1;
            Some(v)
        }
        Err(_) => {
            st.stats.late_refused += 1;
            None
        }
    }
}

/// Lands the late commits that are due.
fn land_due(st: &mut State, config: &SimConfig) -> Option<u64> {
    let mut newest = None;
    loop {
        let resolved = st.resolved;
        let Some(i) = st
            .late
            .iter()
            .position(|l| l.due.is_some_and(|d| d <= resolved))
        else {
            return newest;
        };
        let l = st.late.remove(i);
        if let Some(v) = land(st, config, l.pending) {
            newest = Some(v);
        }
    }
}

/// Moves a commit whose future was dropped while in flight to the late queue.
struct InflightGuard {
    shared: Arc<Shared>,
    id: u64,
    armed: bool,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut st = self.shared.lock();
        if let Some(pending) = st.inflight.remove(&self.id) {
            let due = st.resolved + 1 + st.rng.upto(2);
            st.stats.late_commits += 1;
            st.late.push(Late {
                due: Some(due),
                pending,
            });
        }
    }
}

impl SimTx {
    pub(crate) fn new(shared: Arc<Shared>, read_version: u64, doomed: bool) -> SimTx {
        SimTx {
            shared,
            read_version,
            started: Instant::now(),
            inner: Mutex::new(TxInner {
                doomed,
                ..TxInner::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TxInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One network round trip carrying `bytes`.
    async fn round_trip(&self, bytes: usize) {
        self_round_trip(&self.shared, bytes).await;
    }

    fn check_age(&self, st: &mut State) -> Result<(), KvError> {
        st.stats.reads += 1;
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

    /// The pairs of `read` at this transaction's version, own writes applied, and `more`.
    fn range_pairs(&self, st: &State, inner: &TxInner, read: &RangeRead<'_>) -> (Pairs, bool) {
        let limit = read.limit.max(1);
        let bounds = (Bound::Included(read.begin), Bound::Excluded(read.end));
        let rv = self.read_version;
        let mut pairs: Pairs = if inner.writes.is_empty() {
            let iter = st
                .data
                .range::<[u8], _>(bounds)
                .filter_map(|(k, _)| st.value_at(k, rv).map(|v| (k.clone(), v.clone())));
            if read.reverse {
                iter.rev().take(limit + 1).collect()
            } else {
                iter.take(limit + 1).collect()
            }
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
            if read.reverse {
                view.into_iter().rev().take(limit + 1).collect()
            } else {
                view.into_iter().take(limit + 1).collect()
            }
        };
        let more = pairs.len() > limit;
        pairs.truncate(limit);
        (pairs, more)
    }
}

#[async_trait]
impl KvTransaction for SimTx {
    async fn read_version(&self) -> Result<u64, KvError> {
        Ok(self.read_version)
    }

    async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        let value = {
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
            value
        };
        self.round_trip(key.len() + value.as_ref().map_or(0, Vec::len))
            .await;
        Ok(value)
    }

    async fn get_range(&self, read: RangeRead<'_>) -> Result<RangeBatch, KvError> {
        let (pairs, more) = {
            let mut st = self.shared.lock();
            self.check_age(&mut st)?;
            let mut inner = self.lock();
            let full = (read.begin.to_vec(), read.end.to_vec());
            Self::check_readable(&inner, &full)?;
            if read.begin >= read.end {
                return Ok(RangeBatch::default());
            }
            let (mut pairs, mut more) = self.range_pairs(&st, &inner, &read);
            if read.target_bytes > 0 {
                let mut bytes = 0usize;
                let cut = pairs.iter().position(|(k, v)| {
                    bytes += k.len() + v.len();
                    bytes >= read.target_bytes
                });
                if let Some(i) = cut
                    && i + 1 < pairs.len()
                {
                    pairs.truncate(i + 1);
                    more = true;
                }
            }
            if pairs.len() > 1 && st.rng.chance(self.shared.config.faults.short_batch) {
                let keep = 1 + st.rng.upto(pairs.len() as u64 - 2) as usize;
                pairs.truncate(keep);
                more = true;
                st.stats.short_batches += 1;
            }
            if !read.snapshot {
                let covered = match (more, pairs.last()) {
                    (true, Some((last, _))) if read.reverse => (last.clone(), read.end.to_vec()),
                    (true, Some((last, _))) => (read.begin.to_vec(), key_after(last)),
                    _ => full,
                };
                inner.read_conflicts.push(covered);
            }
            (pairs, more)
        };
        let bytes = pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.round_trip(bytes).await;
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
        // No client-side write conflict range: the stamped key is added at commit.
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
        let (seen, fails) = {
            let mut st = self.shared.lock();
            st.stats.watches += 1;
            let fails = st.rng.chance(self.shared.config.faults.watch_error);
            if fails {
                st.stats.injected_watch_errors += 1;
            }
            (st.value_at(key, self.read_version).cloned(), fails)
        };
        let shared = self.shared.clone();
        let key = key.to_vec();
        async move {
            arm_rx
                .await
                .map_err(|_| KvError::fatal("watch cancelled: its transaction did not commit"))?;
            if fails {
                return Err(KvError::new(
                    KvErrorKind::Retryable,
                    "too_many_watches (1032), injected",
                ));
            }
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
        let shared = self.shared.clone();
        let config = shared.config;
        let inner = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        let watches = inner.watches;
        if inner.writes.is_empty() {
            self_round_trip(&shared, 0).await;
            if self.started.elapsed() > config.max_tx_age {
                return Err(too_old());
            }
            for w in watches {
                let _ = w.send(());
            }
            return Ok(None);
        }
        let pending = Pending {
            read_version: self.read_version,
            started: self.started,
            writes: inner.writes,
            read_conflicts: inner.read_conflicts,
            write_conflicts: inner.write_conflicts,
        };
        let bytes = size::transaction_size(&pending.writes, &[]);
        // In flight: if this future is dropped before the reply, the commit still arrives.
        let guard = {
            let mut st = shared.lock();
            let id = st.next_inflight;
            st.next_inflight += 1;
            st.inflight.insert(id, pending);
            InflightGuard {
                shared: shared.clone(),
                id,
                armed: true,
            }
        };
        self_round_trip(&shared, bytes).await;
        let mut guard = guard;
        guard.armed = false;
        let mut st = shared.lock();
        let Some(pending) = st.inflight.remove(&guard.id) else {
            return Err(KvError::fatal("sim: in-flight commit vanished"));
        };
        let mut newest = land_due(&mut st, &config);
        let faults = config.faults;
        let scripted = st.script.pop_front();
        let fault = match scripted {
            Some(f) => f,
            None if st.rng.chance(faults.late_commit) => CommitFault::Late,
            None if st.rng.chance(faults.unknown_without_commit) => {
                CommitFault::UnknownWithoutCommit
            }
            None if st.rng.chance(faults.unknown_after_commit) => CommitFault::UnknownAfterCommit,
            None => CommitFault::Normal,
        };
        let result = if fault == CommitFault::Late {
            let due = match scripted {
                Some(_) => None,
                None => Some(st.resolved + 1 + st.rng.upto(2)),
            };
            st.stats.late_commits += 1;
            st.late.push(Late { due, pending });
            Err(KvError::new(
                KvErrorKind::Timeout,
                "transaction_timed_out (1031), injected: the commit is still in flight",
            ))
        } else if scripted.is_none() && st.rng.chance(faults.conflict) {
            st.resolved += 1;
            st.stats.injected_conflicts += 1;
            Err(KvError::new(
                KvErrorKind::Conflict,
                "not_committed (1020), injected",
            ))
        } else if fault == CommitFault::UnknownWithoutCommit {
            st.resolved += 1;
            st.stats.injected_unknown += 1;
            Err(KvError::new(
                KvErrorKind::MaybeCommitted,
                "commit_unknown_result (1021), injected, not committed",
            ))
        } else {
            match resolve(&mut st, &config, pending, Instant::now(), true) {
                Ok((version, stamp)) => {
                    newest = Some(version);
                    if fault == CommitFault::UnknownAfterCommit {
                        st.stats.injected_unknown += 1;
                        Err(KvError::new(
                            KvErrorKind::MaybeCommitted,
                            "commit_unknown_result (1021), injected, committed",
                        ))
                    } else {
                        Ok(stamp)
                    }
                }
                Err(e) => Err(e),
            }
        };
        drop(st);
        if let Some(v) = newest {
            shared.version_tx.send_replace(v);
        }
        let committed = result.is_ok();
        for w in watches {
            if committed {
                let _ = w.send(());
            }
        }
        let stamp = result?;
        Ok(inner.stamped.then_some(stamp))
    }
}

/// A commit's round trip (the transaction itself is consumed by then).
async fn self_round_trip(shared: &Shared, bytes: usize) {
    let latency = shared.config.latency;
    if latency.is_zero() {
        if shared.config.yield_each_op {
            tokio::task::yield_now().await;
        }
        return;
    }
    let jitter = {
        let mut st = shared.lock();
        st.rng
            .upto(u64::try_from(latency.jitter.as_nanos()).unwrap_or(u64::MAX))
    };
    let mut d = latency.base + Duration::from_nanos(jitter);
    if latency.bytes_per_sec > 0 {
        d += Duration::from_secs_f64(bytes as f64 / latency.bytes_per_sec as f64);
    }
    tokio::time::sleep(d).await;
}
