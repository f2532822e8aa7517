//! [`KvOptions`]: the engine's tuning and safety bounds.

use std::time::Duration;

/// Tuning and safety bounds of a [`crate::KvStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvOptions {
    /// Deadline of one transaction attempt (FoundationDB refuses transactions older than 5 s).
    pub tx_timeout: Duration,
    /// Attempts of one operation before it gives up. A write whose attempts may have committed
    /// is settled first (see the crate docs): it then fails with [`dcb_core::StoreError::Unavailable`]
    /// (nothing was written, retrying is safe) or, if even that cannot be settled, with
    /// [`dcb_core::StoreError::Storage`] saying the outcome is unknown.
    pub max_retries: u32,
    /// Largest transaction size, in bytes, as FoundationDB counts it (mutations at 56 bytes plus
    /// keys and values, conflict ranges at 32 bytes plus both keys, versionstamp offsets); an
    /// append or state commit estimated over it is rejected with
    /// [`dcb_core::InputError::TooLong`] before anything is written. Default 5 000 000:
    /// FoundationDB's hard limit is 10 000 000 and it advises staying under 1 000 000.
    pub max_tx_bytes: usize,
    /// Keys fetched per range-read batch of a read (shared among the ranges a query needs).
    pub read_batch: usize,
    /// Soft cap on the bytes of one range-read batch (default 1 000 000), so that a read of
    /// large events makes progress in requests of bounded size.
    pub read_target_bytes: usize,
    /// A long read moves to a fresh transaction after this long (FoundationDB: 5 s maximum).
    pub read_tx_span: Duration,
    /// The head watcher re-reads the head at least this often even if no watch fires.
    pub watch_refresh: Duration,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            tx_timeout: Duration::from_secs(5),
            max_retries: 50,
            max_tx_bytes: 5_000_000,
            read_batch: 1024,
            read_target_bytes: 1_000_000,
            read_tx_span: Duration::from_secs(3),
            watch_refresh: Duration::from_secs(10),
        }
    }
}

impl KvOptions {
    /// Defaults.
    pub fn new() -> KvOptions {
        KvOptions::default()
    }

    /// Sets [`KvOptions::tx_timeout`].
    pub fn tx_timeout(mut self, timeout: Duration) -> KvOptions {
        self.tx_timeout = timeout;
        self
    }

    /// Sets [`KvOptions::max_retries`].
    pub fn max_retries(mut self, retries: u32) -> KvOptions {
        self.max_retries = retries;
        self
    }

    /// Sets [`KvOptions::max_tx_bytes`].
    pub fn max_tx_bytes(mut self, bytes: usize) -> KvOptions {
        self.max_tx_bytes = bytes;
        self
    }

    /// Sets [`KvOptions::read_batch`] (at least 1).
    pub fn read_batch(mut self, batch: usize) -> KvOptions {
        self.read_batch = batch.max(1);
        self
    }

    /// Sets [`KvOptions::read_target_bytes`] (`0`: no byte cap).
    pub fn read_target_bytes(mut self, bytes: usize) -> KvOptions {
        self.read_target_bytes = bytes;
        self
    }

    /// Sets [`KvOptions::read_tx_span`].
    pub fn read_tx_span(mut self, span: Duration) -> KvOptions {
        self.read_tx_span = span;
        self
    }

    /// Sets [`KvOptions::watch_refresh`].
    pub fn watch_refresh(mut self, refresh: Duration) -> KvOptions {
        self.watch_refresh = refresh;
        self
    }
}
