//! Rules for input limits: each violation is its typed [`InputError`] and writes nothing.

use super::support::*;
use crate::limits::{
    MAX_APPEND_BYTES, MAX_CONDITIONS, MAX_DATA_LEN, MAX_EVENTS_PER_APPEND, MAX_ITEM_TERMS,
    MAX_METADATA_LEN, MAX_QUERY_ITEMS, MAX_TAG_LEN, MAX_TAGS_PER_EVENT, MAX_TYPE_LEN,
};
use crate::{AppendCondition, AppendRequest, Event, InputError, Position, Query, QueryItem};

/// A batch of one valid event followed by `bad`, so atomicity is checked too.
fn with_bad(bad: Event) -> AppendRequest {
    AppendRequest::new(vec![ev("Fine", &["ok"]), bad])
}

/// An empty event type.
pub async fn rejects_empty_type(store: Store) {
    seed_standard(&store).await;
    let err = rejected(&store, with_bad(ev("", &[]))).await;
    assert_eq!(err, InputError::Empty { field: "type" });
}

/// An empty tag.
pub async fn rejects_empty_tag(store: Store) {
    seed_standard(&store).await;
    let err = rejected(&store, with_bad(ev("A", &["ok", ""]))).await;
    assert_eq!(err, InputError::Empty { field: "tag" });
}

/// A type one byte over the limit.
pub async fn rejects_type_too_long(store: Store) {
    seed_standard(&store).await;
    let err = rejected(
        &store,
        with_bad(Event::new("T".repeat(MAX_TYPE_LEN + 1), Vec::new())),
    )
    .await;
    assert_eq!(
        err,
        InputError::TooLong {
            field: "type",
            len: MAX_TYPE_LEN + 1,
            max: MAX_TYPE_LEN
        }
    );
}

/// A tag one byte over the limit (multi-byte characters count in bytes).
pub async fn rejects_tag_too_long(store: Store) {
    seed_standard(&store).await;
    let tag = "é".repeat(MAX_TAG_LEN / 2) + "x";
    let err = rejected(&store, with_bad(Event::new("A", Vec::new()).tag(tag))).await;
    assert_eq!(
        err,
        InputError::TooLong {
            field: "tag",
            len: MAX_TAG_LEN + 1,
            max: MAX_TAG_LEN
        }
    );
}

/// One tag too many on an event.
pub async fn rejects_too_many_tags(store: Store) {
    seed_standard(&store).await;
    let tags: Vec<String> = (0..=MAX_TAGS_PER_EVENT).map(|i| format!("t{i}")).collect();
    let err = rejected(&store, with_bad(Event::new("A", Vec::new()).tags(tags))).await;
    assert_eq!(
        err,
        InputError::TooMany {
            field: "tags",
            count: MAX_TAGS_PER_EVENT + 1,
            max: MAX_TAGS_PER_EVENT
        }
    );
}

/// Data one byte over the limit.
pub async fn rejects_data_too_large(store: Store) {
    seed_standard(&store).await;
    let err = rejected(
        &store,
        with_bad(Event::new("A", vec![0u8; MAX_DATA_LEN + 1])),
    )
    .await;
    assert_eq!(
        err,
        InputError::TooLong {
            field: "data",
            len: MAX_DATA_LEN + 1,
            max: MAX_DATA_LEN
        }
    );
}

/// Metadata (keys and values summed) one byte over the limit.
pub async fn rejects_metadata_too_large(store: Store) {
    seed_standard(&store).await;
    let half = MAX_METADATA_LEN / 2;
    let e = Event::new("A", Vec::new())
        .meta("a", "v".repeat(half))
        .meta("b", "w".repeat(half - 1));
    let err = rejected(&store, with_bad(e)).await;
    assert_eq!(
        err,
        InputError::TooLong {
            field: "metadata",
            len: MAX_METADATA_LEN + 1,
            max: MAX_METADATA_LEN
        }
    );
}

/// One event too many in an append.
pub async fn rejects_too_many_events(store: Store) {
    seed_standard(&store).await;
    let batch: Vec<_> = (0..=MAX_EVENTS_PER_APPEND)
        .map(|_| Event::new("A", Vec::new()))
        .collect();
    let err = rejected(&store, AppendRequest::new(batch)).await;
    assert_eq!(
        err,
        InputError::TooMany {
            field: "events",
            count: MAX_EVENTS_PER_APPEND + 1,
            max: MAX_EVENTS_PER_APPEND
        }
    );
}

