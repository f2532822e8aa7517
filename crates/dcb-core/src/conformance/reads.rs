//! Rules for `read`: matching, bounds, limit, direction, head reporting, snapshots, streaming.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::support::*;
use crate::{InputError, Position, Query, QueryItem, ReadOptions};

/// Query::All returns every event in position order, with the store head.
pub async fn reads_all_in_position_order(store: Store) {
    let p = seed_standard(&store).await;
    let (h, events) = read(&store, Query::All, ReadOptions::new()).await;
    assert_eq!(positions(&events), p);
    assert!(
        p.windows(2).all(|w| w[0] < w[1]),
        "positions strictly increase: {p:?}"
    );
    let types: Vec<_> = events.iter().map(|e| e.event.event_type.as_str()).collect();
    assert_eq!(types, ["A", "B", "A", "C", "B", "A"]);
    assert_eq!(h, p.last().copied());
}

/// An empty store reads nothing and reports no head.
pub async fn reads_empty_store_with_no_head(store: Store) {
    let (h, events) = read(&store, Query::All, ReadOptions::new()).await;
    assert!(events.is_empty());
    assert_eq!(h, None);
    assert_eq!(head(&store).await, None);
    let (h, events) = read(
        &store,
        Query::tagged("x"),
        ReadOptions::new().backwards().limit(3),
    )
    .await;
    assert!(events.is_empty());
    assert_eq!(h, None);
}

/// A type query returns exactly the events of that type.
pub async fn reads_by_type(store: Store) {
    let p = seed_standard(&store).await;
    let (_, events) = read(&store, Query::of_type("A"), ReadOptions::new()).await;
    assert_eq!(positions(&events), pick(&p, &[0, 2, 5]));
    let (_, events) = read(&store, Query::of_type("C"), ReadOptions::new()).await;
    assert_eq!(positions(&events), pick(&p, &[3]));
}

/// A tag query returns exactly the events carrying that tag.
pub async fn reads_by_tag(store: Store) {
    let p = seed_standard(&store).await;
    let (_, events) = read(&store, Query::tagged("x"), ReadOptions::new()).await;
    assert_eq!(positions(&events), pick(&p, &[0, 1, 5]));
    let (_, events) = read(&store, Query::tagged("z"), ReadOptions::new()).await;
    assert_eq!(positions(&events), pick(&p, &[4, 5]));
}

/// Several tags in one item must all be present (AND).
pub async fn reads_and_of_tags(store: Store) {
    let p = seed_standard(&store).await;
    let q = Query::item(QueryItem::new().tags(["x", "y"]));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[1, 5])
    );
    let q = Query::item(QueryItem::new().tags(["x", "y", "z"]));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[5])
    );
    let q = Query::item(QueryItem::new().tags(["x", "nope"]));
    assert!(read(&store, q, ReadOptions::new()).await.1.is_empty());
}

/// Several items are OR'ed, each event returned once, in position order.
pub async fn reads_or_of_items(store: Store) {
    let p = seed_standard(&store).await;
    let q = Query::of_type("C")
        .or(QueryItem::new().tag("z"))
        .or(QueryItem::new().tag("x"));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[0, 1, 3, 4, 5])
    );
    // Overlapping items do not duplicate events.
    let q = Query::tagged("y").or(QueryItem::new().r#type("A"));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[0, 1, 2, 4, 5])
    );
}

/// An item with types and tags requires one of the types AND all the tags.
pub async fn reads_type_and_tags(store: Store) {
    let p = seed_standard(&store).await;
    let q = Query::item(QueryItem::new().r#type("A").tag("y"));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[2, 5])
    );
    let q = Query::item(QueryItem::new().r#type("B").tags(["y", "z"]));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[4])
    );
    let q = Query::item(QueryItem::new().r#type("C").tag("x"));
    assert!(read(&store, q, ReadOptions::new()).await.1.is_empty());
}

/// Several types in one item are OR'ed.
pub async fn reads_several_types_in_one_item(store: Store) {
    let p = seed_standard(&store).await;
    let q = Query::item(QueryItem::new().types(["B", "C"]));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[1, 3, 4])
    );
    let q = Query::item(QueryItem::new().types(["B", "C"]).tag("y"));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[1, 4])
    );
}

