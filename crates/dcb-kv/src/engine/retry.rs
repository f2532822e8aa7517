//! Attempt errors and bounded, jittered retries.

use std::time::Duration;

use dcb_core::{StoreError, Uuid};

use crate::kv::{KvError, KvErrorKind};

/// Why one transaction attempt stopped.
pub(crate) enum AttemptErr {
    /// A KV failure: retried when its kind allows.
    Kv(KvError),
    /// A definitive answer (condition failed, bad data): returned as is.
    Store(StoreError),
}

impl From<KvError> for AttemptErr {
    fn from(e: KvError) -> Self {
        AttemptErr::Kv(e)
    }
}

impl From<StoreError> for AttemptErr {
    fn from(e: StoreError) -> Self {
        AttemptErr::Store(e)
    }
}

pub(crate) fn kv_fatal(e: KvError) -> StoreError {
    StoreError::storage(e)
}

pub(crate) fn timed_out() -> KvError {
    KvError::new(
        KvErrorKind::Timeout,
        "transaction attempt exceeded its timeout",
    )
}

/// Whether the store refused the transaction for its size (2101/2102/2103).
pub(crate) fn is_too_large(kind: KvErrorKind) -> bool {
    matches!(
        kind,
        KvErrorKind::TransactionTooLarge | KvErrorKind::KeyTooLarge | KvErrorKind::ValueTooLarge
    )
}

/// Bounded retries with exponential, jittered backoff.
pub(crate) struct Backoff {
    attempt: u32,
    max: u32,
}

impl Backoff {
    pub(crate) fn new(max: u32) -> Backoff {
        Backoff { attempt: 0, max }
    }

    /// Sleeps before the next attempt, or gives up: fatal errors (and size refusals, which the
    /// write paths turn into input errors first) become [`StoreError::Storage`], exhausted
    /// retries [`StoreError::Unavailable`].
    pub(crate) async fn retry(&mut self, e: KvError) -> Result<(), StoreError> {
        if e.kind == KvErrorKind::Fatal || is_too_large(e.kind) {
            return Err(kv_fatal(e));
        }
        self.attempt += 1;
        if self.attempt >= self.max {
            return Err(StoreError::Unavailable(format!(
                "gave up after {} attempts: {e}",
                self.attempt
            )));
        }
        tracing::debug!(attempt = self.attempt, error = %e, "retrying transaction");
        let cap_ms = 1u64 << self.attempt.min(9);
        let jitter = (Uuid::new_v4().as_u128() as u64) % (cap_ms + 1);
        tokio::time::sleep(Duration::from_millis(jitter.max(1))).await;
        Ok(())
    }
}