/// An append whose events are each valid but whose total size is over the limit.
pub async fn rejects_append_too_large(store: Store) {
    seed_standard(&store).await;
    let n = MAX_APPEND_BYTES / MAX_DATA_LEN + 1;
    let batch: Vec<_> = (0..n)
        .map(|_| Event::new("A", vec![1u8; MAX_DATA_LEN]))
        .collect();
    let total = n * (MAX_DATA_LEN + 1);
    let err = rejected(&store, AppendRequest::new(batch)).await;
    assert_eq!(
        err,
        InputError::TooLong {
            field: "append",
            len: total,
            max: MAX_APPEND_BYTES
        }
    );
}

/// One condition too many.
pub async fn rejects_too_many_conditions(store: Store) {
    seed_standard(&store).await;
    let conds =
        (0..=MAX_CONDITIONS).map(|i| AppendCondition::none_match(Query::tagged(format!("c{i}"))));
    let req = AppendRequest::new(vec![ev("A", &[])]).conditions(conds);
    let err = rejected(&store, req).await;
    assert_eq!(
        err,
        InputError::TooMany {
            field: "conditions",
            count: MAX_CONDITIONS + 1,
            max: MAX_CONDITIONS
        }
    );
}

/// A query over its limits is rejected identically as an append condition (nothing written) and
/// as a read: `TooMany { field, count: max + 1, max }`.
async fn assert_query_rejected(store: &Store, q: Query, field: &'static str, max: usize) {
    let req =
        AppendRequest::new(vec![ev("A", &[])]).condition(AppendCondition::none_match(q.clone()));
    let err = rejected(store, req).await;
    let expected = InputError::TooMany {
        field,
        count: max + 1,
        max,
    };
    assert_eq!(err, expected);
    assert_eq!(
        expect_input_error(store.read(q, crate::ReadOptions::new()).await),
        expected
    );
}

/// A condition query with one item too many.
pub async fn rejects_too_many_query_items(store: Store) {
    seed_standard(&store).await;
    let q = Query::items((0..=MAX_QUERY_ITEMS).map(|i| QueryItem::new().tag(format!("q{i}"))));
    assert_query_rejected(&store, q, "query items", MAX_QUERY_ITEMS).await;
}