/// An item with neither types nor tags is normalised to All, even next to other items.
pub async fn reads_unconstrained_item_as_all(store: Store) {
    let p = seed_standard(&store).await;
    let q = Query::item(QueryItem::new());
    assert_eq!(positions(&read(&store, q, ReadOptions::new()).await.1), p);
    let q = Query::tagged("z").or(QueryItem::new());
    assert_eq!(positions(&read(&store, q, ReadOptions::new()).await.1), p);
}

/// Repeated types or tags inside an item behave like a single one.
pub async fn reads_duplicate_terms_like_single(store: Store) {
    let p = seed_standard(&store).await;
    let q = Query::item(QueryItem::new().tags(["y", "y"]).types(["B", "B"]));
    assert_eq!(
        positions(&read(&store, q, ReadOptions::new()).await.1),
        pick(&p, &[1, 4])
    );
}

/// Unknown types and tags match nothing; the head is still reported.
pub async fn reads_unknown_type_or_tag_returns_nothing(store: Store) {
    let p = seed_standard(&store).await;
    for q in [
        Query::of_type("Nope"),
        Query::tagged("nope"),
        Query::item(QueryItem::new().r#type("A").tag("nope")),
    ] {
        let (h, events) = read(&store, q, ReadOptions::new()).await;
        assert!(events.is_empty());
        assert_eq!(h, p.last().copied());
    }
}

/// `after` excludes its own position.
pub async fn reads_after_is_exclusive(store: Store) {
    let p = seed_standard(&store).await;
    let (_, events) = read(&store, Query::All, ReadOptions::new().after(p[2])).await;
    assert_eq!(positions(&events), pick(&p, &[3, 4, 5]));
    let (_, events) = read(&store, Query::of_type("A"), ReadOptions::new().after(p[2])).await;
    assert_eq!(positions(&events), pick(&p, &[5]));
}

/// `from` includes its own position.
pub async fn reads_from_is_inclusive(store: Store) {
    let p = seed_standard(&store).await;
    let (_, events) = read(&store, Query::All, ReadOptions::new().from(p[2])).await;
    assert_eq!(positions(&events), pick(&p, &[2, 3, 4, 5]));
    let (_, events) = read(&store, Query::of_type("A"), ReadOptions::new().from(p[2])).await;
    assert_eq!(positions(&events), pick(&p, &[2, 5]));
}

/// `before` excludes its own position.
pub async fn reads_before_is_exclusive(store: Store) {
    let p = seed_standard(&store).await;
    let (_, events) = read(&store, Query::All, ReadOptions::new().before(p[2])).await;
    assert_eq!(positions(&events), pick(&p, &[0, 1]));
    let (_, events) = read(&store, Query::All, ReadOptions::new().before(p[0])).await;
    assert!(events.is_empty());
}

/// `after`/`from` and `before` together select a window.
pub async fn reads_after_and_before_window(store: Store) {
    let p = seed_standard(&store).await;
    let (_, events) = read(
        &store,
        Query::All,
        ReadOptions::new().after(p[1]).before(p[4]),
    )
    .await;
    assert_eq!(positions(&events), pick(&p, &[2, 3]));
    let (_, events) = read(
        &store,
        Query::All,
        ReadOptions::new().from(p[1]).before(p[4]),
    )
    .await;
    assert_eq!(positions(&events), pick(&p, &[1, 2, 3]));
    let (_, events) = read(
        &store,
        Query::All,
        ReadOptions::new().after(p[2]).before(p[3]),
    )
    .await;
    assert!(events.is_empty());
}

/// `from(0)` and `after(0)` cover every event (no event has position 0).
pub async fn reads_from_zero_and_after_zero_return_everything(store: Store) {
    let p = seed_standard(&store).await;
    assert_eq!(
        positions(
            &read(&store, Query::All, ReadOptions::new().from(Position::ZERO))
                .await
                .1
        ),
        p
    );
    assert_eq!(
        positions(
            &read(&store, Query::All, ReadOptions::new().after(Position::ZERO))
                .await
                .1
        ),
        p
    );
    assert_eq!(
        positions(
            &read(&store, Query::All, ReadOptions::new().before(Position::MAX))
                .await
                .1
        ),
        p
    );
}

/// `limit` returns the first n matching events.
pub async fn reads_limit(store: Store) {
    let p = seed_standard(&store).await;
    assert_eq!(
        positions(
            &read(&store, Query::All, ReadOptions::new().limit(2))
                .await
                .1
        ),
        pick(&p, &[0, 1])
    );
    assert_eq!(
        positions(
            &read(&store, Query::tagged("y"), ReadOptions::new().limit(3))
                .await
                .1
        ),
        pick(&p, &[1, 2, 4])
    );
    assert_eq!(
        positions(
            &read(&store, Query::All, ReadOptions::new().limit(100))
                .await
                .1
        ),
        p
    );
    assert_eq!(
        positions(
            &read(&store, Query::All, ReadOptions::new().limit(u64::MAX))
                .await
                .1
        ),
        p
    );
}

/// `limit(0)` returns nothing but still reports the head.
pub async fn reads_limit_zero_returns_nothing_with_head(store: Store) {
    let p = seed_standard(&store).await;
    let (h, events) = read(&store, Query::All, ReadOptions::new().limit(0)).await;
    assert!(events.is_empty());
    assert_eq!(h, p.last().copied());
    let (h, events) = read(&store, Query::All, ReadOptions::new().limit(0).backwards()).await;
    assert!(events.is_empty());
    assert_eq!(h, p.last().copied());
}

/// `backwards` returns the same events newest first.
pub async fn reads_backwards_newest_first(store: Store) {
    let p = seed_standard(&store).await;
    let mut rev = p.clone();
    rev.reverse();
    assert_eq!(
        positions(
            &read(&store, Query::All, ReadOptions::new().backwards())
                .await
                .1
        ),
        rev
    );
    let (_, events) = read(&store, Query::tagged("x"), ReadOptions::new().backwards()).await;
    assert_eq!(positions(&events), pick(&p, &[5, 1, 0]));
}

/// `backwards` + `limit` takes the newest n ("the last event for this tag").
pub async fn reads_backwards_with_limit_takes_newest(store: Store) {
    let p = seed_standard(&store).await;
    let (_, events) = read(
        &store,
        Query::tagged("y"),
        ReadOptions::new().backwards().limit(1),
    )
    .await;
    assert_eq!(positions(&events), pick(&p, &[5]));
    let (_, events) = read(&store, Query::All, ReadOptions::new().backwards().limit(2)).await;
    assert_eq!(positions(&events), pick(&p, &[5, 4]));
}

/// Bounds apply to positions whatever the direction.
pub async fn reads_backwards_with_bounds(store: Store) {
    let p = seed_standard(&store).await;
    let opts = ReadOptions::new().after(p[0]).before(p[5]).backwards();
    assert_eq!(
        positions(&read(&store, Query::All, opts).await.1),
        pick(&p, &[4, 3, 2, 1])
    );
    let opts = ReadOptions::new()
        .from(p[1])
        .before(p[5])
        .backwards()
        .limit(2);
    assert_eq!(
        positions(&read(&store, Query::All, opts).await.1),
        pick(&p, &[4, 3])
    );
    let opts = ReadOptions::new().before(p[3]).backwards().limit(1);
    assert_eq!(
        positions(&read(&store, Query::of_type("A"), opts).await.1),
        pick(&p, &[2])
    );
}

/// Query filter, bounds and limit compose: bounds first, then order, then limit.
pub async fn reads_filtered_with_bounds_and_limit(store: Store) {
    let p = seed_standard(&store).await;
    let opts = ReadOptions::new().after(p[0]).limit(2);
    assert_eq!(
        positions(&read(&store, Query::tagged("y"), opts).await.1),
        pick(&p, &[1, 2])
    );
    let opts = ReadOptions::new().from(p[2]).before(p[5]).limit(5);
    assert_eq!(
        positions(&read(&store, Query::tagged("y"), opts).await.1),
        pick(&p, &[2, 4])
    );
}

/// Reading after the head returns nothing and reports the head.
pub async fn reads_after_head_returns_nothing(store: Store) {
    let p = seed_standard(&store).await;
    let last = p[5];
    let (h, events) = read(&store, Query::All, ReadOptions::new().after(last)).await;
    assert!(events.is_empty());
    assert_eq!(h, Some(last));
    let (_, events) = read(&store, Query::All, ReadOptions::new().from(Position::MAX)).await;
    assert!(events.is_empty());
    let (_, events) = read(
        &store,
        Query::All,
        ReadOptions::new().after(Position::MAX).backwards(),
    )
    .await;
    assert!(events.is_empty());
}

/// A lower bound at or above `before` is an empty range, not an error.
pub async fn reads_from_above_before_returns_nothing(store: Store) {
    let p = seed_standard(&store).await;
    let (h, events) = read(
        &store,
        Query::All,
        ReadOptions::new().from(p[4]).before(p[2]),
    )
    .await;
    assert!(events.is_empty());
    assert_eq!(h, Some(p[5]));
    let (_, events) = read(
        &store,
        Query::All,
        ReadOptions::new().from(p[3]).before(p[3]),
    )
    .await;
    assert!(events.is_empty());
}

/// A read that matches nothing reports the store head, not the last match.
pub async fn reads_head_when_result_empty(store: Store) {
    let p = seed_standard(&store).await;
    let (h, _) = read(&store, Query::of_type("C"), ReadOptions::new()).await;
    assert_eq!(h, Some(p[5]));
    let (h, events) = read(
        &store,
        Query::of_type("Missing"),
        ReadOptions::new().after(p[1]),
    )
    .await;
    assert!(events.is_empty());
    assert_eq!(h, Some(p[5]));
}

/// A limited read reports the store head, not its last returned position.
pub async fn reads_head_when_limited(store: Store) {
    let p = seed_standard(&store).await;
    let (h, events) = read(&store, Query::All, ReadOptions::new().limit(1)).await;
    assert_eq!(positions(&events), pick(&p, &[0]));
    assert_eq!(h, Some(p[5]));
    let (h, _) = read(&store, Query::All, ReadOptions::new().before(p[2])).await;
    assert_eq!(h, Some(p[5]));
}

/// `read(..).head()` and `head()` agree, and move with each append.
pub async fn reads_head_matches_head_method(store: Store) {
    for i in 0..5 {
        let a = append(&store, vec![ev("A", &[]), ev("B", &[])]).await;
        let h = head(&store).await;
        assert_eq!(h, a.last(), "head after append {i}");
        assert_eq!(
            read(&store, Query::tagged("none"), ReadOptions::new())
                .await
                .0,
            h
        );
    }
}

/// Invalid queries are rejected with typed input errors.
pub async fn reads_invalid_query_rejected(store: Store) {
    seed_standard(&store).await;
    let err = expect_input_error(
        store
            .read(Query::Items(Vec::new()), ReadOptions::new())
            .await,
    );
    assert_eq!(err, InputError::EmptyQuery);
    let err = expect_input_error(store.read(Query::tagged(""), ReadOptions::new()).await);
    assert!(matches!(err, InputError::Empty { .. }), "{err:?}");
    let err = expect_input_error(
        store
            .read(Query::of_type("a\u{7}"), ReadOptions::new())
            .await,
    );
    assert!(
        matches!(err, InputError::ControlCharacter { .. }),
        "{err:?}"
    );
}

/// While appends run concurrently, every read's events are at or below its head, and no later
/// read shows a new event at or below an earlier read's head.
pub async fn reads_snapshot_consistent_under_concurrent_appends(store: Store) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 300 {
                let tag = format!("w{w}");
                append(&store, vec![ev("A", &[&tag]), ev("B", &[&tag])]).await;
                n += 1;
            }
        }));
    }
    let mut seen: Vec<Position> = Vec::new();
    let mut seen_head: Option<Position> = None;
    for _ in 0..60 {
        let (h, events) = read(&store, Query::All, ReadOptions::new()).await;
        let ps = positions(&events);
        assert!(ps.windows(2).all(|w| w[0] < w[1]), "read not in order");
        assert_eq!(
            ps.last().copied(),
            h,
            "a read of every event ends at its head"
        );
        assert!(h >= seen_head, "head went backwards: {h:?} < {seen_head:?}");
        // Everything seen earlier is still there, and nothing new appeared at or below the old head.
        let new_below: Vec<_> = ps
            .iter()
            .filter(|p| Some(**p) <= seen_head && seen.binary_search(p).is_err())
            .collect();
        assert!(
            new_below.is_empty(),
            "events appeared below an earlier head: {new_below:?}"
        );
        assert!(
            seen.iter().all(|p| ps.binary_search(p).is_ok()),
            "an event seen earlier disappeared"
        );
        seen = ps;
        seen_head = h;
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        if let Err(e) = w.await {
            panic!("writer task failed: {e}");
        }
    }
}

