//! Consistent consumer snapshots (`EventStore::consumer_snapshot`), the base of online backups.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dcb_core::{Event, EventStore, Position, StateCommit, StateEntry};
use dcb_embedded::EmbeddedStore;
use futures::TryStreamExt;

fn ev(i: u64) -> Event {
    Event::new("Tick", format!("{{\"i\":{i}}}").into_bytes()).tag(format!("n:{}", i % 7))
}

/// A view that, in one commit each, records the head it has processed in its state (`cp`, and
/// `count` = events seen) and moves its checkpoint there.
async fn view_step(store: &EmbeddedStore) -> Option<Position> {
    let head = store.head().await.unwrap()?;
    let stored = store.checkpoint("view").await.unwrap();
    if stored >= Some(head) {
        return stored;
    }
    store
        .commit_state(StateCommit {
            consumer: "view".into(),
            writes: vec![
                (b"cp".to_vec(), Some(head.to_bytes().to_vec())),
                (
                    b"count".to_vec(),
                    Some(head.as_u64().unwrap().to_be_bytes().to_vec()),
                ),
            ],
            checkpoint: Some(head),
            ..Default::default()
        })
        .await
        .unwrap();
    Some(head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_taken_under_load_hold_checkpoints_and_state_of_one_moment() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Writers: events, and the view following them (each state commit moves `cp` and the
    // checkpoint together).
    let appender = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                let batch = (i..i + 5).map(ev).collect();
                store.append(batch, vec![]).await.unwrap();
                i += 5;
            }
        })
    };
    let viewer = {
        let store = store.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut steps = 0u32;
            while !stop.load(Ordering::Relaxed) && steps < 100_000 {
                view_step(&store).await;
                steps += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    // Snapshot until 20 of them have caught the view with a checkpoint while both writers run
    // (bounded: the writers stop on their own after 100 000 steps).
    let mut seen_checkpoints = 0;
    let mut heads = std::collections::BTreeSet::new();
    for _ in 0..1_000_000 {
        if seen_checkpoints >= 20 && heads.len() >= 5 {
            break;
        }
        if appender.is_finished() && viewer.is_finished() {
            break;
        }
        let snap = store.consumer_snapshot().await.unwrap();
        let state: Vec<StateEntry> = snap.state.try_collect().await.unwrap();
        match snap.checkpoints.get("view") {
            None => assert!(state.is_empty(), "state without its checkpoint: {state:?}"),
            Some(&cp) => {
                seen_checkpoints += 1;
                heads.insert(snap.head);
                assert!(
                    Some(cp) <= snap.head,
                    "checkpoint {cp} past head {:?}",
                    snap.head
                );
                let get = |k: &[u8]| {
                    state
                        .iter()
                        .find(|e| e.consumer == "view" && e.key == k)
                        .map(|e| e.value.clone())
                        .unwrap()
                };
                assert_eq!(
                    get(b"cp"),
                    cp.to_bytes().to_vec(),
                    "state and checkpoint apart"
                );
                assert_eq!(get(b"count"), cp.as_u64().unwrap().to_be_bytes().to_vec());
            }
        }
        // The snapshot's head is a head the store really had: every event up to it is stored.
        if let Some(h) = snap.head {
            assert!(store.head().await.unwrap() >= Some(h));
        }
    }
    stop.store(true, Ordering::Relaxed);
    appender.await.unwrap();
    viewer.await.unwrap();
    // The last snapshot of a quiet store sees the view exactly where it is.
    let last = view_step(&store).await.unwrap();
    let snap = store.consumer_snapshot().await.unwrap();
    assert_eq!(snap.checkpoints.get("view"), Some(&last));
    assert_eq!(snap.head, store.head().await.unwrap());
    assert!(
        seen_checkpoints >= 20 && heads.len() >= 5,
        "only {seen_checkpoints} snapshots with a checkpoint, at {} heads: the test proves nothing",
        heads.len()
    );
}

#[tokio::test]
async fn snapshot_state_is_paged_in_key_order_and_ignores_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.append(vec![ev(0)], vec![]).await.unwrap();
    // 1000 keys over two consumers whose names are prefixes of each other ("a" < "ab").
    for consumer in ["ab", "a"] {
        for chunk in 0..5u32 {
            let writes = (chunk * 100..chunk * 100 + 100)
                .map(|k| (k.to_be_bytes().to_vec(), Some(consumer.as_bytes().to_vec())))
                .collect();
            store
                .commit_state(StateCommit {
                    consumer: consumer.into(),
                    writes,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    }
    store
        .commit_state(StateCommit {
            consumer: "a".into(),
            checkpoint: Some(Position::from_u64(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    let snap = store.consumer_snapshot().await.unwrap();
    // Written after the snapshot: must not show.
    store.append(vec![ev(1)], vec![]).await.unwrap();
    store
        .commit_state(StateCommit {
            consumer: "a".into(),
            writes: vec![(b"late".to_vec(), Some(b"x".to_vec()))],
            checkpoint: Some(Position::from_u64(2)),
            ..Default::default()
        })
        .await
        .unwrap();
    store.reset_consumer("ab").await.unwrap();
    assert_eq!(snap.head, Some(Position::from_u64(1)));
    assert_eq!(snap.checkpoints.len(), 1);
    assert_eq!(snap.checkpoints.get("a"), Some(&Position::from_u64(1)));
    let state: Vec<StateEntry> = snap.state.try_collect().await.unwrap();
    assert_eq!(state.len(), 1000);
    let mut expected = Vec::new();
    for consumer in ["a", "ab"] {
        for k in 0..500u32 {
            expected.push(StateEntry {
                consumer: consumer.into(),
                key: k.to_be_bytes().to_vec(),
                value: consumer.as_bytes().to_vec(),
            });
        }
    }
    assert_eq!(state, expected);
}

#[tokio::test]
async fn snapshot_of_an_empty_store_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let snap = store.consumer_snapshot().await.unwrap();
    assert_eq!(snap.head, None);
    assert!(snap.checkpoints.is_empty());
    let state: Vec<StateEntry> = snap.state.try_collect().await.unwrap();
    assert!(state.is_empty());
}
