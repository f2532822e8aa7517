//! The key schema: every key the engine reads or writes is built here.
//!
//! ```text
//! Schema version 1. All keys live under one subspace:
//!
//!   root  = "fw" 0x01 <len16 ns> <ns bytes>       (len16 = u16 big-endian byte length)
//!
//!   root "v"                          -> [SCHEMA_VERSION]           schema marker, written on open
//!   root "h"                          -> <pos12>                     head: last event's position;
//!                                                                    every append writes it (watched)
//!   root "e" <pos12>                  -> codec record (dcb_core::codec, batch index and length)
//!   root "t" <len16 type> <type> <pos12>  -> ""                      type index
//!   root "g" <len16 tag> <tag> <pos12>    -> <type bytes>            tag index (type in the value,
//!                                                                    so type+tag items filter
//!                                                                    without a point read)
//!   root "i" <uuid16>                 -> <pos12>                     event id index (idempotency)
//!   root "b" <uuid16>                 -> <pos12 of the batch's first event>
//!                                                                    commit token: a random id per
//!                                                                    append call, to resolve an
//!                                                                    unknown commit result
//!   root "c" <len16 consumer> <consumer>      -> <pos12>             consumer checkpoint
//!   root "s" <len16 consumer> <consumer> <key> -> value              consumer state
//! ```
//!
//! `pos12` is [`Position::to_bytes`]: on this engine the FoundationDB versionstamp (10-byte commit
//! version, then the 2-byte index of the event in its batch), big-endian, so key order is position
//! order. Strings are length-prefixed, never terminated: `t` + "ab" + pos can never share a prefix
//! with `t` + "a" + anything, and two namespaces never overlap ("a" is not a prefix of "ab" once
//! its length is in front). An event with `n` tags writes `n + 2` keys plus one per id: the layout
//! grows linearly with tags.
//!
//! Changing the layout means bumping [`SCHEMA_VERSION`]; a store whose marker differs is refused
//! with `StoreError::Corrupted` at open (there is no older layout to migrate from yet).

use dcb_core::Position;
use uuid::Uuid;

use crate::kv::VERSIONSTAMP_LEN;

/// The version of this key layout, stored under `root "v"`.
pub const SCHEMA_VERSION: u8 = 1;

/// Length of an encoded position.
pub const POS_LEN: usize = 12;

pub(crate) const TAG_SCHEMA: u8 = b'v';
pub(crate) const TAG_HEAD: u8 = b'h';
pub(crate) const TAG_EVENT: u8 = b'e';
pub(crate) const TAG_TYPE: u8 = b't';
pub(crate) const TAG_TAG: u8 = b'g';
pub(crate) const TAG_ID: u8 = b'i';
pub(crate) const TAG_BATCH: u8 = b'b';
pub(crate) const TAG_CHECKPOINT: u8 = b'c';
pub(crate) const TAG_STATE: u8 = b's';

/// The key builder of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    root: Vec<u8>,
}

/// The smallest key greater than every key starting with `prefix` (`None` if `prefix` is all 0xFF).
pub fn strinc(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last != 0xff {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    // Strings are bounded by dcb_core::limits far below u16::MAX; saturate defensively so that
    // an oversized string can never alias a shorter one.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
}

/// The half-open key range `[begin, end)` of the positions in a prefix that lie in
/// `[lo, hi)` (`None` = unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosRange {
    /// The prefix every key of the range starts with (followed by 12 position bytes).
    pub prefix: Vec<u8>,
    /// First key.
    pub begin: Vec<u8>,
    /// End key (exclusive).
    pub end: Vec<u8>,
}

impl PosRange {
    /// Positions in `[lo, hi)` under `prefix`.
    pub fn new(prefix: Vec<u8>, lo: Option<Position>, hi: Option<Position>) -> PosRange {
        let mut begin = prefix.clone();
        if let Some(lo) = lo {
            begin.extend_from_slice(&lo.to_bytes());
        }
        let end = match hi {
            Some(hi) => {
                let mut e = prefix.clone();
                e.extend_from_slice(&hi.to_bytes());
                e
            }
            // The prefix is never all 0xFF: it starts with the root "fw".
            None => strinc(&prefix).unwrap_or_else(|| vec![0xff; prefix.len() + 1]),
        };
        PosRange { prefix, begin, end }
    }

    /// The position a key of this range encodes.
    pub fn position_of(&self, key: &[u8]) -> Option<Position> {
        let rest = key.strip_prefix(self.prefix.as_slice())?;
        Position::from_bytes(rest).ok()
    }
}

impl Keys {
    /// The keys of namespace `namespace`.
    pub fn new(namespace: &str) -> Keys {
        let mut root = b"fw\x01".to_vec();
        push_str(&mut root, namespace.as_bytes());
        Keys { root }
    }

