//! The `dcb-kv` seam on `foundationdb::Transaction`: a 1:1 mapping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dcb_kv::{
    KvDatabase, KvError, KvErrorKind, KvTransaction, RangeBatch, RangeRead, Versionstamp,
};
use foundationdb::options::{MutationType, StreamingMode, TransactionOption};
use foundationdb::{Database, FdbError, RangeOption, Transaction};
use futures::FutureExt;
use futures::future::BoxFuture;

/// FoundationDB error codes the mapping names.
mod code {
    pub const NOT_COMMITTED: i32 = 1020;
    pub const TRANSACTION_TIMED_OUT: i32 = 1031;
    pub const TRANSACTION_TOO_LARGE: i32 = 2101;
    pub const KEY_TOO_LARGE: i32 = 2102;
    pub const VALUE_TOO_LARGE: i32 = 2103;
}

/// The seam's error kind of an FDB error code, for the codes the mapping names.
pub(crate) fn kind_of_code(code: i32) -> Option<KvErrorKind> {
    match code {
        code::NOT_COMMITTED => Some(KvErrorKind::Conflict),
        code::TRANSACTION_TIMED_OUT => Some(KvErrorKind::Timeout),
        code::TRANSACTION_TOO_LARGE => Some(KvErrorKind::TransactionTooLarge),
        code::KEY_TOO_LARGE => Some(KvErrorKind::KeyTooLarge),
        code::VALUE_TOO_LARGE => Some(KvErrorKind::ValueTooLarge),
        _ => None,
    }
}

/// Maps an FDB error onto the seam's error kinds: the named codes first (1020 conflict, 1031
/// timeout with an unknown outcome, 2101/2102/2103 size refusals, which the engine reports as
/// typed input errors), then FDB's own predicates.
pub(crate) fn map_err(e: FdbError) -> KvError {
    let kind = if let Some(kind) = kind_of_code(e.code()) {
        kind
    } else if e.is_maybe_committed() {
        KvErrorKind::MaybeCommitted
    } else if e.is_retryable() {
        KvErrorKind::Retryable
    } else {
        KvErrorKind::Fatal
    };
    KvError::new(kind, format!("{} ({})", e.message(), e.code()))
}

/// A FoundationDB database handle as a [`KvDatabase`]; every transaction gets a timeout.
///
/// No `retry_limit` is set: the engine runs every attempt in a fresh transaction and never calls
/// `on_error`, so FoundationDB's retry limit would never apply; the engine's
/// `KvOptions::max_retries` bounds the attempts.
#[derive(Clone)]
pub struct FdbDatabase {
    db: Arc<Database>,
    timeout_ms: i32,
}

impl std::fmt::Debug for FdbDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbDatabase")
            .field("timeout_ms", &self.timeout_ms)
            .finish_non_exhaustive()
    }
}

impl FdbDatabase {
    /// Wraps an open database.
    pub fn new(db: Database, timeout: Duration) -> FdbDatabase {
        FdbDatabase {
            db: Arc::new(db),
            timeout_ms: i32::try_from(timeout.as_millis())
                .unwrap_or(i32::MAX)
                .max(1),
        }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

impl KvDatabase for FdbDatabase {
    type Tx = FdbTx;

    fn begin(&self) -> Result<FdbTx, KvError> {
        let tx = self.db.create_trx().map_err(map_err)?;
        tx.set_option(TransactionOption::Timeout(self.timeout_ms))
            .map_err(map_err)?;
        Ok(FdbTx {
            tx,
            stamped: AtomicBool::new(false),
        })
    }
}

/// One FoundationDB transaction.
pub struct FdbTx {
    tx: Transaction,
    stamped: AtomicBool,
}

impl std::fmt::Debug for FdbTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdbTx").finish_non_exhaustive()
    }
}