/// A large result streams in order, without gaps or repeats.
pub async fn reads_stream_large_result_in_order(store: Store) {
    const N: usize = 5000;
    let mut expected = Vec::with_capacity(N);
    for chunk in 0..(N / 500) {
        let batch: Vec<_> = (0..500)
            .map(|i| ev_data("Big", &["big"], format!("{}", chunk * 500 + i)))
            .collect();
        expected.extend(append(&store, batch).await.positions);
    }
    let mut stream = match store.read(Query::tagged("big"), ReadOptions::new()).await {
        Ok(s) => s,
        Err(e) => panic!("read failed: {e:?}"),
    };
    assert_eq!(stream.head(), expected.last().copied());
    let mut i = 0usize;
    while let Some(item) = stream.next().await {
        let e = match item {
            Ok(e) => e,
            Err(err) => panic!("stream failed at {i}: {err:?}"),
        };
        assert!(i < N, "more than {N} events");
        assert_eq!(e.position, expected[i], "event {i}");
        assert_eq!(e.event.data, format!("{i}").into_bytes(), "event {i}");
        i += 1;
    }
    assert_eq!(i, N);
    let (_, back) = read(&store, Query::tagged("big"), ReadOptions::new().backwards()).await;
    let mut rev = expected.clone();
    rev.reverse();
    assert_eq!(positions(&back), rev);
}