    /// The subspace prefix: every key of the namespace starts with it.
    pub fn root(&self) -> &[u8] {
        &self.root
    }

    /// `[root, strinc(root))`: the whole namespace (to clear it).
    pub fn namespace_range(&self) -> (Vec<u8>, Vec<u8>) {
        let end = strinc(&self.root).unwrap_or_else(|| vec![0xff]);
        (self.root.clone(), end)
    }

    fn with(&self, tag: u8) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.root.len() + 32);
        k.extend_from_slice(&self.root);
        k.push(tag);
        k
    }

    /// The schema marker.
    pub fn schema(&self) -> Vec<u8> {
        self.with(TAG_SCHEMA)
    }

    /// The head key.
    pub fn head(&self) -> Vec<u8> {
        self.with(TAG_HEAD)
    }

    /// Prefix of the event records.
    pub fn events_prefix(&self) -> Vec<u8> {
        self.with(TAG_EVENT)
    }

    /// Prefix of the type index of `event_type`.
    pub fn type_prefix(&self, event_type: &str) -> Vec<u8> {
        let mut k = self.with(TAG_TYPE);
        push_str(&mut k, event_type.as_bytes());
        k
    }

    /// Prefix of the tag index of `tag`.
    pub fn tag_prefix(&self, tag: &str) -> Vec<u8> {
        let mut k = self.with(TAG_TAG);
        push_str(&mut k, tag.as_bytes());
        k
    }

    /// The id index key of `id`.
    pub fn id(&self, id: &Uuid) -> Vec<u8> {
        let mut k = self.with(TAG_ID);
        k.extend_from_slice(id.as_bytes());
        k
    }

    /// The commit token key of an append.
    pub fn batch(&self, token: &Uuid) -> Vec<u8> {
        let mut k = self.with(TAG_BATCH);
        k.extend_from_slice(token.as_bytes());
        k
    }

    /// The checkpoint key of `consumer`.
    pub fn checkpoint(&self, consumer: &str) -> Vec<u8> {
        let mut k = self.with(TAG_CHECKPOINT);
        push_str(&mut k, consumer.as_bytes());
        k
    }

    /// Prefix of `consumer`'s state keys.
    pub fn state_prefix(&self, consumer: &str) -> Vec<u8> {
        let mut k = self.with(TAG_STATE);
        push_str(&mut k, consumer.as_bytes());
        k
    }

    /// `consumer`'s state key `key`.
    pub fn state(&self, consumer: &str, key: &[u8]) -> Vec<u8> {
        let mut k = self.state_prefix(consumer);
        k.extend_from_slice(key);
        k
    }
}

/// `prefix` followed by a 12-byte position whose first 10 bytes are the versionstamp placeholder
/// and whose last 2 are `index`; returns the key and the placeholder's offset.
pub fn stamped(prefix: &[u8], index: u16) -> (Vec<u8>, usize) {
    let mut k = Vec::with_capacity(prefix.len() + POS_LEN);
    k.extend_from_slice(prefix);
    let offset = k.len();
    k.extend_from_slice(&[0u8; VERSIONSTAMP_LEN]);
    k.extend_from_slice(&index.to_be_bytes());
    (k, offset)
}

/// The value of a versionstamped position: placeholder then `index` (offset 0).
pub fn stamped_value(index: u16) -> Vec<u8> {
    stamped(&[], index).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_never_alias() {
        let k = Keys::new("ns");
        let ab = k.type_prefix("ab");
        let a = k.type_prefix("a");
        assert!(!ab.starts_with(&a) && !a.starts_with(&ab));
        let n1 = Keys::new("a");
        let n2 = Keys::new("ab");
        assert!(!n2.root().starts_with(n1.root()));
        let s1 = k.state("c", b"x");
        let s2 = k.state_prefix("cx");
        assert!(!s1.starts_with(&s2) && !s2.starts_with(&s1));
    }

    #[test]
    fn positions_sort_inside_a_prefix() {
        let k = Keys::new("ns");
        let r = PosRange::new(k.tag_prefix("t"), Some(Position::from_u64(5)), None);
        let mut key = k.tag_prefix("t");
        key.extend_from_slice(&Position::from_u64(7).to_bytes());
        assert!(key >= r.begin && key < r.end);
        assert_eq!(r.position_of(&key), Some(Position::from_u64(7)));
        let bounded = PosRange::new(k.tag_prefix("t"), None, Some(Position::from_u64(7)));
        assert!(key >= bounded.end);
    }

    #[test]
    fn strinc_works() {
        assert_eq!(strinc(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(strinc(b"\xff\xff"), None);
    }

    #[test]
    fn stamped_layout() {
        let (key, off) = stamped(b"pre", 3);
        assert_eq!(off, 3);
        assert_eq!(key.len(), 3 + POS_LEN);
        assert_eq!(&key[13..], &[0, 3]);
    }
}
