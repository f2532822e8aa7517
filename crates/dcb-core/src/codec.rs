//! The stored form of an event, shared by every persistent backend.
//!
//! Format version 1: one version byte (`1`) followed by a postcard encoding of
//! [`StoredEvent`]. Unknown versions and undecodable bytes are [`StoreError::Corrupted`], never a
//! panic.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, StoreError};

/// The current record format version.
pub const RECORD_VERSION: u8 = 1;

/// An event as persisted, with its place in the batch it was appended in (used to recognise
/// idempotent retries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// The event.
    pub event: Event,
    /// Index of the event in its append batch.
    pub batch_index: u32,
    /// Number of events in that batch.
    pub batch_len: u32,
}

#[derive(Serialize, Deserialize)]
struct RecordV1<'a> {
    event_type: &'a str,
    tags: Vec<&'a str>,
    #[serde(with = "serde_bytes_compat")]
    data: &'a [u8],
    metadata: Vec<(&'a str, &'a str)>,
    id: Option<[u8; 16]>,
    batch_index: u32,
    batch_len: u32,
}

/// The same record, decoded straight into owned values (no intermediate borrowed vectors).
/// Postcard encodes a sequence of pairs exactly like a map, so `metadata` decodes as one.
#[derive(Deserialize)]
struct RecordV1Owned {
    event_type: String,
    tags: Vec<String>,
    #[serde(deserialize_with = "owned_bytes")]
    data: Vec<u8>,
    metadata: std::collections::BTreeMap<String, String>,
    id: Option<[u8; 16]>,
    batch_index: u32,
    batch_len: u32,
}

fn owned_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    d.deserialize_byte_buf(V)
}

mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'de [u8], D::Error> {
        <&'de [u8] as serde::Deserialize>::deserialize(d)
    }
}

/// Encodes an event with its batch placement.
pub fn encode_event(event: &Event, batch_index: u32, batch_len: u32) -> Vec<u8> {
    let rec = RecordV1 {
        event_type: &event.event_type,
        tags: event.tags.iter().map(String::as_str).collect(),
        data: &event.data,
        metadata: event
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        id: event.id.map(|u| *u.as_bytes()),
        batch_index,
        batch_len,
    };
    let mut out = Vec::with_capacity(32 + crate::limits::event_size(event));
    out.push(RECORD_VERSION);
    // Serialising plain strings, byte slices and integers into a Vec cannot fail.
    match postcard::to_extend(&rec, out) {
        Ok(v) => v,
        Err(_) => vec![0],
    }
}

/// The indexed fields of a stored event, borrowed from the record without copying its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKeys<'a> {
    /// The event type.
    pub event_type: &'a str,
    /// The tags.
    pub tags: Vec<&'a str>,
    /// The id, when the event has one.
    pub id: Option<Uuid>,
}

/// Decodes only what indexes need (type, tags, id), borrowing from `bytes`; much cheaper than
/// [`decode_event`] when rebuilding indexes.
pub fn decode_keys(bytes: &[u8]) -> Result<EventKeys<'_>, StoreError> {
    let rec = decode_record(bytes)?;
    Ok(EventKeys {
        event_type: rec.event_type,
        tags: rec.tags,
        id: rec.id.map(Uuid::from_bytes),
    })
}

fn decode_record(bytes: &[u8]) -> Result<RecordV1<'_>, StoreError> {
    postcard::from_bytes(record_body(bytes)?)
        .map_err(|e| StoreError::Corrupted(format!("undecodable event record: {e}")))
}

fn record_body(bytes: &[u8]) -> Result<&[u8], StoreError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(StoreError::Corrupted("empty event record".into()));
    };
    if version != RECORD_VERSION {
        return Err(StoreError::Corrupted(format!(
            "unknown event record version {version}"
        )));
    }
    Ok(body)
}

/// Decodes a record written by [`encode_event`].
pub fn decode_event(bytes: &[u8]) -> Result<StoredEvent, StoreError> {
    let body = record_body(bytes)?;
    let rec: RecordV1Owned = postcard::from_bytes(body)
        .map_err(|e| StoreError::Corrupted(format!("undecodable event record: {e}")))?;
    Ok(StoredEvent {
        event: Event {
            event_type: rec.event_type,
            tags: rec.tags,
            data: rec.data,
            metadata: rec.metadata,
            id: rec.id.map(Uuid::from_bytes),
        },
        batch_index: rec.batch_index,
        batch_len: rec.batch_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = Event::new("A", b"{}".to_vec())
            .tag("x")
            .tag("y")
            .meta("k", "v")
            .meta("a", "1")
            .meta("z", "")
            .with_id(Uuid::from_u128(5));
        let bytes = encode_event(&e, 2, 3);
        let back = decode_event(&bytes).ok();
        assert_eq!(
            back,
            Some(StoredEvent {
                event: e.clone(),
                batch_index: 2,
                batch_len: 3
            })
        );
        let keys = decode_keys(&bytes).ok();
        assert_eq!(
            keys,
            Some(EventKeys {
                event_type: "A",
                tags: vec!["x", "y"],
                id: e.id
            })
        );
    }

    #[test]
    fn garbage_is_corruption_not_panic() {
        assert!(matches!(decode_event(&[]), Err(StoreError::Corrupted(_))));
        assert!(matches!(
            decode_event(&[9, 1, 2]),
            Err(StoreError::Corrupted(_))
        ));
        let e = Event::new("A", vec![1; 100]).tag("x");
        let mut bytes = encode_event(&e, 0, 1);
        bytes.truncate(bytes.len() / 2);
        assert!(matches!(
            decode_event(&bytes),
            Err(StoreError::Corrupted(_))
        ));
        for i in 0..=255u8 {
            let _ = decode_event(&[1, i, i, i, 0xff, 0xff, 0xff, 0xff, 0xff]);
        }
    }
}