/// `bytes` followed by `offset` as 4 little-endian bytes: the parameter format of the
/// versionstamp mutations since API version 520.
fn with_offset(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 4);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&u32::try_from(offset).unwrap_or(u32::MAX).to_le_bytes());
    out
}

#[async_trait]
impl KvTransaction for FdbTx {
    async fn read_version(&self) -> Result<u64, KvError> {
        let v = self.tx.get_read_version().await.map_err(map_err)?;
        u64::try_from(v).map_err(|_| KvError::fatal(format!("negative read version {v}")))
    }

    async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError> {
        let value = self.tx.get(key, snapshot).await.map_err(map_err)?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn get_range(&self, read: RangeRead<'_>) -> Result<RangeBatch, KvError> {
        let opt = RangeOption {
            limit: Some(read.limit.max(1)),
            // Exact with a byte target: at most `limit` rows and about `target_bytes` bytes
            // per request (0 = no byte cap), so large values never make one huge request.
            target_bytes: read.target_bytes,
            mode: StreamingMode::Exact,
            reverse: read.reverse,
            ..RangeOption::from((read.begin, read.end))
        };
        let values = self
            .tx
            .get_range(&opt, 1, read.snapshot)
            .await
            .map_err(map_err)?;
        let more = values.more();
        let pairs = values
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect();
        Ok(RangeBatch { pairs, more })
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        self.tx.set(key, value);
    }

    fn clear(&self, key: &[u8]) {
        self.tx.clear(key);
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) {
        self.tx.clear_range(begin, end);
    }

    fn set_versionstamped_key(&self, key: &[u8], offset: usize, value: &[u8]) {
        self.stamped.store(true, Ordering::Relaxed);
        self.tx.atomic_op(
            &with_offset(key, offset),
            value,
            MutationType::SetVersionstampedKey,
        );
    }

    fn set_versionstamped_value(&self, key: &[u8], value: &[u8], offset: usize) {
        self.stamped.store(true, Ordering::Relaxed);
        self.tx.atomic_op(
            key,
            &with_offset(value, offset),
            MutationType::SetVersionstampedValue,
        );
    }

    fn watch(&self, key: &[u8]) -> BoxFuture<'static, Result<(), KvError>> {
        self.tx.watch(key).map(|r| r.map_err(map_err)).boxed()
    }

    async fn commit(self) -> Result<Option<Versionstamp>, KvError> {
        // The versionstamp future must be requested before the commit; it resolves after it.
        let stamp = self
            .stamped
            .load(Ordering::Relaxed)
            .then(|| self.tx.get_versionstamp());
        self.tx.commit().await.map_err(|e| map_err(*e))?;
        let Some(stamp) = stamp else { return Ok(None) };
        let bytes = stamp.await.map_err(map_err)?;
        let stamp: Versionstamp = bytes.as_ref().try_into().map_err(|_| {
            KvError::fatal(format!(
                "versionstamp of {} bytes, expected 10",
                bytes.len()
            ))
        })?;
        Ok(Some(stamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_refusals_map_to_their_kinds() {
        assert_eq!(kind_of_code(2101), Some(KvErrorKind::TransactionTooLarge));
        assert_eq!(kind_of_code(2102), Some(KvErrorKind::KeyTooLarge));
        assert_eq!(kind_of_code(2103), Some(KvErrorKind::ValueTooLarge));
        assert_eq!(kind_of_code(1031), Some(KvErrorKind::Timeout));
        assert_eq!(kind_of_code(1020), Some(KvErrorKind::Conflict));
        assert_eq!(
            kind_of_code(1021),
            None,
            "left to FDB's maybe-committed predicate"
        );
    }

    #[test]
    fn versionstamp_parameters_carry_a_little_endian_offset() {
        assert_eq!(with_offset(b"ab", 1), vec![b'a', b'b', 1, 0, 0, 0]);
        assert_eq!(with_offset(b"", 300), vec![44, 1, 0, 0]);
    }
}
