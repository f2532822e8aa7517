//! The key-value seam: the operations of FoundationDB the engine needs, and nothing more.
//!
//! A [`KvDatabase`] hands out [`KvTransaction`]s. A transaction reads at one read version (MVCC),
//! sees its own writes, and commits optimistically: when a transaction that committed after its
//! read version wrote into a range it read *serializably* (not `snapshot`), the commit fails with
//! a retryable [`KvErrorKind::Conflict`]. Versionstamped writes put the 10-byte commit
//! versionstamp (8-byte commit version, 2-byte batch number) into a key or value at a given
//! offset. A versionstamped key's write conflict range is the exact key it becomes: the commit
//! proxy adds it once the stamp is known (the client adds none).
//!
//! [`crate::SimKv`] implements it in memory; `dcb-fdb` maps it onto `foundationdb::Transaction`.

use async_trait::async_trait;
use futures::future::BoxFuture;

/// The size of a commit versionstamp: 8-byte commit version + 2-byte batch number.
pub const VERSIONSTAMP_LEN: usize = 10;

/// FoundationDB's `TRANSACTION_SIZE_LIMIT`: bytes per transaction, as its client counts them.
pub const FDB_TX_SIZE_LIMIT: usize = 10_000_000;
/// FoundationDB's `KEY_SIZE_LIMIT`.
pub const FDB_KEY_SIZE_LIMIT: usize = 10_000;
/// FoundationDB's `VALUE_SIZE_LIMIT`.
pub const FDB_VALUE_SIZE_LIMIT: usize = 100_000;
/// `sizeof(MutationRef)` in FoundationDB 7.3: what each mutation adds to a transaction's size
/// on top of its key and value.
pub const MUTATION_OVERHEAD: usize = 56;
/// `sizeof(KeyRangeRef)`: what each conflict range adds on top of its two keys.
pub const RANGE_OVERHEAD: usize = 32;
/// Bytes of the offset appended to a versionstamped key or value parameter.
pub const STAMP_OFFSET_LEN: usize = 4;

/// A 10-byte commit versionstamp.
pub type Versionstamp = [u8; VERSIONSTAMP_LEN];

/// How a KV failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvErrorKind {
    /// The transaction conflicted with a concurrent commit (`not_committed`): nothing was written;
    /// retry in a fresh transaction.
    Conflict,
    /// A transient failure (`transaction_too_old`, `future_version`, a busy cluster): nothing was
    /// written; retry in a fresh transaction.
    Retryable,
    /// The commit may or may not have happened (`commit_unknown_result`).
    MaybeCommitted,
    /// The transaction hit its timeout. During a commit, the outcome is unknown.
    Timeout,
    /// The transaction is over the store's size limit (FoundationDB `transaction_too_large`,
    /// 2101): nothing was written; not retried.
    TransactionTooLarge,
    /// A key is over the store's key size limit (`key_too_large`, 2102): not retried.
    KeyTooLarge,
    /// A value is over the store's value size limit (`value_too_large`, 2103): not retried.
    ValueTooLarge,
    /// Anything else: not retried.
    Fatal,
}

/// A failure of the key-value store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct KvError {
    /// How to handle it.
    pub kind: KvErrorKind,
    /// What the store said (with its error code where it has one).
    pub message: String,
}

impl KvError {
    /// An error of `kind`.
    pub fn new(kind: KvErrorKind, message: impl Into<String>) -> KvError {
        KvError {
            kind,
            message: message.into(),
        }
    }

    /// A non-retryable error.
    pub fn fatal(message: impl Into<String>) -> KvError {
        KvError::new(KvErrorKind::Fatal, message)
    }
}

/// One batch of a range read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeRead<'a> {
    /// First key (inclusive).
    pub begin: &'a [u8],
    /// End key (exclusive).
    pub end: &'a [u8],
    /// At most this many pairs (at least 1).
    pub limit: usize,
    /// Newest (largest key) first.
    pub reverse: bool,
    /// A snapshot read registers no read conflict.
    pub snapshot: bool,
    /// Soft cap on the bytes (keys and values) of one batch, `0` for none. A backend stops a
    /// batch once it holds this many bytes (always returning at least one pair when there is
    /// one) and sets `more`.
    pub target_bytes: usize,
}

/// The result of a [`RangeRead`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeBatch {
    /// Key-value pairs in the requested order.
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the range may hold more pairs past the last one returned. A backend may return
    /// fewer than `limit` pairs with `more` set; the caller continues after the last key.
    pub more: bool,
}

/// A source of transactions (a database handle, cheap to share).
pub trait KvDatabase: Send + Sync + 'static {
    /// The transaction type.
    type Tx: KvTransaction;

    /// Starts a transaction. Implementations set their own per-transaction timeout.
    fn begin(&self) -> Result<Self::Tx, KvError>;
}

/// One optimistic transaction. Writes are buffered until [`KvTransaction::commit`].
#[async_trait]
pub trait KvTransaction: Send + Sync + 'static {
    /// The version this transaction reads at (FoundationDB `get_read_version`): the newest
    /// committed version when it started. Versionstamps begin with a commit version in the same
    /// (per-cluster) sequence.
    async fn read_version(&self) -> Result<u64, KvError>;

    /// Reads one key. A non-snapshot read registers a read conflict on the key.
    async fn get(&self, key: &[u8], snapshot: bool) -> Result<Option<Vec<u8>>, KvError>;

    /// Reads one batch of a key range. A non-snapshot read registers a read conflict on the part
    /// of the range it covered (up to the last key returned when `more` is set, the whole range
    /// otherwise).
    async fn get_range(&self, read: RangeRead<'_>) -> Result<RangeBatch, KvError>;

    /// Sets a key.
    fn set(&self, key: &[u8], value: &[u8]);

    /// Clears a key.
    fn clear(&self, key: &[u8]);

    /// Clears `[begin, end)`.
    fn clear_range(&self, begin: &[u8], end: &[u8]);

    /// Sets a key whose bytes `offset..offset + 10` are replaced by the commit versionstamp.
    /// The key is unreadable in this transaction. Its write conflict range is the stamped key
    /// itself, added at commit (FoundationDB's commit proxy does it). Since the stamp is above
    /// every version any concurrent reader read at, a serializable read of a range reaching up
    /// to the end of the key's prefix always intersects it.
    fn set_versionstamped_key(&self, key: &[u8], offset: usize, value: &[u8]);

    /// Sets a value whose bytes `offset..offset + 10` are replaced by the commit versionstamp.
    fn set_versionstamped_value(&self, key: &[u8], value: &[u8], offset: usize);

    /// A future that resolves once `key`'s value differs from the one this transaction sees. It
    /// is armed when the transaction commits (commit a read-only transaction to arm it).
    fn watch(&self, key: &[u8]) -> BoxFuture<'static, Result<(), KvError>>;

    /// Commits. Returns the commit versionstamp when the transaction used a versionstamped write,
    /// `None` otherwise (read-only and plain transactions).
    async fn commit(self) -> Result<Option<Versionstamp>, KvError>;
}
