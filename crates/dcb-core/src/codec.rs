//! The stored form of an event, shared by every persistent backend.
//!
//! Format version 1: one version byte (`1`) followed by a postcard encoding of
//! [`StoredEvent`]. Unknown versions and undecodable bytes are [`StoreError::Corrupted`], never a
//! panic.
//!
//! [`decode_event_bytes`] is the zero-copy decode: the event's type, tags and data are slices of
//! the record's own [`Bytes`] (no per-field allocation; only the tag list and any metadata are
//! allocated). [`decode_keys`] borrows the indexed fields for index rebuilds.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, StoreError, Text};

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
        tags: event.tags.iter().map(Text::as_str).collect(),
        data: &event.data[..],
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

/// Decodes a record written by [`encode_event`], copying it once into a shared buffer (see
/// [`decode_event_bytes`] to decode a buffer the caller already shares, without copying).
pub fn decode_event(bytes: &[u8]) -> Result<StoredEvent, StoreError> {
    decode_event_bytes(&Bytes::copy_from_slice(bytes))
}

/// Decodes a record written by [`encode_event`] without copying: the event's type, tags and
/// data are slices of `record` ([`Bytes::slice_ref`]), so they share (and keep alive) its buffer.
pub fn decode_event_bytes(record: &Bytes) -> Result<StoredEvent, StoreError> {
    let body = record_body(record)?;
    let mut de = postcard::Deserializer::from_bytes(body);
    RecordSeed { record }
        .deserialize(&mut de)
        .map_err(|e| StoreError::Corrupted(format!("undecodable event record: {e}")))
}

/// The field names of [`RecordV1`], in order (postcard encodes a struct as its fields in order).
const RECORD_FIELDS: &[&str] = &[
    "event_type",
    "tags",
    "data",
    "metadata",
    "id",
    "batch_index",
    "batch_len",
];

/// Decodes a [`RecordV1`] body into a [`StoredEvent`] whose buffers are slices of `record`.
struct RecordSeed<'r> {
    record: &'r Bytes,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = StoredEvent;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<StoredEvent, D::Error> {
        d.deserialize_struct("RecordV1", RECORD_FIELDS, self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = StoredEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event record")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StoredEvent, A::Error> {
        let record = self.record;
        let missing = |i: usize| de::Error::invalid_length(i, &"an event record of 7 fields");
        let type_bytes = seq
            .next_element_seed(SharedSeed { record })?
            .ok_or_else(|| missing(0))?;
        let event_type = text(type_bytes)?;
        let tags = seq
            .next_element_seed(TagsSeed { record })?
            .ok_or_else(|| missing(1))?;
        let data = seq
            .next_element_seed(SharedSeed { record })?
            .ok_or_else(|| missing(2))?;
        let metadata: BTreeMap<String, String> = seq.next_element()?.ok_or_else(|| missing(3))?;
        let id: Option<[u8; 16]> = seq.next_element()?.ok_or_else(|| missing(4))?;
        let batch_index: u32 = seq.next_element()?.ok_or_else(|| missing(5))?;
        let batch_len: u32 = seq.next_element()?.ok_or_else(|| missing(6))?;
        Ok(StoredEvent {
            event: Event {
                event_type,
                tags,
                data,
                metadata,
                id: id.map(Uuid::from_bytes),
            },
            batch_index,
            batch_len,
        })
    }
}

fn text<E: de::Error>(bytes: Bytes) -> Result<Text, E> {
    Text::from_utf8(bytes).map_err(|e| E::custom(format_args!("invalid UTF-8: {e}")))
}

/// Decodes a byte string (postcard writes `str` and `[u8]` alike) as a slice of `record`.
struct SharedSeed<'r> {
    record: &'r Bytes,
}

impl<'de> DeserializeSeed<'de> for SharedSeed<'_> {
    type Value = Bytes;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Bytes, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl<'de> Visitor<'de> for SharedSeed<'_> {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(share(self.record, v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(share(self.record, v))
    }
}

/// `part` as a slice of `record` when it lies inside it (always, for a postcard body borrowed
/// from the record), else a copy: never a panic.
fn share(record: &Bytes, part: &[u8]) -> Bytes {
    let whole = record.as_ptr_range();
    let p = part.as_ptr_range();
    if part.is_empty() {
        Bytes::new()
    } else if whole.start <= p.start && p.end <= whole.end {
        record.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

/// Decodes the tag list, each tag a slice of `record`.
struct TagsSeed<'r> {
    record: &'r Bytes,
}

impl<'de> DeserializeSeed<'de> for TagsSeed<'_> {
    type Value = Vec<Text>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<Text>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TagsSeed<'_> {
    type Value = Vec<Text>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of tags")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Text>, A::Error> {
        // The length comes from the record: cap the reservation, the loop grows past it.
        let hint = seq
            .size_hint()
            .unwrap_or(0)
            .min(crate::limits::MAX_TAGS_PER_EVENT);
        let mut tags = Vec::with_capacity(hint);
        while let Some(b) = seq.next_element_seed(SharedSeed {
            record: self.record,
        })? {
            tags.push(text(b)?);
        }
        Ok(tags)
    }
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
    fn decode_event_bytes_slices_the_record() {
        let e = Event::new("BookBorrowed", br#"{"book":42}"#.to_vec())
            .tag("book:42")
            .tag("reader:7")
            .meta("recorded-at", "1")
            .with_id(Uuid::from_u128(9));
        let record = Bytes::from(encode_event(&e, 1, 2));
        let stored = decode_event_bytes(&record);
        let Ok(stored) = stored else {
            panic!("decode failed: {stored:?}");
        };
        assert_eq!(stored.event, e);
        assert_eq!((stored.batch_index, stored.batch_len), (1, 2));
        let inside = record.as_ptr_range();
        let ev = &stored.event;
        let mut pointers = vec![ev.event_type.as_ptr(), ev.data.as_ptr()];
        pointers.extend(ev.tags.iter().map(|t| t.as_ptr()));
        for p in pointers {
            assert!(inside.contains(&p), "a field was copied out of the record");
        }
        // The slices keep the buffer alive on their own.
        drop(record);
        assert_eq!(stored.event.tags[1], "reader:7");
    }

    #[test]
    fn empty_fields_decode_without_a_buffer() {
        let e = Event::new("A", Vec::new());
        let stored = decode_event_bytes(&Bytes::from(encode_event(&e, 0, 1)));
        assert_eq!(stored.ok().map(|s| s.event), Some(e));
    }

    #[test]
    fn invalid_utf8_in_a_tag_is_corruption() {
        let e = Event::new("A", Vec::new()).tag("xx");
        let mut bytes = encode_event(&e, 0, 1);
        let at = bytes.windows(2).position(|w| w == b"xx").unwrap_or(0);
        bytes[at] = 0xff;
        assert!(matches!(
            decode_event(&bytes),
            Err(StoreError::Corrupted(_))
        ));
        assert!(matches!(decode_keys(&bytes), Err(StoreError::Corrupted(_))));
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
