//! A copy (what `fairway backup` makes) taken while a writer appends and a view commits its
//! state: every acknowledged batch up to the copy's head is there whole, nothing past it is,
//! and the view's checkpoint and state are those of one moment.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dcb_core::{Event, EventStore, Position, StateCommit};
use dcb_embedded::EmbeddedStore;
use dcb_transfer::{ImportOptions, copy};

/// The view: one commit moves `cp` (in its state) and its checkpoint to the head together.
async fn view_step(store: &EmbeddedStore) {
    let Some(head) = store.head().await.unwrap() else {
        return;
    };
    if store.checkpoint("view").await.unwrap() >= Some(head) {
        return;
    }
    store
        .commit_state(StateCommit {
            consumer: "view".into(),
            writes: vec![(b"cp".to_vec(), Some(head.to_bytes().to_vec()))],
            checkpoint: Some(head),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_under_load_holds_whole_batches_up_to_its_head_and_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let source = EmbeddedStore::open(dir.path().join("live")).unwrap();
    support::fill(&source, 5_000).await;
    let stop = Arc::new(AtomicBool::new(false));
    // Acknowledged batches: (positions, events), recorded as the appends return.
    let writer = {
        let store = source.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked: Vec<(Vec<Position>, Vec<Event>)> = Vec::new();
            let mut i = 1_000_000u64;
            while !stop.load(Ordering::Relaxed) && acked.len() < 200_000 {
                let batch: Vec<Event> = (i..i + 3).map(support::event).collect();
                let appended = store.append(batch.clone(), vec![]).await.unwrap();
                acked.push((appended.positions, batch));
                i += 3;
            }
            acked
        })
    };
    let viewer = {
        let store = source.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut steps = 0u32;
            while !stop.load(Ordering::Relaxed) && steps < 200_000 {
                view_step(&store).await;
                steps += 1;
                tokio::task::yield_now().await;
            }
        })
    };
    // Wait (bounded) until both are writing, so that the copy really runs under load.
    for _ in 0..100_000 {
        if source.checkpoint("view").await.unwrap().is_some()
            && source.head().await.unwrap() > Some(Position::from_u64(5_100))
        {
            break;
        }
        tokio::task::yield_now().await;
    }
    let target = EmbeddedStore::open(dir.path().join("copy")).unwrap();
    let copied = copy(&source, &target, ImportOptions::default(), &mut |_| {})
        .await
        .unwrap();
    let head_during = source.head().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    viewer.await.unwrap();

    let head = copied.source.head.unwrap();
    assert!(copied.same_positions);
    assert_eq!(target.head().await.unwrap(), Some(head));
    println!(
        "copied {} events up to {head} while the source reached {head_during:?} ({} batches acknowledged)",
        copied.source.events,
        acked.len()
    );
    let events = support::all(&target).await;
    assert_eq!(events.len() as u64, head.as_u64().unwrap());
    let by_position: std::collections::HashMap<Position, &Event> =
        events.iter().map(|e| (e.position, &e.event)).collect();
    let (mut inside, mut outside) = (0, 0);
    for (positions, batch) in &acked {
        let held = positions.iter().filter(|p| **p <= head).count();
        assert!(
            held == 0 || held == positions.len(),
            "batch {positions:?} is half in a copy up to {head}"
        );
        if held == 0 {
            outside += 1;
            assert!(positions.iter().all(|p| !by_position.contains_key(p)));
        } else {
            inside += 1;
            for (p, e) in positions.iter().zip(batch) {
                assert_eq!(by_position.get(p), Some(&e), "acknowledged event at {p}");
            }
        }
    }
    assert!(
        inside > 0,
        "no acknowledged batch was copied: the test proves nothing"
    );
    println!("{inside} acknowledged batches inside the copy, {outside} after its head");
    // The view's checkpoint and state are one moment's: its state names its checkpoint.
    let cp = target.checkpoint("view").await.unwrap().unwrap();
    assert!(cp <= head);
    assert_eq!(
        target.get_state("view", b"cp").await.unwrap(),
        Some(cp.to_bytes().to_vec())
    );
}
