//! FoundationDB's transaction size accounting and size limits, as the 7.3 client does them.
//!
//! At commit the client computes `Transaction::getSize()`: the `expectedSize()` of the
//! mutations plus the read and write conflict ranges, each vector counting `sizeof(element)`
//! per entry plus the bytes the entry points at:
//!
//! - a mutation: `sizeof(MutationRef)` (56 bytes in 7.3: type, two `StringRef`s, two optional
//!   checksums) + `param1` + `param2`. For `SetVersionstampedKey` `param1` is the key *followed
//!   by its 4-byte offset*; for `SetVersionstampedValue` `param2` carries the offset. A single-key
//!   clear is a `ClearRange [k, k\0)`.
//! - a conflict range: `sizeof(KeyRangeRef)` (32) + begin + end. `set`, `clear` and
//!   `SetVersionstampedValue` add a write conflict range `[k, k\0)`; `SetVersionstampedKey` adds
//!   none on the client (the commit proxy adds the exact stamped key, after this check).
//!
//! Over 10 000 000 bytes the commit fails with `transaction_too_large` (2101). A key over
//! 10 000 bytes is `key_too_large` (2102), a value over 100 000 bytes `value_too_large` (2103).
//!
//! This model does not coalesce overlapping conflict ranges or repeated writes of one key, which
//! FoundationDB does before it measures: its figure is an upper bound of FoundationDB's.

use crate::kv::{KvError, KvErrorKind};

use super::tx::{Mutation, Range};

/// `sizeof(MutationRef)` in FoundationDB 7.3.
pub const MUTATION_OVERHEAD: usize = 56;
/// `sizeof(KeyRangeRef)`.
pub const RANGE_OVERHEAD: usize = 32;
/// Bytes of the versionstamp offset appended to a versionstamped key or value.
pub const STAMP_OFFSET_LEN: usize = 4;
/// `TRANSACTION_SIZE_LIMIT`.
pub const FDB_TX_SIZE_LIMIT: usize = 10_000_000;
/// `KEY_SIZE_LIMIT`.
pub const FDB_KEY_SIZE_LIMIT: usize = 10_000;
/// `VALUE_SIZE_LIMIT`.
pub const FDB_VALUE_SIZE_LIMIT: usize = 100_000;

/// The size FoundationDB's client measures for a transaction with these mutations and conflict
/// ranges (write conflict ranges are derived from the mutations, as the client does).
pub(crate) fn transaction_size(writes: &[Mutation], read_conflicts: &[Range]) -> usize {
    let range = |b: usize, e: usize| RANGE_OVERHEAD + b + e;
    let mut total: usize = read_conflicts
        .iter()
        .map(|(b, e)| range(b.len(), e.len()))
        .sum();
    for m in writes {
        total += MUTATION_OVERHEAD;
        total += match m {
            Mutation::Set(k, v) => k.len() + v.len() + range(k.len(), k.len() + 1),
            Mutation::Clear(k) => k.len() + k.len() + 1 + range(k.len(), k.len() + 1),
            Mutation::ClearRange(b, e) => b.len() + e.len() + range(b.len(), e.len()),
            Mutation::StampKey(k, _, v) => k.len() + STAMP_OFFSET_LEN + v.len(),
            Mutation::StampValue(k, v, _) => {
                k.len() + v.len() + STAMP_OFFSET_LEN + range(k.len(), k.len() + 1)
            }
        };
    }
    total
}

/// FoundationDB's key and value size limits, checked at commit.
pub(crate) fn check_key_value_sizes(writes: &[Mutation]) -> Result<(), KvError> {
    for m in writes {
        let (key, value) = match m {
            Mutation::Set(k, v) | Mutation::StampKey(k, _, v) | Mutation::StampValue(k, v, _) => {
                (k.len(), v.len())
            }
            Mutation::Clear(k) => (k.len(), 0),
            Mutation::ClearRange(b, e) => (b.len().max(e.len()), 0),
        };
        if key > FDB_KEY_SIZE_LIMIT {
            return Err(KvError::new(
                KvErrorKind::KeyTooLarge,
                format!("key_too_large (2102): {key} bytes"),
            ));
        }
        if value > FDB_VALUE_SIZE_LIMIT {
            return Err(KvError::new(
                KvErrorKind::ValueTooLarge,
                format!("value_too_large (2103): {value} bytes"),
            ));
        }
    }
    Ok(())
}