/// Reading in batches (`ReadStream::next_batch`) hands out the stream's events exactly: the same
/// ones in the same order, whatever the batch size, mixed with single events, forwards,
/// backwards, filtered and limited; no batch exceeds its `max`, and `Ok(0)` ends the read.
pub async fn reads_in_batches_match_the_stream(store: Store) {
    const N: usize = 5000;
    for chunk in 0..(N / 500) {
        let batch: Vec<_> = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                let tag = if n % 3 == 0 { "third" } else { "other" };
                ev_data("Big", &[tag], format!("{n}"))
            })
            .collect();
        append(&store, batch).await;
    }
    let cases = [
        (Query::All, ReadOptions::new()),
        (Query::tagged("third"), ReadOptions::new()),
        (Query::All, ReadOptions::new().backwards()),
        (Query::tagged("other"), ReadOptions::new().limit(2500)),
        (
            Query::All,
            ReadOptions::new()
                .after(Position::from_u64(100))
                .before(Position::from_u64(4100)),
        ),
    ];
    for (query, options) in cases {
        let (_, expected) = read(&store, query.clone(), options).await;
        for max in [1usize, 7, 1000, usize::MAX] {
            let mut stream = match store.read(query.clone(), options).await {
                Ok(s) => s,
                Err(e) => panic!("read failed: {e:?}"),
            };
            let mut got = Vec::new();
            let mut batch = Vec::new();
            for round in 0usize.. {
                // Every third round takes one event through the stream instead.
                if round % 3 == 2 {
                    match stream.next().await {
                        Some(Ok(e)) => got.push(e),
                        Some(Err(e)) => panic!("stream failed: {e:?}"),
                        None => break,
                    }
                    continue;
                }
                let n = match stream.next_batch(&mut batch, max).await {
                    Ok(n) => n,
                    Err(e) => panic!("batch failed: {e:?}"),
                };
                assert_eq!(n, batch.len(), "the count is the batch's length");
                assert!(n <= max, "a batch of {n} over max {max}");
                if n == 0 {
                    break;
                }
                got.append(&mut batch);
            }
            assert_eq!(
                positions(&got),
                positions(&expected),
                "{query:?} {options:?} in batches of {max}"
            );
            let data = |v: &[crate::SequencedEvent]| -> Vec<crate::Bytes> {
                v.iter().map(|e| e.event.data.clone()).collect()
            };
            assert_eq!(data(&got), data(&expected));
            let mut after = Vec::new();
            assert!(
                matches!(stream.next_batch(&mut after, 10).await, Ok(0)),
                "a finished read stays finished"
            );
            assert!(stream.next().await.is_none());
        }
    }
}
