//! Events as appended and as read back.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Metadata, Position, Tags, Text};

/// An event to append: a type, a set of tags, opaque data, optional metadata and an optional id.
///
/// Tags form a set: a duplicate tag is rejected at append time with
/// [`InputError::DuplicateTag`](crate::InputError::DuplicateTag). Their order is kept as given.
/// The `id`, when present, makes retries idempotent (see [`EventStore::append`](crate::EventStore::append)).
///
/// Type, tags and data are [`Text`] and [`Bytes`]: an event read from a store points into the
/// record it was decoded from for its data and any type or tag longer than [`Text::INLINE`]
/// (shorter ones are held in the event), and cloning an event copies no buffer.
/// The tags are a [`Tags`] (two words; events read together share one list of tags) and the
/// metadata a [`Metadata`] (one word while empty), so that a [`SequencedEvent`] is 128 bytes: a
/// read hands out millions of them a second, and each is moved a few times on its way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The event type, e.g. `"BookBorrowed"`. Non-empty UTF-8.
    #[serde(rename = "type")]
    pub event_type: Text,
    /// The tags, e.g. `["book:42", "borrower:7"]`. Non-empty strings, no duplicates.
    #[serde(default)]
    pub tags: Tags,
    /// The payload: opaque bytes (the framework stores JSON).
    #[serde(default)]
    pub data: Bytes,
    /// Free-form string metadata (recorded-at time, correlation ids, ...).
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
    /// An optional unique id, for idempotent retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
}

impl Event {
    /// An event of `event_type` carrying `data`, with no tags, metadata or id.
    pub fn new(event_type: impl Into<Text>, data: impl Into<Bytes>) -> Event {
        Event {
            event_type: event_type.into(),
            tags: Tags::new(),
            data: data.into(),
            metadata: Metadata::new(),
            id: None,
        }
    }

    /// Adds one tag.
    pub fn tag(mut self, tag: impl Into<Text>) -> Event {
        self.tags.push(tag);
        self
    }

    /// Adds several tags.
    pub fn tags<I, T>(mut self, tags: I) -> Event
    where
        I: IntoIterator<Item = T>,
        T: Into<Text>,
    {
        self.tags.extend(tags);
        self
    }

    /// Sets one metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Event {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sets the id used for idempotent retries.
    pub fn with_id(mut self, id: Uuid) -> Event {
        self.id = Some(id);
        self
    }

    /// Whether the event carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

/// An event as stored: the event and the position the store gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedEvent {
    /// Where the event sits in the log.
    pub position: Position,
    /// The event as appended.
    pub event: Event,
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;

    /// Up to 128 bytes the compiler moves a value with a few vector instructions; above, each
    /// move through a read's stream is a call to `memcpy` (measured: 12% of a full scan's
    /// consumer thread at 152 bytes).
    #[test]
    fn a_sequenced_event_fits_in_128_bytes() {
        assert_eq!(std::mem::size_of::<SequencedEvent>(), 128);
        assert_eq!(std::mem::size_of::<Tags>(), 16);
        assert_eq!(std::mem::size_of::<Metadata>(), 8);
    }
}
