//! The on-disk layout of the embedded store. Schema version 1.
//!
//! ```text
//! keyspace "events"     key: position as u64 big-endian (8 bytes)   value: dcb_core::codec record
//! keyspace "consumers"  key: b'c' ++ consumer                       value: checkpoint, 12-byte position
//!                       key: b's' ++ len(consumer) as u8 ++ consumer ++ state key
//!                                                                   value: state value
//! keyspace "meta"       key: b"schema"                              value: SCHEMA_VERSION as u32 big-endian
//! ```
//!
//! Only the events (and consumer state) are durable in the commit. The type, tag and id indexes
//! are derived data, kept in memory, saved now and then to `index.snapshot` next to fjall's files
//! (see `crate::snapshot`, a format of its own with its own version), and completed or rebuilt
//! from the `events` keyspace when the store opens; they are therefore absent from this layout. Changing the layout means bumping [`SCHEMA_VERSION`] and
//! teaching `open` to read (or migrate) the older version; an unknown version refuses to open.

/// The layout version written to `meta/schema`.
pub const SCHEMA_VERSION: u32 = 1;

/// Keyspace of events by position.
pub const EVENTS: &str = "events";
/// Keyspace of consumer checkpoints and state.
pub const CONSUMERS: &str = "consumers";
/// Keyspace of store metadata.
pub const META: &str = "meta";
/// Key of the schema version in [`META`].
pub const SCHEMA_KEY: &[u8] = b"schema";

/// The key of the event at `position`.
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
