//! The export format: JSON lines, version [`FORMAT_VERSION`].
//!
//! ```text
//! {"fairway_export":1,"head":"1042","consumers":true,"checkpoints":{"todo-lists":"1040"}}
//! {"consumer":"todo-lists","key":"bGlzdDox","value":"eyJuIjoxfQ=="}
//! …
//! {"position":"1","type":"ListCreated","tags":["list:1"],"data":{"name":"groceries"},"id":"…"}
//! {"position":"2","type":"Blob","tags":[],"data_base64":"AAEC","metadata":{"at":"…"}}
//! …
//! {"fairway_export_end":1,"events":1042,"state_entries":7,"head":"1042","crc32":"9a0b1c2d"}
//! ```
//!
//! - The **header** names the format version, the head the export is consistent with, whether
//!   consumers were exported (`false` when the source store offers no consistent consumer
//!   snapshot) and every consumer's checkpoint at that head.
//! - One **state** line per key of a consumer's state at that head (key and value in base64),
//!   grouped by consumer (consumers in the source backend's order), each consumer's keys in
//!   order. They come first because a snapshot is best read while it is
//!   young (FoundationDB keeps one for 5 seconds).
//! - One **event** line per event, oldest first, every position at or below the head: `data` is
//!   the payload itself when it is one JSON value with no surrounding whitespace and no line
//!   break (written verbatim, so it reads back byte for byte), otherwise `data_base64`.
//!   `metadata` and `id` are left out when absent. The last event is at the head.
//! - The **trailer** counts the events and state entries, repeats the head, and carries the
//!   CRC-32 of every byte before it (the lines and their `\n`). An import checks all of it
//!   before writing anything, so a truncated or damaged file is refused whole. The CRC detects
//!   damage in transit, it is no signature: keep exports where only operators can write.
//!
//! Each line's kind is told by its first key, so the lines must stay as written (a tool that
//! reorders keys makes the file unreadable; one that changes a byte fails the checksum).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dcb_core::{Event, Metadata, Position, StateEntry};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::TransferError;

/// The version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const HEADER_PREFIX: &[u8] = b"{\"fairway_export\":";
const EVENT_PREFIX: &[u8] = b"{\"position\":";
const STATE_PREFIX: &[u8] = b"{\"consumer\":";
const TRAILER_PREFIX: &[u8] = b"{\"fairway_export_end\":";

/// The first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// [`FORMAT_VERSION`] of the writer.
    pub fairway_export: u32,
    /// The head the export is consistent with (`None`: the store was empty).
    pub head: Option<Position>,
    /// Whether consumers' checkpoints and state were exported.
    pub consumers: bool,
    /// Every consumer's checkpoint at `head`.
    pub checkpoints: BTreeMap<String, Position>,
}

/// The last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    /// [`FORMAT_VERSION`] of the writer.
    pub fairway_export_end: u32,
    /// Event lines written.
    pub events: u64,
    /// State lines written.
    pub state_entries: u64,
    /// The header's head, repeated.
    pub head: Option<Position>,
    /// CRC-32 (IEEE) of every byte before this line, 8 lowercase hex digits.
    pub crc32: String,
}

