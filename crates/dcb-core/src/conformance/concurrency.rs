//! Rules with real concurrent tasks sharing one store.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::JoinHandle;

use super::support::*;
use crate::{AppendCondition, AppendRequest, Appended, Position, Query, ReadOptions, StoreError};

async fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    out
}

/// 16 tasks read a unique tag, then append on condition "nothing after my head": exactly one
/// wins, the others fail their condition.
pub async fn contenders_for_unique_tag_one_winner(store: Store) {
    seed_standard(&store).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let q = Query::tagged("username:ada");
                let (h, existing) = read(&store, q.clone(), ReadOptions::new()).await;
                assert!(existing.is_empty());
                barrier.wait().await;
                let e = ev_data("Registered", &["username:ada"], format!("{i}"));
                store
                    .append(vec![e], vec![AppendCondition::new(q, h)])
                    .await
            })
        })
        .collect();
    let results = join_all(handles).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "exactly one contender wins: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::ConditionFailed { condition: 0 }),
                "{e:?}"
            );
        }
    }
    assert_eq!(
        read(&store, Query::tagged("username:ada"), ReadOptions::new())
            .await
            .1
            .len(),
        1
    );
}

/// Contenders on disjoint tags all succeed.
pub async fn disjoint_tags_all_succeed(store: Store) {
    seed_standard(&store).await;
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let q = Query::tagged(format!("user:{i}"));
                let (h, _) = read(&store, q.clone(), ReadOptions::new()).await;
                barrier.wait().await;
                store
                    .append(
                        vec![ev("Registered", &[&format!("user:{i}")])],
                        vec![AppendCondition::new(q, h)],
                    )
                    .await
            })
        })
        .collect();
    for (i, r) in join_all(handles).await.into_iter().enumerate() {
        if let Err(e) = r {
            panic!("contender {i} on its own tag failed: {e:?}");
        }
    }
    assert_eq!(
        read(&store, Query::of_type("Registered"), ReadOptions::new())
            .await
            .1
            .len(),
        16
    );
}

/// Readers running alongside writers of 10-event batches see each batch whole or not at all.
pub async fn readers_never_see_partial_batch(store: Store) {
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for b in 0..25 {
                    let tag = format!("batch:{w}:{b}");
                    let batch = (0..10).map(|_| ev("Part", &[&tag, "part"])).collect();
                    append(&store, batch).await;
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let store = store.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut reads = 0u32;
                while !done.load(Ordering::Relaxed) || reads < 5 {
                    let q = if r % 2 == 0 {
                        Query::All
                    } else {
                        Query::tagged("part")
                    };
                    let (_, events) = read(&store, q, ReadOptions::new()).await;
                    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                    for e in &events {
                        *counts.entry(e.event.tags[0].to_string()).or_default() += 1;
                    }
                    for (tag, n) in counts {
                        assert_eq!(n, 10, "reader {r} saw {n} of the 10 events of {tag}");
                    }
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    join_all(writers).await;
    done.store(true, Ordering::Relaxed);
    let reads = join_all(readers).await;
    assert!(reads.iter().all(|&n| n >= 5));
    assert_eq!(read_all(&store).await.len(), 1000);
}

/// Every observer's successive heads never decrease, and each read's events stay at or below its head.
pub async fn heads_never_go_backwards(store: Store) {
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    append(&store, vec![ev("Tick", &["tick"])]).await;
                }
            })
        })
        .collect();
    let observers: Vec<_> = (0..4)
        .map(|o| {
            let store = store.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut last: Option<Position> = None;
                let mut n = 0u32;
                loop {
                    // Read the flag first: an observation made after it was set sees every write.
                    let finished = done.load(Ordering::Acquire);
                    let h = if o % 2 == 0 {
                        head(&store).await
                    } else {
                        let (h, events) = read(
                            &store,
                            Query::tagged("tick"),
                            ReadOptions::new().backwards().limit(1),
                        )
                        .await;
                        if let Some(e) = events.first() {
                            assert!(
                                Some(e.position) <= h,
                                "read returned {:?} above its head {h:?}",
                                e.position
                            );
                        }
                        h
                    };
                    assert!(h >= last, "observer {o}: head went from {last:?} to {h:?}");
                    last = h;
                    n += 1;
                    if finished && n >= 5 {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                last
            })
        })
        .collect();
    join_all(writers).await;
    done.store(true, Ordering::Release);
    let lasts = join_all(observers).await;
    let final_head = head(&store).await;
    assert!(
        lasts.iter().all(|l| *l == final_head),
        "every observer ends at the final head"
    );
}

