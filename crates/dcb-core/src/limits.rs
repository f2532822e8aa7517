//! Input limits, identical on every backend, and the validation that enforces them.
//!
//! Every limit is checked before anything is written; a violation is an
//! [`InputError`] and the store is unchanged. Every backend enforces exactly these limits. They
//! keep each stored value inside FoundationDB's 100 KB and each batch inside its 65 536 events per
//! versionstamp. One more bound is backend-specific: the KV engine (FoundationDB) also caps the
//! *transaction* size (events plus their index keys, default 9 MB), so an extreme batch within
//! these limits (thousands of events each with dozens of long tags) can still be rejected there
//! with `InputError::TooLong { field: "transaction", .. }` — again before anything is written.

use std::collections::HashSet;

use crate::{AppendCondition, AppendRequest, Event, InputError, Query, ReadOptions};

/// Longest event type, in bytes.
pub const MAX_TYPE_LEN: usize = 256;
/// Longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 256;
/// Most tags on one event.
pub const MAX_TAGS_PER_EVENT: usize = 64;
/// Largest event data, in bytes (64 KiB). Larger payloads are rejected, never split.
pub const MAX_DATA_LEN: usize = 64 * 1024;
/// Largest metadata of one event, keys and values summed, in bytes.
pub const MAX_METADATA_LEN: usize = 4 * 1024;
/// Most events in one append.
pub const MAX_EVENTS_PER_APPEND: usize = 10_000;
/// Largest append, summed over its events' type, tags, data and metadata, in bytes (4 MiB).
pub const MAX_APPEND_BYTES: usize = 4 * 1024 * 1024;
/// Most append conditions on one append.
pub const MAX_CONDITIONS: usize = 16;
/// Most items in one query (public DCB conformance suites expect at least 128).
pub const MAX_QUERY_ITEMS: usize = 128;
/// Most types, and most tags, in one query item.
pub const MAX_ITEM_TERMS: usize = 64;
/// Longest consumer name (checkpoints and consumer state), in bytes.
pub const MAX_CONSUMER_LEN: usize = 128;
/// Longest consumer-state key, in bytes.
pub const MAX_STATE_KEY_LEN: usize = 1024;
/// Largest consumer-state value, in bytes (64 KiB).
pub const MAX_STATE_VALUE_LEN: usize = 64 * 1024;
/// Most writes in one consumer-state commit.
pub const MAX_STATE_WRITES: usize = 10_000;

fn check_name(field: &'static str, s: &str, max: usize) -> Result<(), InputError> {
    if s.is_empty() {
        return Err(InputError::Empty { field });
    }
    if s.len() > max {
        return Err(InputError::TooLong {
            field,
            len: s.len(),
            max,
        });
    }
    if s.chars().any(char::is_control) {
        return Err(InputError::ControlCharacter { field });
    }
    Ok(())
}

