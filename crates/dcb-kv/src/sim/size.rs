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
//! Read conflict ranges are coalesced, as the client keeps them; write conflict ranges and
//! repeated writes of one key are not (FoundationDB merges those too), so the figure is an upper
//! bound of FoundationDB's.

use crate::kv::{KvError, KvErrorKind};

use super::tx::{Mutation, Range};

pub use crate::kv::{
    FDB_KEY_SIZE_LIMIT, FDB_TX_SIZE_LIMIT, FDB_VALUE_SIZE_LIMIT, MUTATION_OVERHEAD, RANGE_OVERHEAD,
    STAMP_OFFSET_LEN,
};

/// The size FoundationDB's client measures for a transaction with these mutations and conflict
/// ranges (write conflict ranges are derived from the mutations, as the client does).
pub(crate) fn transaction_size(writes: &[Mutation], read_conflicts: &[Range]) -> usize {
    let range = |b: usize, e: usize| RANGE_OVERHEAD + b + e;
    let mut total: usize = coalesce(read_conflicts)
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

/// Read conflict ranges merged where they overlap or touch, as FoundationDB's client keeps them.
fn coalesce(ranges: &[Range]) -> Vec<Range> {
    let mut sorted: Vec<&Range> = ranges.iter().collect();
    sorted.sort();
    let mut out: Vec<Range> = Vec::with_capacity(sorted.len());
    for (b, e) in sorted {
        match out.last_mut() {
            Some((_, last_end)) if b <= last_end => {
                if e > last_end {
                    *last_end = e.clone();
                }
            }
            _ => out.push((b.clone(), e.clone())),
        }
    }
    out
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
