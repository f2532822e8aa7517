//! The fault options of [`crate::SimKv`] and its deterministic generator.

use std::time::Duration;

/// Probabilities of injected failures (each in `0.0..=1.0`), with the seed of the generator.
///
/// Every fault is drawn from one seeded generator, so a run with the same seed, the same
/// operations and a deterministic scheduler (a current-thread runtime, paused clock) fails in
/// exactly the same places.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Seed of the deterministic generator.
    pub seed: u64,
    /// A successful commit reports `commit_unknown_result` (1021) anyway.
    pub unknown_after_commit: f64,
    /// A commit that passed its conflict check is dropped and reports `commit_unknown_result`.
    pub unknown_without_commit: f64,
    /// A commit that *conflicted* reports `commit_unknown_result` instead of `not_committed`
    /// (the reply was lost): the client cannot tell it from a commit that happened.
    pub unknown_on_conflict: f64,
    /// A commit fails with `not_committed` although nothing conflicted.
    pub conflict: f64,
    /// A transaction is doomed at its start: every read after its first fails with
    /// `transaction_too_old` (as if it had outlived the MVCC window).
    pub too_old: f64,
    /// A commit reports `transaction_timed_out` (1031) at once but stays in flight: it lands
    /// after one to three further commits (or at [`crate::SimKv::land_late_commits`]), still
    /// checked for conflicts against its original read version, unless it is too old by then.
    pub late_commit: f64,
    /// A range read returns a random shorter prefix of its batch (at least one pair) with
    /// `more` set, as FoundationDB does when it stops at a byte or shard boundary.
    pub short_batch: f64,
    /// A watch fails (`too_many_watches`, 1032) instead of firing.
    pub watch_error: f64,
    /// A commit joins the current commit version with the next batch number (FoundationDB
    /// commits many transactions at one version, numbered within the batch), when no read
    /// version has been handed out since the last commit.
    pub shared_version: f64,
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
            unknown_on_conflict: 0.3,
            conflict: 0.05,
            too_old: 0.03,
            late_commit: 0.03,
            short_batch: 0.2,
            watch_error: 0.1,
            shared_version: 0.5,
        }
    }
}

/// A scripted outcome for the next commit that writes something (see
/// [`crate::SimKv::script`]); scripted outcomes are used before random faults are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitFault {
    /// Commit normally.
    Normal,
    /// Report `transaction_timed_out` (1031) and keep the commit in flight until
    /// [`crate::SimKv::land_late_commits`], where it is checked for conflicts against its
    /// original read version and applied if it passes.
    Late,
    /// Commit, then report `commit_unknown_result` (1021).
    UnknownAfterCommit,
    /// Drop the commit and report `commit_unknown_result` (1021).
    UnknownWithoutCommit,
}

/// Per-operation latency: `base + uniform(0..=jitter)`, plus `bytes / bytes_per_sec` for the
/// data a read returns or a commit sends. It runs on tokio's clock, so a test on a paused clock
/// sees FoundationDB's 5-second budgets in virtual time, independently of machine speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Fixed part of every read and commit.
    pub base: Duration,
    /// Largest random extra.
    pub jitter: Duration,
    /// Bandwidth of one request (`0`: unlimited).
    pub bytes_per_sec: u64,
}

impl Latency {
    /// No latency (operations only yield to the scheduler).
    pub fn none() -> Latency {
        Latency::default()
    }

    /// `base` per operation, no jitter, unlimited bandwidth.
    pub fn fixed(base: Duration) -> Latency {
        Latency {
            base,
            ..Latency::default()
        }
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.base.is_zero() && self.jitter.is_zero() && self.bytes_per_sec == 0
    }
}

/// xorshift64*: small, fast, deterministic.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Uniform in `0..=max`.
    pub(crate) fn upto(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        self.next_u64() % (max + 1)
    }
}
