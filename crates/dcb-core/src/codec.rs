//! The stored form of an event, shared by every persistent backend.
//!
//! Format version 1: one version byte (`1`) followed by a postcard encoding of
//! [`StoredEvent`]. Unknown versions and undecodable bytes are [`StoreError::Corrupted`], never a
//! panic.
//!
//! [`decode_event_bytes`] is the zero-copy decode: the event's data, and a type or tag longer
//! than [`Text::INLINE`], are slices of the record's own [`Bytes`]; shorter strings are copied
//! into the event (no per-field allocation either way; only the tag list and any metadata are
//! allocated). [`decode_keys`] borrows the indexed fields for index rebuilds.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fields::SharedTags;
use crate::{Event, Metadata, Position, SequencedEvent, StoreError, Tags, Text};

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
        metadata: event.metadata.entries().collect(),
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
    keys_of(record_body(bytes)?).map_err(undecodable)
}

fn keys_of(body: &[u8]) -> Result<EventKeys<'_>, &'static str> {
    let mut r = Reader::new(body);
    let event_type = r.str()?;
    let n = r.len()?;
    let mut tags = Vec::with_capacity(n.min(crate::limits::MAX_TAGS_PER_EVENT));
    for _ in 0..n {
        tags.push(r.str()?);
    }
    r.span()?;
    for _ in 0..r.len()? {
        r.str()?;
        r.str()?;
    }
    let id = r.id()?;
    r.u32()?;
    r.u32()?;
    Ok(EventKeys {
        event_type,
        tags,
        id,
    })
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

/// Decodes a record written by [`encode_event`] without copying its buffer: the event's data,
/// and a type or tag longer than [`Text::INLINE`], are slices of `record` ([`Bytes::slice`]), so
/// they share (and keep alive) its buffer; shorter strings are copied into the event.
///
/// The record is read field by field in postcard's wire form (LEB128 lengths and integers, raw
/// bytes), without serde: this is the hot path of every read. It accepts exactly what postcard
/// accepts for its `RecordV1` (a test compares the two on valid, damaged and random records).
pub fn decode_event_bytes(record: &Bytes) -> Result<StoredEvent, StoreError> {
    let body = record_body(record)?;
    event_of(record, body, None).map_err(undecodable)
}

/// Decodes a record as [`decode_event_bytes`] does, into the event at `position`: the read path
/// of a store, which builds the [`SequencedEvent`] it hands out in place.
#[inline]
pub fn decode_sequenced(position: Position, record: &Bytes) -> Result<SequencedEvent, StoreError> {
    let body = record_body(record)?;
    match event_of(record, body, None) {
        Ok(stored) => Ok(SequencedEvent {
            position,
            event: stored.event,
        }),
        Err(what) => Err(undecodable(what)),
    }
}

/// Records decoded together by [`decode_sequenced_batch`] at most: the events of a batch share
/// one list of their tags, so that one event kept alive keeps at most this many events' tags.
pub const BATCH: usize = 32;

/// Decodes `records` as [`decode_sequenced`] does each one, appending the events to `out`, with
/// one list of tags shared by all of them (see [`Tags`]): no allocation per event for its tags.
/// Give it at most [`BATCH`] records; a longer batch only shares one list among more events.
///
/// On a record that does not decode, the events before it are in `out` and the error (naming
/// the record's position) is returned; the records after it are not decoded.
pub fn decode_sequenced_batch(
    records: impl IntoIterator<Item = (Position, Bytes)>,
    out: &mut impl EventSink,
) -> Result<(), StoreError> {
    // Each record is a buffer of its own.
    let (positions, buffers): (Vec<Position>, Vec<Bytes>) = records.into_iter().unzip();
    let spans = positions
        .into_iter()
        .zip(&buffers)
        .enumerate()
        .map(|(i, (position, record))| (position, i, 0..record.len()));
    decode_sequenced_spans(&buffers, spans, out)
}

/// Decodes records that lie in shared buffers as [`decode_sequenced_batch`] does: each of
/// `records` is a position, the index of its buffer in `buffers` and the record's byte range
/// there. The events' data and long strings are slices of those buffers (short strings are
/// copied into the events, see [`Text::from_utf8_within`]), and the records themselves are never
/// handles of their own: a store that fetched many records into one buffer touches that
/// buffer's reference count only for the fields it hands out. Give it at most [`BATCH`]
/// records. A buffer index or range outside `buffers` is a record that does not decode.
pub fn decode_sequenced_spans(
    buffers: &[Bytes],
    records: impl IntoIterator<Item = (Position, usize, Range<usize>)>,
    out: &mut impl EventSink,
) -> Result<(), StoreError> {
    let first = out.len();
    let mut batch = Batch {
        tags: Vec::new(),
        spans: Vec::with_capacity(BATCH),
        buffers,
        buffer: None,
        current: 0,
        eager: false,
        last_type: Text::new(),
    };
    let mut failed = None;
    for (position, index, range) in records {
        let at = range.start;
        batch.current = index;
        let Some((buffer, record)) = buffers.get(index).and_then(|b| Some((b, b.get(range)?)))
        else {
            failed = Some(undecodable(ENDS_EARLY).at_position(position));
            break;
        };
        let decoded = match record.split_first() {
            Some((&RECORD_VERSION, body)) => event_in(buffer, at, body, Some(&mut batch)),
            Some(_) | None => Err(""),
        };
        match decoded {
            Ok(stored) => out.push(SequencedEvent {
                position,
                event: stored.event,
            }),
            Err(what) => {
                failed = Some(batch_failure(position, record, what));
                break;
            }
        }
    }
    let shared = match batch.buffer.and_then(|b| buffers.get(b)) {
        Some(buffer) if !batch.eager => SharedTags::stored(buffer.clone(), batch.spans),
        _ => SharedTags::new(batch.tags),
    };
    out.each_from(first, |e| e.event.tags.attach(&shared));
    failed.map_or(Ok(()), Err)
}

/// Where [`decode_sequenced_batch`] appends its events: a `VecDeque` (a stream's queue) or a
/// `Vec` (a caller's batch, see [`crate::ReadStream::next_batch`]).
pub trait EventSink {
    /// How many events it holds.
    fn len(&self) -> usize;
    /// Whether it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends one event at the end.
    fn push(&mut self, event: SequencedEvent);
    /// Calls `f` on every event from index `first` on.
    fn each_from(&mut self, first: usize, f: impl FnMut(&mut SequencedEvent));
}

impl EventSink for VecDeque<SequencedEvent> {
    #[inline]
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
    #[inline]
    fn push(&mut self, event: SequencedEvent) {
        self.push_back(event);
    }
    #[inline]
    fn each_from(&mut self, first: usize, f: impl FnMut(&mut SequencedEvent)) {
        self.range_mut(first..).for_each(f);
    }
}

impl EventSink for Vec<SequencedEvent> {
    #[inline]
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline]
    fn push(&mut self, event: SequencedEvent) {
        Vec::push(self, event);
    }
    #[inline]
    fn each_from(&mut self, first: usize, f: impl FnMut(&mut SequencedEvent)) {
        self.get_mut(first..).into_iter().flatten().for_each(f);
    }
}