/// A query of exactly [`MAX_QUERY_ITEMS`] items (public DCB conformance suites send 128) is
/// evaluated in full, as a read and as an append condition: every item counts.
pub async fn evaluates_a_query_at_the_item_limit(store: Store) {
    seed_standard(&store).await;
    // One event per item; items alternate between tag-only and type-and-tag.
    let events: Vec<Event> = (0..MAX_QUERY_ITEMS)
        .map(|i| ev(if i % 2 == 0 { "Even" } else { "Odd" }, &[&format!("q{i}")]))
        .collect();
    let written = append(&store, events).await;
    let q = Query::items((0..MAX_QUERY_ITEMS).map(|i| {
        let item = QueryItem::new().tag(format!("q{i}"));
        if i % 2 == 0 { item } else { item.r#type("Odd") }
    }));
    let (head, found) = read(&store, q.clone(), crate::ReadOptions::new()).await;
    assert_eq!(
        positions(&found),
        written.positions,
        "every item must match its event"
    );
    assert_eq!(head, written.last());
    // As a condition: passes after the head, fails when only the last item matches a new event.
    let ok = try_append(
        &store,
        vec![ev("Unrelated", &["q-other"])],
        vec![AppendCondition::new(q.clone(), head)],
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
    let head = store.head().await.ok().flatten();
    let last = MAX_QUERY_ITEMS - 1;
    append(&store, vec![ev("Odd", &[&format!("q{last}")])]).await;
    let failed = try_append(
        &store,
        vec![ev("Late", &[])],
        vec![AppendCondition::new(q, head)],
    )
    .await;
    assert!(
        matches!(
            failed,
            Err(crate::StoreError::ConditionFailed { condition: 0 })
        ),
        "the last of {MAX_QUERY_ITEMS} items must count: {failed:?}"
    );
}

/// A query item with one type too many.
pub async fn rejects_too_many_query_types(store: Store) {
    seed_standard(&store).await;
    let q = Query::item(QueryItem::new().types((0..=MAX_ITEM_TERMS).map(|i| format!("T{i}"))));
    assert_query_rejected(&store, q, "query types", MAX_ITEM_TERMS).await;
}

/// A query item with one tag too many.
pub async fn rejects_too_many_query_tags(store: Store) {
    seed_standard(&store).await;
    let q = Query::item(QueryItem::new().tags((0..=MAX_ITEM_TERMS).map(|i| format!("t{i}"))));
    assert_query_rejected(&store, q, "query tags", MAX_ITEM_TERMS).await;
}

/// A control character in a type.
pub async fn rejects_control_character_in_type(store: Store) {
    seed_standard(&store).await;
    for t in ["A\n", "\u{0}A", "A\u{7f}B", "A\u{9b}"] {
        let err = rejected(&store, with_bad(ev(t, &[]))).await;
        assert_eq!(err, InputError::ControlCharacter { field: "type" }, "{t:?}");
    }
}

/// A control character in a tag.
pub async fn rejects_control_character_in_tag(store: Store) {
    seed_standard(&store).await;
    for t in ["x\ty", "\r", "tag\u{1b}"] {
        let err = rejected(&store, with_bad(ev("A", &[t]))).await;
        assert_eq!(err, InputError::ControlCharacter { field: "tag" }, "{t:?}");
    }
}

/// The same tag twice on one event.
pub async fn rejects_duplicate_tag(store: Store) {
    seed_standard(&store).await;
    let err = rejected(&store, with_bad(ev("A", &["a", "b", "a"]))).await;
    assert_eq!(err, InputError::DuplicateTag("a".into()));
}

/// The same id twice in one batch; nothing written, and the id stays free.
pub async fn rejects_duplicate_id_in_batch(store: Store) {
    seed_standard(&store).await;
    let id = id();
    let req = AppendRequest::new(vec![ev("A", &[]).with_id(id), ev("B", &[]).with_id(id)]);
    let err = rejected(&store, req).await;
    assert_eq!(err, InputError::DuplicateId(id));
    // The id was not recorded: a valid batch may use it now.
    let a = append(&store, vec![ev("A", &[]).with_id(id)]).await;
    assert!(!a.replayed);
}

/// A condition whose query has an empty item list.
pub async fn rejects_empty_condition_query(store: Store) {
    seed_standard(&store).await;
    let req = AppendRequest::new(vec![ev("A", &[])])
        .condition(AppendCondition::none_match(Query::Items(Vec::new())));
    assert_eq!(rejected(&store, req).await, InputError::EmptyQuery);
}

/// A condition whose query holds an empty, over-long or control-character term.
pub async fn rejects_invalid_condition_query_term(store: Store) {
    seed_standard(&store).await;
    let cases = [
        (Query::tagged(""), InputError::Empty { field: "query tag" }),
        (
            Query::of_type(""),
            InputError::Empty {
                field: "query type",
            },
        ),
        (
            Query::tagged("a\u{0}"),
            InputError::ControlCharacter { field: "query tag" },
        ),
        (
            Query::of_type("T".repeat(MAX_TYPE_LEN + 1)),
            InputError::TooLong {
                field: "query type",
                len: MAX_TYPE_LEN + 1,
                max: MAX_TYPE_LEN,
            },
        ),
    ];
    for (q, expected) in cases {
        let req = AppendRequest::new(vec![ev("A", &[])])
            .condition(AppendCondition::none_match(Query::tagged("fine")))
            .condition(AppendCondition::new(q, Some(Position::ZERO)));
        assert_eq!(rejected(&store, req).await, expected);
    }
}

/// A tracking consumer name that is empty, too long or has control characters.
pub async fn rejects_invalid_tracking_consumer(store: Store) {
    seed_standard(&store).await;
    let long = "c".repeat(crate::limits::MAX_CONSUMER_LEN + 1);
    for (name, variant) in [
        ("", "empty"),
        (long.as_str(), "too long"),
        ("view\n", "control"),
    ] {
        let req = AppendRequest::new(vec![ev("A", &[])]).track(name, Position::from_u64(1));
        let err = rejected(&store, req).await;
        let ok = match variant {
            "empty" => matches!(err, InputError::Empty { field: "consumer" }),
            "too long" => matches!(
                err,
                InputError::TooLong {
                    field: "consumer",
                    ..
                }
            ),
            _ => matches!(err, InputError::ControlCharacter { field: "consumer" }),
        };
        assert!(ok, "{variant}: {err:?}");
    }
}
