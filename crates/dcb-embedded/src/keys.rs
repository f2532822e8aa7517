//! The on-disk layout of the embedded store. Schema version 3.
//!
//! ```text
//! segments/*.seg, *.off  the events, in the segment log (see `segment`): each commit group one
//!                        checksummed frame, fdatasync'd; sealed segments have an offset table
//! index.snapshot         the type, tag and id indexes at some head (see `crate::snapshot`)
//! fjall (the data directory's own files):
//! keyspace "consumers"  key: b'c' ++ consumer                       value: checkpoint, 12-byte position
//!                       key: b's' ++ len(consumer) as u8 ++ consumer ++ state key
//!                                                                   value: state value
//! keyspace "meta"       key: b"schema"                              value: SCHEMA_VERSION as u32 big-endian
//!                       key: b"applied"                             value: u64 big-endian, the log head
//!                                                                   the consumer keyspace reflects
//! ```
//!
//! The events are durable in the log alone. Consumer checkpoints and state live in fjall; a
//! tracked append's checkpoint move is carried in its group's frame too (so it is durable with
//! the events at once) and written to fjall without a sync of its own: at open, the frames after
//! `applied` are replayed into fjall. The indexes are derived data, kept in memory and saved to
//! the snapshot now and then, completed or rebuilt from the log at open.
//!
//! Version 1 kept the events in a fjall keyspace `"events"` (key: position as u64 big-endian,
//! value: the codec record). Opening a version-1 directory migrates it once (see
//! `crate::disk`). Version 2 is version 3's layout with segments of version 1 only (CRC-32
//! record checks); version 3 starts segments of version 2 (xxh3 record checks) and reads both.
//! A version-2 directory opens as it is and is marked 3 just before its first segment of
//! version 2 is started (when its active segment is sealed); a build that reads only segments
//! of version 1 then refuses it by its schema version. Changing the layout again means bumping
//! [`SCHEMA_VERSION`] and teaching `open` to read (or migrate) the older version; an unknown
//! version refuses to open.

/// The layout version written to `meta/schema`.
pub const SCHEMA_VERSION: u32 = 3;

/// The schema version whose directories open as they are (their segments, all of version 1,
/// are read as they are), marked [`SCHEMA_VERSION`] just before their first segment of version
/// 2 is started.
pub const SCHEMA_VERSION_2: u32 = 2;

/// Keyspace of events by position in schema version 1 (migrated away at open).
pub const EVENTS: &str = "events";
/// Keyspace of consumer checkpoints and state.
pub const CONSUMERS: &str = "consumers";
/// Keyspace of store metadata.
pub const META: &str = "meta";
/// Key of the schema version in [`META`].
pub const SCHEMA_KEY: &[u8] = b"schema";
/// Key in [`META`] of the log position up to which the consumer keyspace holds every frame's
/// checkpoint moves.
pub const APPLIED_KEY: &[u8] = b"applied";

/// The key of the event at `position` in schema version 1.
pub fn event_key(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

/// The position of an event key, `None` when the key is not 8 bytes.
pub fn event_position(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

/// The key of a consumer's checkpoint.
pub fn checkpoint_key(consumer: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + consumer.len());
    k.push(b'c');
    k.extend_from_slice(consumer.as_bytes());
    k
}

/// The prefix of every state key of a consumer (the length byte keeps `ab` apart from `a` + `b...`).
pub fn state_prefix(consumer: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + consumer.len());
    k.push(b's');
    // Consumer names are at most 128 bytes (dcb_core::limits::MAX_CONSUMER_LEN).
    k.push(u8::try_from(consumer.len()).unwrap_or(u8::MAX));
    k.extend_from_slice(consumer.as_bytes());
    k
}

/// The key of one state entry of a consumer.
pub fn state_key(consumer: &str, key: &[u8]) -> Vec<u8> {
    let mut k = state_prefix(consumer);
    k.extend_from_slice(key);
    k
}