/// The error of a record of a batch that did not decode (out of the decoding loop, which it
/// would otherwise make longer): a missing or unknown version byte is `record_body`'s error, as
/// elsewhere; anything else is what `event_of` found.
#[cold]
#[inline(never)]
fn batch_failure(position: Position, record: &[u8], what: &str) -> StoreError {
    match record_body(record) {
        Err(e) => e,
        Ok(_) => undecodable(what),
    }
    .at_position(position)
}

/// The event of `record`, whose body (after the version byte) is `body`. With `shared` (the
/// batch it is decoded in), its tags are pushed onto the batch's list and the event's [`Tags`]
/// are pending (see [`Tags::pending`]), and a type equal to the one before is that one again;
/// without, the event gets a list of its own.
#[inline(always)]
fn event_of(
    record: &Bytes,
    body: &[u8],
    shared: Option<&mut Batch<'_>>,
) -> Result<StoredEvent, &'static str> {
    event_in(record, 0, body, shared)
}

/// What the records of one batch decode into together: one list of their tags (see
/// [`SharedTags`]) and the type of the record before. While every tag so far lies in one
/// buffer (the records of a scan's step do), the list is their byte ranges there, checked, and
/// the strings are built only when one is looked at ([`SharedTags::stored`]); the first tag in
/// another buffer (records from the recent-records cache are a buffer each) builds them.
struct Batch<'a> {
    /// The tags so far as strings, once they lie in more than one buffer (`eager`).
    tags: Vec<Text>,
    /// Until then, the tags so far as byte ranges of `buffers[buffer]`, checked.
    spans: Vec<(u32, u32)>,
    buffers: &'a [Bytes],
    buffer: Option<usize>,
    /// The buffer of the record being decoded.
    current: usize,
    eager: bool,
    last_type: Text,
}

impl Batch<'_> {
    /// Tags pushed so far.
    #[inline(always)]
    fn len(&self) -> usize {
        if self.eager {
            self.tags.len()
        } else {
            self.spans.len()
        }
    }

    /// Pushes the tag at `range` of the current record's buffer `buffer`, checked.
    #[inline(always)]
    fn push_tag(&mut self, buffer: &Bytes, range: Range<usize>) -> Result<(), &'static str> {
        if !self.eager && self.buffer.is_none_or(|b| b == self.current) {
            let bytes = buffer.get(range.clone()).ok_or(NOT_UTF8)?;
            if !valid_utf8(bytes) {
                return Err(NOT_UTF8);
            }
            if let (Ok(a), Ok(b)) = (u32::try_from(range.start), u32::try_from(range.end)) {
                self.buffer = Some(self.current);
                self.spans.push((a, b));
                return Ok(());
            }
        }
        if !self.eager {
            self.build_so_far();
        }
        self.tags
            .push(Text::from_utf8_within(buffer, range).ok_or(NOT_UTF8)?);
        Ok(())
    }

    /// Builds the tags so far into strings: the batch's tags lie in more than one buffer.
    #[cold]
    #[inline(never)]
    fn build_so_far(&mut self) {
        self.eager = true;
        self.tags.reserve(BATCH);
        if let Some(buffer) = self.buffer.and_then(|b| self.buffers.get(b)) {
            self.tags
                .extend(crate::fields::texts_at(buffer, self.spans.drain(..)));
        }
    }
}