/// Concurrent appends all get distinct positions, each batch increasing internally.
pub async fn concurrent_appends_get_distinct_positions(store: Store) {
    let handles: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut out: Vec<Appended> = Vec::new();
                for _ in 0..20 {
                    let batch = (0..3).map(|_| ev("E", &[&format!("task:{t}")])).collect();
                    out.push(append(&store, batch).await);
                }
                out
            })
        })
        .collect();
    let mut all = HashSet::new();
    for (t, appended) in join_all(handles).await.into_iter().enumerate() {
        let mut prev: Option<Position> = None;
        for a in appended {
            assert!(a.positions.windows(2).all(|w| w[0] < w[1]));
            assert!(
                Some(a.positions[0]) > prev,
                "task {t}: its own appends go forward"
            );
            prev = a.last();
            for p in a.positions {
                assert!(all.insert(p), "position {p:?} given twice");
            }
        }
    }
    assert_eq!(all.len(), 16 * 20 * 3);
    let stored: HashSet<_> = positions(&read_all(&store).await).into_iter().collect();
    assert_eq!(stored, all);
}

/// 8 tasks increment a counter by read-decide-append with a condition, retrying on conflict:
/// the final count is exact and every value is written once.
pub async fn contention_loop_converges(store: Store) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 10;
    let q = Query::tagged("counter:1");
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = store.clone();
            let q = q.clone();
            tokio::spawn(async move {
                let mut retries = 0u32;
                for _ in 0..PER_TASK {
                    loop {
                        let (h, last) =
                            read(&store, q.clone(), ReadOptions::new().backwards().limit(1)).await;
                        let value: u64 = match last.first() {
                            Some(e) => String::from_utf8_lossy(&e.event.data)
                                .parse()
                                .unwrap_or(u64::MAX),
                            None => 0,
                        };
                        let next = ev_data("Incremented", &["counter:1"], format!("{}", value + 1));
                        match store
                            .append(vec![next], vec![AppendCondition::new(q.clone(), h)])
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::ConditionFailed { .. }) => {
                                retries += 1;
                                assert!(retries < 10_000, "the retry loop does not converge");
                                tokio::task::yield_now().await;
                            }
                            Err(e) => panic!("unexpected error: {e:?}"),
                        }
                    }
                }
                retries
            })
        })
        .collect();
    join_all(handles).await;
    let (_, events) = read(&store, q, ReadOptions::new()).await;
    assert_eq!(events.len(), TASKS * PER_TASK);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.event.data,
            format!("{}", i + 1).into_bytes(),
            "value {i} written once, in order"
        );
    }
}

/// Several tasks advance one consumer to the same checkpoint: exactly one wins.
pub async fn concurrent_tracking_one_winner(store: Store) {
    let target = Position::from_u64(42);
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let req =
                    AppendRequest::new(vec![ev_data("Processed", &["processed"], format!("{i}"))])
                        .track("worker", target);
                store.append_request(req).await
            })
        })
        .collect();
    let results = join_all(handles).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, StoreError::CheckpointConflict { .. }), "{e:?}");
        }
    }
    assert_eq!(
        read(&store, Query::tagged("processed"), ReadOptions::new())
            .await
            .1
            .len(),
        1
    );
    match store.checkpoint("worker").await {
        Ok(c) => assert_eq!(c, Some(target)),
        Err(e) => panic!("{e:?}"),
    }
}

/// The same batch with ids sent by several tasks at once is written once; every task gets the
/// same positions and exactly one is not a replay.
pub async fn concurrent_identical_retries_write_once(store: Store) {
    let ids = [id(), id(), id()];
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let batch = ids
                    .iter()
                    .map(|id| ev("Charged", &["card"]).with_id(*id))
                    .collect();
                barrier.wait().await;
                store.append(batch, Vec::new()).await
            })
        })
        .collect();
    let results: Vec<Appended> = join_all(handles)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(a) => a,
            Err(e) => panic!("an identical retry failed: {e:?}"),
        })
        .collect();
    assert_eq!(
        results.iter().filter(|a| !a.replayed).count(),
        1,
        "exactly one write"
    );
    assert!(results.iter().all(|a| a.positions == results[0].positions));
    assert_eq!(read_all(&store).await.len(), 3);
}
