//! Rules for `append`: positions, atomicity and exact round trips.

use super::support::*;
use crate::limits::{
    MAX_DATA_LEN, MAX_METADATA_LEN, MAX_TAG_LEN, MAX_TAGS_PER_EVENT, MAX_TYPE_LEN,
};
use crate::{AppendRequest, Event, InputError, Query, ReadOptions};

/// An append returns one position per event, strictly increasing in batch order.
pub async fn append_positions_increase_in_batch_order(store: Store) {
    let a = append(
        &store,
        vec![ev("A", &[]), ev("B", &[]), ev("C", &[]), ev("D", &[])],
    )
    .await;
    assert!(!a.replayed);
    assert_eq!(a.positions.len(), 4);
    assert!(
        a.positions.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        a.positions
    );
    let events = read_all(&store).await;
    let types: Vec<_> = events.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["A", "B", "C", "D"]);
}

/// A later append gets positions greater than every earlier one.
pub async fn append_later_batches_get_greater_positions(store: Store) {
    let mut last = None;
    for i in 0..10 {
        let a = append(&store, vec![ev("A", &[]), ev("B", &[])]).await;
        assert!(
            a.positions[0] > last.unwrap_or(crate::Position::ZERO),
            "append {i}: {:?} after {last:?}",
            a.positions
        );
        last = a.last();
    }
}

/// The returned positions are those the events are read back at.
pub async fn append_positions_match_read_back(store: Store) {
    let a1 = append(&store, vec![ev("A", &["t1"]), ev("B", &["t2"])]).await;
    let a2 = append(&store, vec![ev("C", &["t1"])]).await;
    let all = read_all(&store).await;
    let mut expected = a1.positions.clone();
    expected.extend(&a2.positions);
    assert_eq!(positions(&all), expected);
    assert_eq!(all[2].event, ev("C", &["t1"]));
    assert_eq!(all[0].event, ev("A", &["t1"]));
}

/// The head is the last position of the last append.
pub async fn append_head_advances(store: Store) {
    assert_eq!(head(&store).await, None);
    let a = append(&store, vec![ev("A", &[])]).await;
    assert_eq!(head(&store).await, a.last());
    let b = append(&store, vec![ev("A", &[]), ev("B", &[]), ev("C", &[])]).await;
    assert_eq!(head(&store).await, b.last());
    assert!(b.last() > a.last());
}

/// An append with no events is rejected and writes nothing.
pub async fn append_empty_batch_rejected(store: Store) {
    seed_standard(&store).await;
    let err = rejected(&store, AppendRequest::new(Vec::new())).await;
    assert_eq!(err, InputError::EmptyAppend);
}

/// A batch where one event is invalid writes nothing at all.
pub async fn append_batch_with_one_invalid_event_writes_nothing(store: Store) {
    seed_standard(&store).await;
    let batch = vec![
        ev("Good", &["a"]),
        ev("Good", &["b"]),
        ev("Bad", &["dup", "dup"]),
        ev("Good", &["c"]),
    ];
    let err = rejected(&store, AppendRequest::new(batch)).await;
    assert_eq!(err, InputError::DuplicateTag("dup".into()));
    let (_, good) = read(&store, Query::of_type("Good"), ReadOptions::new()).await;
    assert!(good.is_empty());
}

/// Data, metadata, tags and id come back exactly as appended.
pub async fn append_round_trips_data_metadata_and_id(store: Store) {
    let id = id();
    let e = Event::new("Registered", br#"{"name":"ada","n":1}"#.to_vec())
        .tags(["user:1", "tenant:7"])
        .meta("correlation", "c-1")
        .meta("recorded_at", "2024-01-01T00:00:00Z")
        .with_id(id);
    let plain = ev("Plain", &[]);
    let a = append(&store, vec![e.clone(), plain.clone()]).await;
    let all = read_all(&store).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].event, e);
    assert_eq!(all[0].event.id, Some(id));
    assert_eq!(all[0].position, a.positions[0]);
    assert_eq!(all[1].event, plain);
    assert_eq!(all[1].event.id, None);
    assert!(all[1].event.metadata.is_empty());
}