/// [`event_of`] for a record that starts at byte `at` of `buffer` (`body` is the record after
/// its version byte): its data and long strings are slices of `buffer`.
#[inline(always)]
fn event_in(
    buffer: &Bytes,
    at: usize,
    body: &[u8],
    mut shared: Option<&mut Batch<'_>>,
) -> Result<StoredEvent, &'static str> {
    let mut r = Reader::new(body);
    // `body` is `buffer[at + 1..]`: a span of `body` is the same span of `buffer` shifted by
    // `at + 1`.
    let within = |(a, b): (usize, usize)| at + a + 1..at + b + 1;
    let share = |span| buffer.slice(within(span));
    // Short strings are copied into the event, longer ones are slices of the buffer.
    let text = |span| Text::from_utf8_within(buffer, within(span)).ok_or(NOT_UTF8);
    let span = r.span()?;
    // Events read together are mostly of a few types: a type with the bytes of the one before
    // is that one again (checked once, a copy or a shared clone). In a batch the type is the
    // batch's `last_type`, cloned only where the event is built: cloned here, the copy went
    // through the stack and the event's build waited on its reload (a fifth of a scan's
    // decoding).
    let new_type = match &mut shared {
        Some(batch) if body.get(span.0..span.1) == Some(batch.last_type.as_bytes()) => None,
        Some(batch) => {
            batch.last_type = text(span)?;
            None
        }
        None => Some(text(span)?),
    };
    let n = r.len()?;
    let tags = match &mut shared {
        Some(batch) => {
            let start = batch.len();
            for _ in 0..n {
                batch.push_tag(buffer, within(r.span()?))?;
            }
            Tags::pending(start, batch.len())
        }
        None if n == 1 => Tags::one(text(r.span()?)?),
        None => {
            let mut tags = Vec::with_capacity(n.min(crate::limits::MAX_TAGS_PER_EVENT));
            for _ in 0..n {
                tags.push(text(r.span()?)?);
            }
            Tags::from(tags)
        }
    };
    let (a, b) = r.span()?;
    let data = if a == b { Bytes::new() } else { share((a, b)) };
    let mut metadata = Metadata::default();
    let entries = r.len()?;
    if entries > 0 {
        metadata = metadata_in(buffer, at, &mut r, entries)?;
    }
    let id = r.id()?;
    let batch_index = r.u32()?;
    let batch_len = r.u32()?;
    let event_type = match (new_type, shared) {
        (Some(t), _) => t,
        (None, Some(batch)) => batch.last_type.clone(),
        // Not reached: without a batch the type is `Some`.
        (None, None) => Text::new(),
    };
    Ok(StoredEvent {
        event: Event {
            event_type,
            tags,
            data,
            metadata,
            id,
        },
        batch_index,
        batch_len,
    })
}

/// The `entries` metadata entries of a record at `r` (a reader of `buffer[at + 1..]`), checked
/// (valid UTF-8): in strictly ascending key order (as every record is written), held as the
/// record stores them, a slice of `buffer` (see [`Metadata`]); otherwise (a record written some
/// other way) a map of them, a later key winning. Out of line: most events have none.
#[inline(never)]
fn metadata_in(
    buffer: &Bytes,
    at: usize,
    r: &mut Reader<'_>,
    entries: usize,
) -> Result<Metadata, &'static str> {
    let start = r.at;
    let mut sorted = true;
    // The keys are compared as bytes (the order of `str`); each string is checked as UTF-8
    // without being made a `str` (see `valid_utf8`).
    let mut last: Option<&[u8]> = None;
    for _ in 0..entries {
        let k = r.utf8()?;
        r.utf8()?;
        sorted &= last.is_none_or(|l| l < k);
        last = Some(k);
    }
    let span = r.buf.get(start..r.at).ok_or(ENDS_EARLY)?;
    if !sorted {
        return Ok(stored_entries(span, entries).collect());
    }
    Ok(Metadata::stored(
        buffer.slice(at + start + 1..at + r.at + 1),
        entries,
    ))
}

/// The entries a record stores for its metadata: `bytes` holds `len` of them, each a key then
/// a value, every string its length (a postcard varint) then its bytes. Ends early at anything
/// that is not that (a decoded record's entries were checked).
pub(crate) fn stored_entries(bytes: &[u8], len: usize) -> StoredEntries<'_> {
    StoredEntries {
        r: Reader::new(bytes),
        left: len,
    }
}

/// The iterator of [`stored_entries`].
pub(crate) struct StoredEntries<'a> {
    r: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for StoredEntries<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        self.left = self.left.checked_sub(1)?;
        match (self.r.str(), self.r.str()) {
            (Ok(k), Ok(v)) => Some((k, v)),
            _ => {
                self.left = 0;
                None
            }
        }
    }
}

/// Whether `bytes` are valid UTF-8: an ASCII check first (a few word-wide loads for the short
/// strings of tags and metadata, where `str::from_utf8` goes byte by byte), the full check only
/// for strings that are not ASCII.
#[inline(always)]
fn valid_utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