#[derive(Serialize)]
struct EventOut<'a, T: Serialize> {
    position: Position,
    #[serde(rename = "type")]
    event_type: &'a str,
    tags: &'a [T],
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    metadata: &'a Metadata,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Uuid>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn<'a> {
    position: Position,
    #[serde(rename = "type")]
    event_type: String,
    tags: Vec<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    id: Option<Uuid>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateLine {
    consumer: String,
    key: String,
    value: String,
}

/// The payload as a JSON value written verbatim, when that reads back byte for byte.
fn verbatim_json(data: &[u8]) -> Option<&RawValue> {
    if data.contains(&b'\n') || data.contains(&b'\r') {
        return None;
    }
    let raw: &RawValue = serde_json::from_slice(data).ok()?;
    (raw.get().len() == data.len()).then_some(raw)
}

/// Appends the line of `event` at `position` (with its `\n`) to `out`.
pub fn write_event(out: &mut Vec<u8>, position: Position, event: &Event) {
    let data: &[u8] = &event.data;
    let raw = verbatim_json(data);
    let line = EventOut {
        position,
        event_type: &event.event_type,
        tags: &event.tags[..],
        data: raw,
        data_base64: raw.is_none().then(|| B64.encode(data)),
        metadata: &event.metadata,
        id: event.id,
    };
    // Serialising strings, a raw value and a map of strings into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

/// Appends the line of a state entry to `out`.
pub fn write_state(out: &mut Vec<u8>, entry: &StateEntry) {
    let line = StateLine {
        consumer: entry.consumer.clone(),
        key: B64.encode(&entry.key),
        value: B64.encode(&entry.value),
    };
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}

/// Appends the header or trailer line to `out`.
pub fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_ok() {
        out.push(b'\n');
    }
}

/// One parsed line.
#[derive(Debug)]
pub enum Line {
    /// The header.
    Header(Header),
    /// An event and its position in the source store.
    Event(Position, Event),
    /// A consumer's state entry.
    State(StateEntry),
    /// The trailer.
    Trailer(Trailer),
}

/// Parses one line (without its `\n`); `number` is 1-based, for the error.
pub fn parse_line(number: u64, line: &[u8]) -> Result<Line, TransferError> {
    let bad = |reason: String| TransferError::Format {
        line: number,
        reason,
    };
    if line.starts_with(EVENT_PREFIX) {
        let e: EventIn<'_> = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let data: Vec<u8> = match (e.data, e.data_base64) {
            (Some(raw), None) => raw.get().as_bytes().to_vec(),
            (None, Some(b)) => B64
                .decode(b.as_bytes())
                .map_err(|e| bad(format!("data_base64: {e}")))?,
            (None, None) => return Err(bad("an event needs data or data_base64".into())),
            (Some(_), Some(_)) => {
                return Err(bad("an event has either data or data_base64".into()));
            }
        };
        let mut event = Event::new(e.event_type, data).tags(e.tags);
        event.metadata = e.metadata.into();
        event.id = e.id;
        dcb_core::limits::validate_event(&event).map_err(|e| bad(e.to_string()))?;
        return Ok(Line::Event(e.position, event));
    }
    if line.starts_with(STATE_PREFIX) {
        let s: StateLine = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        let key = B64
            .decode(s.key.as_bytes())
            .map_err(|e| bad(format!("state key: {e}")))?;
        let value = B64
            .decode(s.value.as_bytes())
            .map_err(|e| bad(format!("state value: {e}")))?;
        dcb_core::limits::validate_consumer(&s.consumer).map_err(|e| bad(e.to_string()))?;
        dcb_core::limits::validate_state_write(&key, Some(&value))
            .map_err(|e| bad(e.to_string()))?;
        return Ok(Line::State(StateEntry {
            consumer: s.consumer,
            key,
            value,
        }));
    }
    if line.starts_with(HEADER_PREFIX) {
        let h: Header = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        return Ok(Line::Header(h));
    }
    if line.starts_with(TRAILER_PREFIX) {
        let t: Trailer = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        return Ok(Line::Trailer(t));
    }
    Err(bad("not a line of a fairway export".into()))
}

/// The trailer's checksum text of a CRC.
pub fn crc_text(crc: u32) -> String {
    format!("{crc:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(data: &[u8]) -> (String, Event) {
        let e = Event::new("T", data.to_vec())
            .tag("a:1")
            .meta("k", "v")
            .with_id(Uuid::from_u128(7));
        let mut out = Vec::new();
        write_event(&mut out, Position::from_u64(3), &e);
        let text = String::from_utf8(out.clone()).unwrap_or_default();
        match parse_line(1, &out[..out.len() - 1]) {
            Ok(Line::Event(p, back)) => {
                assert_eq!(p, Position::from_u64(3));
                (text, back)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn payloads_read_back_byte_for_byte() {
        for data in [
            &br#"{"a":1,"b":[true,null]}"#[..],
            b"{ \"spaced\" : 1 }",
            b" 1",
            b"{\"a\":\n1}",
            b"\x00\xff not json",
            b"",
            b"\"text\"",
        ] {
            let (text, back) = round_trip(data);
            assert_eq!(&*back.data, data, "{text}");
            assert_eq!(back.metadata.get("k").map(String::as_str), Some("v"));
            assert_eq!(back.id, Some(Uuid::from_u128(7)));
        }
        let (text, _) = round_trip(br#"{"a":1}"#);
        assert!(text.contains(r#""data":{"a":1}"#), "{text}");
        let (text, _) = round_trip(b" 1");
        assert!(text.contains("data_base64"), "{text}");
    }

    #[test]
    fn lines_of_unknown_shape_are_typed_errors() {
        for line in [
            &b"{}"[..],
            b"{\"position\":\"1\"}",
            b"{\"position\":\"1\",\"type\":\"T\",\"tags\":[],\"data\":1,\"extra\":2}",
            b"{\"position\":\"1\",\"type\":\"\",\"tags\":[],\"data\":1}",
            b"{\"position\":\"1\",\"type\":\"T\",\"tags\":[],\"data_base64\":\"!!\"}",
            b"{\"consumer\":\"v\",\"key\":\"\",\"value\":\"\"}",
        ] {
            assert!(
                matches!(
                    parse_line(4, line),
                    Err(TransferError::Format { line: 4, .. })
                ),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
