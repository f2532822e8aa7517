//! Rules for `subscribe` (catch-up, `CaughtUp`, live) and `wait_for_head`.

use std::time::Duration;

use super::support::*;
use crate::subscribe::SUBSCRIPTION_PAGE;
use crate::{Position, Query, SubscriptionItem};

/// Catch-up yields the stored events in order, then `CaughtUp` with the head, then live events.
pub async fn subscription_catches_up_then_goes_live(store: Store) {
    let p = seed_standard(&store).await;
    let mut sub = store.subscribe(Query::All, None);
    let (events, h) = until_caught_up(&mut sub).await;
    assert_eq!(positions(&events), p);
    assert_eq!(h, Some(p[5]));
    let live = append(&store, vec![ev("Live", &["l"])]).await;
    let e = next_event(&mut sub).await;
    assert_eq!(e.position, live.positions[0]);
    assert_eq!(e.event, ev("Live", &["l"]));
}

/// `CaughtUp` comes exactly once, even as many live events follow.
pub async fn subscription_caught_up_exactly_once(store: Store) {
    seed_standard(&store).await;
    let mut sub = store.subscribe(Query::All, None);
    let (events, _) = until_caught_up(&mut sub).await;
    assert_eq!(events.len(), 6);
    let mut expected = Vec::new();
    for i in 0..20 {
        expected.extend(
            append(&store, vec![ev_data("Live", &[], format!("{i}"))])
                .await
                .positions,
        );
    }
    for p in expected {
        match next_item(&mut sub).await {
            SubscriptionItem::Event(e) => assert_eq!(e.position, p),
            SubscriptionItem::CaughtUp { .. } => panic!("a second CaughtUp"),
        }
    }
    assert_quiet(&mut sub).await;
}

/// Resuming after the last position seen yields exactly the rest: no gap, no duplicate.
pub async fn subscription_resumes_without_gap_or_duplicate(store: Store) {
    let p = seed_standard(&store).await;
    let mut first = store.subscribe(Query::All, None);
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_event(&mut first).await.position);
    }
    drop(first);
    let more = append(&store, vec![ev("Later", &[])]).await;
    let mut resumed = store.subscribe(Query::All, seen.last().copied());
    let (events, h) = until_caught_up(&mut resumed).await;
    seen.extend(positions(&events));
    let mut expected = p.clone();
    expected.extend(&more.positions);
    assert_eq!(seen, expected);
    assert_eq!(h, more.last());
    // Resuming at the head yields nothing before CaughtUp.
    let mut at_head = store.subscribe(Query::All, more.last());
    let (events, _) = until_caught_up(&mut at_head).await;
    assert!(events.is_empty());
}

/// A filtered subscription yields only matching events, in catch-up and live.
pub async fn subscription_filtered_by_query(store: Store) {
    let p = seed_standard(&store).await;
    let mut sub = store.subscribe(Query::tagged("x"), None);
    let (events, h) = until_caught_up(&mut sub).await;
    assert_eq!(positions(&events), pick(&p, &[0, 1, 5]));
    assert_eq!(
        h,
        Some(p[5]),
        "CaughtUp reports the store head, not the last match"
    );
    append(&store, vec![ev("Skip", &["y"])]).await;
    let hit = append(&store, vec![ev("Hit", &["x"])]).await;
    let e = next_event(&mut sub).await;
    assert_eq!(e.position, hit.positions[0]);
    assert_quiet(&mut sub).await;
}

/// Live events appended after `CaughtUp` arrive in position order, none missing.
pub async fn subscription_live_events_in_order(store: Store) {
    let mut sub = store.subscribe(Query::tagged("live"), None);
    until_caught_up(&mut sub).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..50 {
                let batch = vec![
                    ev_data("L", &["live"], format!("{i}a")),
                    ev("Noise", &[]),
                    ev_data("L", &["live"], format!("{i}b")),
                ];
                let a = append(&store, batch).await;
                out.push(a.positions[0]);
                out.push(a.positions[2]);
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            out
        })
    };
    let mut got = Vec::new();
    while got.len() < 100 {
        got.push(next_event(&mut sub).await.position);
    }
    let expected = match writer.await {
        Ok(v) => v,
        Err(e) => panic!("writer failed: {e}"),
    };
    assert_eq!(got, expected);
}

/// On an empty store: `CaughtUp { head: None }` first, then live events.
pub async fn subscription_on_empty_store(store: Store) {
    let mut sub = store.subscribe(Query::All, None);
    match next_item(&mut sub).await {
        SubscriptionItem::CaughtUp { head } => assert_eq!(head, None),
        other => panic!("expected CaughtUp first, got {other:?}"),
    }
    let a = append(&store, vec![ev("First", &[])]).await;
    assert_eq!(next_event(&mut sub).await.position, a.positions[0]);
}

/// A subscriber that reads slowly gets every event, in order, across many pages, then live.
pub async fn subscription_slow_reader_gets_everything(store: Store) {
    // More than two full pages before the subscription starts.
    let chunks = (SUBSCRIPTION_PAGE as usize) * 2 / 100 + 2;
    let mut expected = Vec::new();
    for chunk in 0..chunks {
        let batch = (0..100)
            .map(|i| ev_data("S", &["s"], format!("{}", chunk * 100 + i)))
            .collect();
        expected.extend(append(&store, batch).await.positions);
    }
    let mut sub = store.subscribe(Query::tagged("s"), None);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..200 {
                out.extend(
                    append(&store, vec![ev_data("S", &["s"], format!("live{i}"))])
                        .await
                        .positions,
                );
            }
            out
        })
    };
    let mut got = Vec::new();
    let mut caught_up = 0;
    assert!(expected.len() > 2 * SUBSCRIPTION_PAGE as usize);
    let want = expected.len() + 200;
    while got.len() < want {
        match next_item(&mut sub).await {
            SubscriptionItem::Event(e) => got.push(e.position),
            SubscriptionItem::CaughtUp { .. } => caught_up += 1,
        }
        if got.len() % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let live = match writer.await {
        Ok(v) => v,
        Err(e) => panic!("writer failed: {e}"),
    };
    expected.extend(live);
    assert_eq!(got, expected);
    assert!(caught_up <= 1, "CaughtUp at most once");
    if caught_up == 0 {
        assert!(matches!(
            next_item(&mut sub).await,
            SubscriptionItem::CaughtUp { .. }
        ));
    }
}

/// `wait_for_head` blocks until an append moves the head past the given position.
pub async fn wait_for_head_returns_when_head_moves(store: Store) {
    let p = seed_standard(&store).await;
    let waiter = {
        let store = store.clone();
        let at = p[5];
        tokio::spawn(async move { store.wait_for_head(Some(at)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "wait_for_head returned before the head moved"
    );
    let a = append(&store, vec![ev("Next", &[])]).await;
    match tokio::time::timeout(LIVE_TIMEOUT, waiter).await {
        Ok(Ok(Ok(h))) => assert!(h >= a.last(), "{h:?} < {:?}", a.last()),
        other => panic!("wait_for_head did not return the new head: {other:?}"),
    }
}

/// `wait_for_head` returns at once when the head is already past the position.
pub async fn wait_for_head_immediate_when_already_past(store: Store) {
    let p = seed_standard(&store).await;
    for after in [None, Some(Position::ZERO), Some(p[0]), Some(p[4])] {
        match tokio::time::timeout(LIVE_TIMEOUT, store.wait_for_head(after)).await {
            Ok(Ok(h)) => assert_eq!(h, Some(p[5])),
            other => panic!("wait_for_head({after:?}) did not return at once: {other:?}"),
        }
    }
}