const ENDS_EARLY: &str = "the record ends early";
const TOO_LARGE: &str = "an integer is too large";
const NOT_UTF8: &str = "a string is not valid UTF-8";

fn undecodable(what: &str) -> StoreError {
    StoreError::Corrupted(format!("undecodable event record: {what}"))
}

/// A cursor over a postcard-encoded record body. Its errors are static strings, so that the
/// hot path moves no large error values.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    #[inline(always)]
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.buf.get(self.at).ok_or(ENDS_EARLY)?;
        self.at += 1;
        Ok(b)
    }

    /// A LEB128 integer of at most `max_bytes` bytes whose last byte is at most `max_last`
    /// (postcard's rule: a value must fit its type).
    #[inline(always)]
    fn varint(&mut self, max_bytes: usize, max_last: u8) -> Result<u64, &'static str> {
        let b = self.byte()?;
        if b & 0x80 == 0 {
            return Ok(u64::from(b));
        }
        let mut v = u64::from(b & 0x7f);
        for i in 1..max_bytes {
            let b = self.byte()?;
            if i + 1 == max_bytes && b > max_last {
                return Err(TOO_LARGE);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(TOO_LARGE)
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, &'static str> {
        // 5 bytes: 4 * 7 bits, then at most 4 more bits.
        u32::try_from(self.varint(5, 0x0f)?).map_err(|_| TOO_LARGE)
    }

    /// A length (postcard's `usize`: a u64 varint of at most 10 bytes).
    #[inline(always)]
    fn len(&mut self) -> Result<usize, &'static str> {
        usize::try_from(self.varint(10, 0x01)?).map_err(|_| TOO_LARGE)
    }

    /// The byte span of a length-prefixed byte string.
    #[inline(always)]
    fn span(&mut self) -> Result<(usize, usize), &'static str> {
        let n = self.len()?;
        let a = self.at;
        let b = a
            .checked_add(n)
            .filter(|&b| b <= self.buf.len())
            .ok_or(ENDS_EARLY)?;
        self.at = b;
        Ok((a, b))
    }

    fn str(&mut self) -> Result<&'a str, &'static str> {
        let (a, b) = self.span()?;
        std::str::from_utf8(&self.buf[a..b]).map_err(|_| NOT_UTF8)
    }

    /// A length-prefixed string's bytes, checked to be UTF-8 (as [`Reader::str`], without
    /// making them a `str`).
    #[inline(always)]
    fn utf8(&mut self) -> Result<&'a [u8], &'static str> {
        let (a, b) = self.span()?;
        let bytes = &self.buf[a..b];
        if valid_utf8(bytes) {
            Ok(bytes)
        } else {
            Err(NOT_UTF8)
        }
    }

    /// An `Option<[u8; 16]>`: tag 0 (none) or 1 then the 16 bytes. The id is read as one
    /// `u128`: an `Option<Uuid>` built byte-wise in memory and then copied costs a stalled load
    /// on every record.
    #[inline(always)]
    fn id(&mut self) -> Result<Option<Uuid>, &'static str> {
        match self.byte()? {
            0 => Ok(None),
            1 => {
                let a = self.at;
                let raw: [u8; 16] = self
                    .buf
                    .get(a..a + 16)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(ENDS_EARLY)?;
                self.at = a + 16;
                Ok(Some(Uuid::from_u128(u128::from_be_bytes(raw))))
            }
            _ => Err("an id is neither absent nor present"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_out_of_key_order_decodes_as_postcard_does() {
        let rec = RecordV1 {
            event_type: "T",
            tags: vec![],
            data: b"{}",
            metadata: vec![("b", "1"), ("a", "2"), ("a", "3")],
            id: None,
            batch_index: 0,
            batch_len: 1,
        };
        let mut bytes = vec![RECORD_VERSION];
        bytes.extend(postcard::to_allocvec(&rec).expect("encodes"));
        agrees(&bytes);
        let e = decode_event(&bytes).expect("decodes").event;
        assert_eq!(
            e.metadata.entries().collect::<Vec<_>>(),
            [("a", "3"), ("b", "1")]
        );
        // In order, the same entries are held as stored and read alike.
        let sorted = RecordV1 {
            metadata: vec![("a", "3"), ("b", "1")],
            ..rec
        };
        let mut bytes = vec![RECORD_VERSION];
        bytes.extend(postcard::to_allocvec(&sorted).expect("encodes"));
        agrees(&bytes);
        assert_eq!(
            decode_event(&bytes).expect("decodes").event.metadata,
            e.metadata
        );
    }

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
        let e = Event::new(
            "BookBorrowedByAReaderOfTheLibrary",
            br#"{"book":42}"#.to_vec(),
        )
        .tag("book:42")
        .tag("reader:7")
        .tag("library:the-one-with-the-long-name")
        .meta("recorded-at", "1")
        .with_id(Uuid::from_u128(9));
        let record = Bytes::from(encode_event(&e, 1, 2));
        let stored = decode_event_bytes(&record);
        let Ok(stored) = stored else {
            panic!("decode failed: {stored:?}");
        };
        assert_eq!(stored.event, e);
        assert_eq!((stored.batch_index, stored.batch_len), (1, 2));
        // Strings longer than `Text::INLINE` and the data are slices of the record; shorter
        // strings are held in the event.
        let inside = record.as_ptr_range();
        let ev = &stored.event;
        let long = [&ev.event_type, &ev.tags[2]];
        for p in long.iter().map(|t| t.as_ptr()).chain([ev.data.as_ptr()]) {
            assert!(inside.contains(&p), "a field was copied out of the record");
        }
        assert!(long.iter().all(|t| !t.is_inline()));
        for short in &ev.tags[..2] {
            assert!(short.is_inline() && !inside.contains(&short.as_ptr()));
        }
        // The read path's form: the same event, at the position given.
        let at = Position::from_u64(5);
        let sequenced = decode_sequenced(at, &record).map(|s| (s.position, s.event));
        assert_eq!(sequenced.ok(), Some((at, e)));
        assert!(decode_sequenced(at, &record.slice(..record.len() - 1)).is_err());
        // The slices keep the buffer alive on their own.
        drop(record);
        assert_eq!(stored.event.tags[1], "reader:7");
        assert_eq!(stored.event.tags[2], "library:the-one-with-the-long-name");
    }

    /// Event `i` of the batch tests: of type `T0`-`T2`, 2 bytes (held in the event) for even `i`
    /// and 27 (a slice of the buffer) for odd, with `i` bytes of data and no tags.
    fn typed_event(i: u64) -> Event {
        let long = if i.is_multiple_of(2) {
            ""
        } else {
            "-of-a-long-name-really"
        };
        Event::new(format!("T{}{long}", i % 3), vec![i as u8; i as usize])
    }

    #[test]
    fn a_batch_decodes_as_each_record_alone_and_its_events_share_one_tag_list() {
        let events: Vec<Event> = (0..40u64)
            .map(|i| {
                let mut e = typed_event(i);
                for t in 0..i % 4 {
                    e = e.tag(format!("t{i}-{t}"));
                }
                if i % 5 == 0 {
                    e = e.meta("k", "v");
                }
                e
            })
            .collect();
        let records: Vec<(Position, Bytes)> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let at = Position::from_u64(100 + i as u64);
                (at, Bytes::from(encode_event(e, 0, 1)))
            })
            .collect();
        let mut out = VecDeque::new();
        out.push_back(SequencedEvent {
            position: Position::from_u64(1),
            event: Event::new("already there", Vec::new()).tag("kept"),
        });
        let r = decode_sequenced_batch(records.iter().cloned(), &mut out);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(out.len(), 41);
        assert_eq!(
            out[0].event.tags,
            ["kept"],
            "what was in `out` is left as it was"
        );
        for ((e, (at, record)), got) in events.iter().zip(&records).zip(out.iter().skip(1)) {
            assert_eq!(&got.event, e);
            assert_eq!(got.position, *at);
            let alone = decode_sequenced(*at, record).map(|s| s.event);
            assert_eq!(alone.as_ref().ok(), Some(&got.event));
        }
        // One list: the tags of event i + 1 follow those of event i in it.
        let (two, three) = (&out[3].event.tags, &out[4].event.tags);
        assert_eq!(
            two.as_ptr_range().end,
            three.as_ptr(),
            "the events share one list"
        );
        // The parts are independent: changing one event's tags changes no other's.
        let mut first = out[4].event.tags.clone();
        first.push("more");
        first[0] = Text::from("changed");
        assert_eq!(out[4].event.tags, ["t3-0", "t3-1", "t3-2"]);
        assert_eq!(out[3].event.tags, ["t2-0", "t2-1"]);
        assert_eq!(first, ["changed", "t3-1", "t3-2", "more"]);
    }

    #[test]
    fn a_batch_stops_at_a_bad_record_and_names_its_position() {
        let good = Bytes::from(encode_event(&Event::new("A", vec![1]).tag("x"), 0, 1));
        let records = vec![
            (Position::from_u64(7), good.clone()),
            (Position::from_u64(8), good.clone()),
            (Position::from_u64(9), good.slice(..good.len() - 2)),
            (Position::from_u64(10), good),
        ];
        let mut out = VecDeque::new();
        match decode_sequenced_batch(records, &mut out) {
            Err(StoreError::Corrupted(m)) => assert!(m.contains("position 9"), "{m}"),
            other => panic!("{other:?}"),
        }
        let positions: Vec<u64> = out.iter().filter_map(|e| e.position.as_u64()).collect();
        assert_eq!(
            positions,
            [7, 8],
            "the events before the bad record, nothing after"
        );
        assert!(out.iter().all(|e| e.event.tags == ["x"]));
    }

    /// Runs of one type in a batch are decoded once per run; each event still has its own
    /// type, equal to decoding its record alone, whatever the runs and lengths.
    #[test]
    fn runs_of_one_type_in_a_batch_decode_as_each_record_alone() {
        let long = "ATypeLongerThanTwentyThreeBytes";
        let types = [
            "A", "A", "A", "Bb", "A", long, long, "Bb", long, "A", "", "A",
        ];
        let events: Vec<Event> = types
            .iter()
            .enumerate()
            .map(|(i, t)| Event::new(*t, vec![i as u8]).tag(format!("t{i}")))
            .collect();
        let (buffers, records) = one_buffer(&events);
        let mut out = Vec::new();
        let r = decode_sequenced_spans(&buffers, records.iter().cloned(), &mut out);
        assert!(r.is_ok(), "{r:?}");
        let got: Vec<&str> = out.iter().map(|e| e.event.event_type.as_str()).collect();
        assert_eq!(got, types);
        for ((e, (at, _, range)), got) in events.iter().zip(&records).zip(&out) {
            assert_eq!(&got.event, e);
            let alone = decode_sequenced(*at, &buffers[0].slice(range.clone()));
            assert_eq!(alone.map(|s| s.event).ok().as_ref(), Some(&got.event));
        }
        // A type that differs from the one before only in its bytes past a valid prefix is
        // checked on its own: invalid UTF-8 there is still corruption.
        let mut bad = encode_event(&Event::new("Ab", Vec::new()), 0, 1);
        let Some(at) = bad.windows(2).position(|w| w == b"Ab") else {
            panic!("the type is in the record")
        };
        bad[at + 1] = 0xff;
        let mut buf = encode_event(&Event::new("Ab", Vec::new()), 0, 1);
        let first = buf.len();
        buf.extend_from_slice(&bad);
        let buffers = vec![Bytes::from(buf)];
        let batch = [
            (Position::from_u64(1), 0, 0..first),
            (Position::from_u64(2), 0, first..buffers[0].len()),
        ];
        let mut out = Vec::new();
        match decode_sequenced_spans(&buffers, batch, &mut out) {
            Err(StoreError::Corrupted(m)) => assert!(m.contains("position 2"), "{m}"),
            other => panic!("expected corruption, got {other:?}"),
        }
        assert_eq!(out.len(), 1);
    }

    /// A read model that keeps the types and tags of the events it saw (as keys, say) and
    /// drops the rest must not keep the buffers they were read from alive: short strings are
    /// held in the value. A long one, or the data, keeps its buffer, as documented.
    #[test]
    fn short_types_and_tags_kept_from_read_events_do_not_keep_their_buffer_alive() {
        let short = Event::new("BookBorrowed", b"{}".to_vec()).tags(["book:42", "reader:7"]);
        let long = Event::new("BookBorrowed", Vec::new()).tag("library:the-one-with-the-long-name");
        for (e, pinned) in [(short, false), (long, true)] {
            let record = encode_event(&e, 0, 1);
            let buffers = vec![Bytes::from([b"junk".as_slice(), &record].concat())];
            let mut out = Vec::new();
            let span = (Position::from_u64(1), 0, 4..4 + record.len());
            let r = decode_sequenced_spans(&buffers, [span], &mut out);
            assert!(r.is_ok(), "{r:?}");
            let kept: Vec<Text> = out
                .drain(..)
                .flat_map(|s| {
                    let mut t = s.event.tags.to_vec();
                    t.push(s.event.event_type);
                    t
                })
                .collect();
            let mut buffers = buffers;
            let Some(buffer) = buffers.pop() else {
                panic!("one buffer")
            };
            assert_eq!(!buffer.is_unique(), pinned, "{kept:?}");
            assert_eq!(kept.len(), e.tags.len() + 1);
        }
    }

    #[test]
    fn records_in_shared_buffers_decode_as_each_record_alone_and_slice_their_buffer() {
        let events: Vec<Event> = (0..20u64)
            .map(|i| {
                let mut e = typed_event(i);
                for t in 0..i % 3 {
                    e = e.tag(format!("t{i}-{t}"));
                }
                e
            })
            .collect();
        // Two buffers, records back to back with a gap of junk between them, as a read fetches
        // them: the first ten in buffer 0, the rest in buffer 1.
        let mut bufs = vec![Vec::new(), Vec::new()];
        let mut records = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let b = usize::from(i >= 10);
            bufs[b].extend_from_slice(b"junk");
            let start = bufs[b].len();
            bufs[b].extend_from_slice(&encode_event(e, 0, 1));
            records.push((Position::from_u64(50 + i as u64), b, start..bufs[b].len()));
        }
        let buffers: Vec<Bytes> = bufs.into_iter().map(Bytes::from).collect();
        let mut out = Vec::new();
        for chunk in records.chunks(7) {
            let r = decode_sequenced_spans(&buffers, chunk.iter().cloned(), &mut out);
            assert!(r.is_ok(), "{r:?}");
        }
        assert_eq!(out.len(), events.len());
        for ((e, (at, b, range)), got) in events.iter().zip(&records).zip(&out) {
            assert_eq!(&got.event, e);
            assert_eq!(got.position, *at);
            let alone = decode_sequenced(*at, &buffers[*b].slice(range.clone()));
            assert_eq!(alone.map(|s| s.event).ok().as_ref(), Some(&got.event));
            let inside = buffers[*b].as_ptr_range();
            let t = &got.event.event_type;
            assert_eq!(inside.contains(&t.as_ptr()), t.len() > Text::INLINE, "{t}");
            assert_eq!(t.is_inline(), t.len() <= Text::INLINE);
            if !got.event.data.is_empty() {
                assert!(inside.contains(&got.event.data.as_ptr()), "data copied");
            }
        }
        // A bad record (cut short), a range past its buffer and a buffer that does not exist
        // each end the batch with an error naming the position, after the events before it.
        let (_, _, first) = records[0].clone();
        let cut = first.start..first.end - 2;
        for bad in [
            (Position::from_u64(9), 0, cut),
            (Position::from_u64(9), 0, first.start..buffers[0].len() + 1),
            (Position::from_u64(9), 2, first.clone()),
        ] {
            let batch = [records[0].clone(), bad, records[1].clone()];
            let before = one_event_then_corruption(&buffers, batch, "position 9");
            assert_eq!(before.event, events[0]);
        }
    }

    /// Decodes `batch`, which must stop at a damaged record with corruption naming `at` (e.g.
    /// "position 9") after exactly one event: that event.
    fn one_event_then_corruption(
        buffers: &[Bytes],
        batch: impl IntoIterator<Item = Span>,
        at: &str,
    ) -> SequencedEvent {
        let mut out = Vec::new();
        match decode_sequenced_spans(buffers, batch, &mut out) {
            Err(StoreError::Corrupted(m)) => assert!(m.contains(at), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            out.len(),
            1,
            "the event before the bad record, nothing after"
        );
        out.remove(0)
    }

    /// A record's position, buffer and range in it.
    type Span = (Position, usize, Range<usize>);

    /// Records of one buffer, back to back: the buffer and each record's span.
    fn one_buffer(events: &[Event]) -> (Vec<Bytes>, Vec<Span>) {
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let start = buf.len();
            buf.extend_from_slice(&encode_event(e, 0, 1));
            spans.push((Position::from_u64(i as u64 + 1), 0, start..buf.len()));
        }
        (vec![Bytes::from(buf)], spans)
    }

    /// The tags of a batch read from one buffer are checked when read and built into strings
    /// at the first look at any of them, which lets go of the buffer; until then the list holds
    /// it (events with no data and a short type: nothing else does).
    #[test]
    fn a_batchs_tags_are_built_at_the_first_look_and_then_let_go_of_their_buffer() {
        let events: Vec<Event> = (0..10u64)
            .map(|i| {
                let e = Event::new("Seen", Vec::new()).tag(format!("reader:{i}"));
                if i % 3 == 0 { e.tag("hot") } else { e }
            })
            .collect();
        for look in ["eq", "len", "clone then iter", "serialize", "to_vec"] {
            let (mut buffers, spans) = one_buffer(&events);
            let mut out = Vec::new();
            let r = decode_sequenced_spans(&buffers, spans, &mut out);
            assert!(r.is_ok(), "{r:?}");
            let Some(buffer) = buffers.pop() else {
                panic!("one buffer")
            };
            assert!(
                !buffer.is_unique(),
                "{look}: the unbuilt list holds the buffer"
            );
            let first = &out[0].event.tags;
            match look {
                "eq" => assert_eq!(*first, ["reader:0", "hot"]),
                "len" => assert_eq!(first.len(), 2),
                "clone then iter" => assert_eq!(first.clone().iter().count(), 2),
                "serialize" => assert_eq!(
                    serde_json::to_string(first).ok().as_deref(),
                    Some(r#"["reader:0","hot"]"#)
                ),
                _ => assert_eq!(first.to_vec(), ["reader:0", "hot"]),
            }
            assert!(
                buffer.is_unique(),
                "{look}: built, the list let go of the buffer"
            );
            for (e, got) in events.iter().zip(&out) {
                assert_eq!(got.event, *e, "{look}");
            }
        }
    }

    #[test]
    fn a_bad_tag_in_a_batch_from_one_buffer_is_corruption_at_its_position() {
        let events: Vec<Event> = ["a:1", "xx", "c:3"]
            .iter()
            .map(|t| Event::new("T", Vec::new()).tag(*t))
            .collect();
        let (buffers, spans) = one_buffer(&events);
        let mut raw = buffers[0].to_vec();
        let bad = &spans[1].2;
        let at = raw[bad.clone()]
            .windows(2)
            .position(|w| w == b"xx")
            .unwrap_or(0);
        raw[bad.start + at] = 0xff;
        let buffers = vec![Bytes::from(raw)];
        let before = one_event_then_corruption(&buffers, spans, "position 2");
        assert_eq!(before.event.tags, ["a:1"]);
    }

    /// Changing the tags of one event of a batch changes that event only.
    #[test]
    fn changing_a_read_events_tags_leaves_the_others_of_its_batch_alone() {
        let events: Vec<Event> = (0..4)
            .map(|i| Event::new("T", Vec::new()).tags([format!("a:{i}"), format!("b:{i}")]))
            .collect();
        let (buffers, spans) = one_buffer(&events);
        let mut out = Vec::new();
        assert!(decode_sequenced_spans(&buffers, spans, &mut out).is_ok());
        out[1].event.tags[0] = Text::from("changed");
        out[2].event.tags.push("more");
        assert_eq!(out[1].event.tags, ["changed", "b:1"]);
        assert_eq!(out[2].event.tags, ["a:2", "b:2", "more"]);
        for i in [0, 3] {
            assert_eq!(out[i].event, events[i]);
        }
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
    fn metadata_and_tags_beyond_ascii_decode_and_invalid_utf8_in_metadata_is_corruption() {
        // The ASCII check is a shortcut: strings that are not ASCII take the full UTF-8 check.
        let mut e = Event::new("A", Vec::new()).tag("zoë").tag("x");
        e.metadata = [("clé", "été"), ("k", "v")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into();
        let good = encode_event(&e, 0, 1);
        let decoded = decode_event(&good).map(|s| s.event);
        assert_eq!(decoded.as_ref().ok(), Some(&e), "{decoded:?}");
        let (buffers, records) = one_buffer(std::slice::from_ref(&e));
        let mut out = Vec::new();
        let r = decode_sequenced_spans(&buffers, records.iter().cloned(), &mut out);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(out.first().map(|s| &s.event), Some(&e));
        // A key, then a value, made invalid UTF-8 (a lone continuation byte, then a lead byte
        // with no continuation).
        for (what, at_byte) in [(&b"cl"[..], 0x80u8), (&b"\xc3\xa9t"[..], 0xc3)] {
            let mut bad = good.clone();
            let Some(at) = bad.windows(what.len()).position(|w| w == what) else {
                panic!("the string is in the record")
            };
            bad[at + what.len() - 1] = at_byte;
            match decode_event(&bad) {
                Err(StoreError::Corrupted(m)) => assert!(m.contains("UTF-8"), "{m}"),
                other => panic!("expected corruption, got {other:?}"),
            }
        }
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

    /// The serde/postcard decoding of the same format: the oracle the hand-written decoder is
    /// checked against.
    fn reference(bytes: &[u8]) -> Option<StoredEvent> {
        let rec: RecordV1<'_> = postcard::from_bytes(record_body(bytes).ok()?).ok()?;
        Some(StoredEvent {
            event: Event {
                event_type: Text::from(rec.event_type.to_owned()),
                tags: rec
                    .tags
                    .into_iter()
                    .map(|t| Text::from(t.to_owned()))
                    .collect(),
                data: Bytes::copy_from_slice(rec.data),
                metadata: rec
                    .metadata
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                id: rec.id.map(Uuid::from_bytes),
            },
            batch_index: rec.batch_index,
            batch_len: rec.batch_len,
        })
    }

    fn agrees(bytes: &[u8]) {
        let ours = decode_event(bytes);
        if let Err(e) = &ours {
            assert!(matches!(e, StoreError::Corrupted(_)), "{e:?}");
        }
        let ours = ours.ok();
        assert_eq!(ours, reference(bytes), "decoders disagree on {bytes:?}");
        let keys = decode_keys(bytes).ok();
        assert_eq!(
            keys.is_some(),
            ours.is_some(),
            "decode_keys disagrees on {bytes:?}"
        );
        if let (Some(k), Some(o)) = (keys, &ours) {
            assert_eq!(k.event_type, o.event.event_type);
            assert!(
                k.tags
                    .iter()
                    .copied()
                    .eq(o.event.tags.iter().map(|t| t.as_str()))
            );
            assert_eq!(k.id, o.event.id);
        }
    }

    #[test]
    fn integers_at_the_edges_decode_as_postcard_does() {
        let e = Event::new("A", vec![7; 200])
            .tag("x")
            .with_id(Uuid::from_u128(1));
        for (i, n) in [(0, 1), (127, 128), (u32::MAX, u32::MAX - 1)] {
            agrees(&encode_event(&e, i, n));
        }
        // A u32 of five bytes whose last byte is too large, an overlong length, a bad option tag.
        agrees(&[1, 1, b'A', 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x10, 0]);
        agrees(&[1, 1, b'A', 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]);
        agrees(&[
            1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        agrees(&[
            1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
        ]);
        agrees(&[1, 1, b'A', 0, 0, 0, 2, 0, 0]);
    }

    use proptest::prelude::prop_assert_eq;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn the_decoder_agrees_with_postcard_on_any_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            let mut b = bytes;
            if let Some(first) = b.first_mut() {
                *first = RECORD_VERSION;
            }
            agrees(&b);
        }

        #[test]
        fn the_decoder_agrees_with_postcard_on_damaged_records(
            ty in "[A-Za-z]{1,12}",
            tags in proptest::collection::vec("[a-z:0-9é]{1,10}", 0..4),
            meta in proptest::collection::btree_map("[a-zé]{1,4}", "[a-zé]{0,4}", 0..3),
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            id in proptest::option::of(proptest::prelude::any::<u128>()),
            at in proptest::prelude::any::<usize>(),
            byte in proptest::prelude::any::<u8>(),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let mut e = Event::new(ty, data).tags(tags);
            e.metadata = meta.into();
            e.id = id.map(Uuid::from_u128);
            let good = encode_event(&e, 3, 9);
            agrees(&good);
            prop_assert_eq!(decode_event(&good).ok().map(|s| s.event), Some(e));
            let mut flipped = good.clone();
            let i = at % flipped.len();
            flipped[i] = byte;
            agrees(&flipped);
            agrees(&good[..cut % (good.len() + 1)]);
        }
    }
}