/// An event with no data and no tags is valid.
pub async fn append_allows_empty_data(store: Store) {
    let e = Event::new("Empty", Vec::new());
    append(&store, vec![e.clone()]).await;
    let all = read_all(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].event, e);
    assert!(all[0].event.data.is_empty());
}

/// Every byte value survives in data.
pub async fn append_round_trips_binary_data(store: Store) {
    let data: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let e = Event::new("Bin", data.clone()).tag("bin");
    append(&store, vec![e]).await;
    let (_, events) = read(&store, Query::tagged("bin"), ReadOptions::new()).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.data, data);
}

/// Unicode types and tags are stored, matched and returned exactly.
pub async fn append_unicode_types_and_tags(store: Store) {
    let e = ev("Événement📦", &["книга:42", "用户:7", "emoji:🦀"]);
    append(&store, vec![e.clone(), ev("Evenement", &["kniga:42"])]).await;
    let (_, events) = read(&store, Query::of_type("Événement📦"), ReadOptions::new()).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, e);
    let (_, events) = read(&store, Query::tagged("用户:7"), ReadOptions::new()).await;
    assert_eq!(events.len(), 1);
    let (_, events) = read(&store, Query::tagged("emoji:🦀"), ReadOptions::new()).await;
    assert_eq!(events.len(), 1);
    let (_, events) = read(&store, Query::tagged("книга"), ReadOptions::new()).await;
    assert!(events.is_empty(), "tags match exactly, not by prefix");
}

/// Tags come back in the order given.
pub async fn append_keeps_tag_order(store: Store) {
    let e = ev("A", &["zeta", "alpha", "mid"]);
    append(&store, vec![e]).await;
    let all = read_all(&store).await;
    assert_eq!(all[0].event.tags, ["zeta", "alpha", "mid"]);
}

/// Values exactly at each limit are accepted and round-trip.
pub async fn append_accepts_values_at_the_limits(store: Store) {
    let t = "T".repeat(MAX_TYPE_LEN);
    let tags: Vec<String> = (0..MAX_TAGS_PER_EVENT)
        .map(|i| {
            let prefix = format!("{i}:");
            format!("{prefix}{}", "g".repeat(MAX_TAG_LEN - prefix.len()))
        })
        .collect();
    let mut e = Event::new(t.clone(), vec![7u8; MAX_DATA_LEN]).tags(tags.clone());
    e = e.meta("k", "v".repeat(MAX_METADATA_LEN - 1));
    append(&store, vec![e.clone()]).await;
    let all = read_all(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].event, e);
    let (_, by_tag) = read(&store, Query::tagged(tags[63].clone()), ReadOptions::new()).await;
    assert_eq!(by_tag.len(), 1);
    let (_, by_type) = read(&store, Query::of_type(t), ReadOptions::new()).await;
    assert_eq!(by_type.len(), 1);
}

/// A batch of 1000 events is stored in batch order, atomically, and read back in full.
pub async fn append_large_batch_is_contiguous(store: Store) {
    append(&store, vec![ev("Before", &[])]).await;
    let batch: Vec<_> = (0..1000)
        .map(|i| ev_data("Item", &["batch"], format!("{i}")))
        .collect();
    let a = append(&store, batch).await;
    append(&store, vec![ev("After", &[])]).await;
    assert_eq!(a.positions.len(), 1000);
    let all = read_all(&store).await;
    assert_eq!(all.len(), 1002);
    assert_eq!(all[0].event.event_type, "Before");
    assert_eq!(all[1001].event.event_type, "After");
    for (i, e) in all[1..1001].iter().enumerate() {
        assert_eq!(e.position, a.positions[i]);
        assert_eq!(e.event.data, format!("{i}").into_bytes());
    }
}

/// `stats` reports the head, and the event count when the backend knows it.
pub async fn stats_report_head_and_count(store: Store) {
    let empty = store.stats().await.expect("stats");
    assert_eq!(empty.head, None);
    assert!(empty.events.is_none_or(|n| n == 0), "{empty:?}");
    let first = append(&store, vec![ev("A", &["x"]), ev("B", &[])]).await;
    let second = append(&store, vec![ev("C", &["y"])]).await;
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.head, second.last());
    assert_eq!(stats.head, store.head().await.expect("head"));
    assert!(stats.events.is_none_or(|n| n == 3), "{stats:?}");
    assert!(first.last() < stats.head);
}