/// The size an event counts for against [`MAX_APPEND_BYTES`].
pub fn event_size(event: &Event) -> usize {
    event.event_type.len()
        + event.tags.iter().map(|t| t.len()).sum::<usize>()
        + event.data.len()
        + event
            .metadata
            .entries()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// Checks one event against the limits.
pub fn validate_event(event: &Event) -> Result<(), InputError> {
    check_name("type", &event.event_type, MAX_TYPE_LEN)?;
    if event.tags.len() > MAX_TAGS_PER_EVENT {
        return Err(InputError::TooMany {
            field: "tags",
            count: event.tags.len(),
            max: MAX_TAGS_PER_EVENT,
        });
    }
    let mut seen = HashSet::with_capacity(event.tags.len());
    for tag in &event.tags {
        check_name("tag", tag, MAX_TAG_LEN)?;
        if !seen.insert(tag.as_str()) {
            return Err(InputError::DuplicateTag(tag.to_string()));
        }
    }
    if event.data.len() > MAX_DATA_LEN {
        return Err(InputError::TooLong {
            field: "data",
            len: event.data.len(),
            max: MAX_DATA_LEN,
        });
    }
    let meta: usize = event
        .metadata
        .entries()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if meta > MAX_METADATA_LEN {
        return Err(InputError::TooLong {
            field: "metadata",
            len: meta,
            max: MAX_METADATA_LEN,
        });
    }
    Ok(())
}

/// Checks a query against the limits (an empty item list is an error).
pub fn validate_query(query: &Query) -> Result<(), InputError> {
    let Query::Items(items) = query else {
        return Ok(());
    };
    if items.is_empty() {
        return Err(InputError::EmptyQuery);
    }
    if items.len() > MAX_QUERY_ITEMS {
        return Err(InputError::TooMany {
            field: "query items",
            count: items.len(),
            max: MAX_QUERY_ITEMS,
        });
    }
    for item in items {
        if item.types.len() > MAX_ITEM_TERMS {
            return Err(InputError::TooMany {
                field: "query types",
                count: item.types.len(),
                max: MAX_ITEM_TERMS,
            });
        }
        if item.tags.len() > MAX_ITEM_TERMS {
            return Err(InputError::TooMany {
                field: "query tags",
                count: item.tags.len(),
                max: MAX_ITEM_TERMS,
            });
        }
        for t in &item.types {
            check_name("query type", t, MAX_TYPE_LEN)?;
        }
        for t in &item.tags {
            check_name("query tag", t, MAX_TAG_LEN)?;
        }
    }
    Ok(())
}

/// Checks read options (a `limit` of zero is allowed and returns nothing).
pub fn validate_read(query: &Query, _options: &ReadOptions) -> Result<(), InputError> {
    validate_query(query)
}

/// Checks a consumer name.
pub fn validate_consumer(consumer: &str) -> Result<(), InputError> {
    check_name("consumer", consumer, MAX_CONSUMER_LEN)
}

/// Checks a whole append request: events, their ids, sizes, conditions and tracking.
pub fn validate_append(request: &AppendRequest) -> Result<(), InputError> {
    let events = &request.events;
    if events.is_empty() {
        return Err(InputError::EmptyAppend);
    }
    if events.len() > MAX_EVENTS_PER_APPEND {
        return Err(InputError::TooMany {
            field: "events",
            count: events.len(),
            max: MAX_EVENTS_PER_APPEND,
        });
    }
    let mut total = 0usize;
    let mut ids = HashSet::new();
    for event in events {
        validate_event(event)?;
        total += event_size(event);
        if let Some(id) = event.id
            && !ids.insert(id)
        {
            return Err(InputError::DuplicateId(id));
        }
    }
    if total > MAX_APPEND_BYTES {
        return Err(InputError::TooLong {
            field: "append",
            len: total,
            max: MAX_APPEND_BYTES,
        });
    }
    if request.conditions.len() > MAX_CONDITIONS {
        return Err(InputError::TooMany {
            field: "conditions",
            count: request.conditions.len(),
            max: MAX_CONDITIONS,
        });
    }
    for AppendCondition {
        fail_if_events_match,
        ..
    } in &request.conditions
    {
        validate_query(fail_if_events_match)?;
    }
    if let Some(t) = &request.tracking {
        validate_consumer(&t.consumer)?;
    }
    Ok(())
}

/// Checks a consumer-state key and value.
pub fn validate_state_write(key: &[u8], value: Option<&[u8]>) -> Result<(), InputError> {
    if key.is_empty() {
        return Err(InputError::Empty { field: "state key" });
    }
    if key.len() > MAX_STATE_KEY_LEN {
        return Err(InputError::TooLong {
            field: "state key",
            len: key.len(),
            max: MAX_STATE_KEY_LEN,
        });
    }
    if let Some(v) = value
        && v.len() > MAX_STATE_VALUE_LEN
    {
        return Err(InputError::TooLong {
            field: "state value",
            len: v.len(),
            max: MAX_STATE_VALUE_LEN,
        });
    }
    Ok(())
}
