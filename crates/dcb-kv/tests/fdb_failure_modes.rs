//! Regression tests for the engine under FoundationDB's real failure modes, one or more per
//! finding of issue 14, each run on `SimKv` with the fault that shows it. Tests with latency run
//! on tokio's paused clock: FoundationDB's 5-second budgets are virtual time, so they neither
//! depend on the machine's speed nor take five seconds.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use dcb_core::{
    AppendCondition, AppendRequest, CheckpointGuard, Event, EventStore, InputError, Position,
    Query, QueryItem, ReadOptions, StateCommit, StoreError,
};
use dcb_kv::{CommitFault, Faults, KvOptions, KvStore, Latency, SimConfig, SimKv};

async fn open(db: &SimKv, opts: KvOptions) -> KvStore<SimKv> {
    KvStore::open(db.clone(), "test", opts).await.unwrap()
}

fn with_latency(latency: Latency) -> SimKv {
    SimKv::with_config(SimConfig {
        latency,
        ..SimConfig::default()
    })
}

async fn count_all(store: &impl EventStore) -> usize {
    store
        .read(Query::All, ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .len()
}

fn is_input_too_long(e: &StoreError, what: &str) -> bool {
    matches!(e, StoreError::InvalidInput(InputError::TooLong { field, .. }) if *field == what)
}

/// Finding 1: a compare-and-set whose commit conflicted but was reported as
/// `commit_unknown_result` must not be taken for a success, even though the winner wrote the
/// same checkpoint. Two replicas renewing one lease from version v: exactly one may win.
#[tokio::test(start_paused = true)]
async fn cas_after_a_lost_conflict_reply_has_exactly_one_winner() {
    let db = SimKv::with_config(SimConfig {
        faults: Faults {
            seed: 1,
            unknown_on_conflict: 1.0,
            ..Faults::none()
        },
        latency: Latency::fixed(Duration::from_millis(1)),
        ..SimConfig::default()
    });
    let store = open(&db, KvOptions::new()).await;
    for round in 0..10u64 {
        let stored = store.checkpoint("lease:work").await.unwrap();
        let next = Position::from_u64(round + 1);
        let cas = |holder: &'static str| {
            let store = store.clone();
            async move {
                store
                    .commit_state(StateCommit {
                        consumer: "lease:work".into(),
                        writes: vec![(b"holder".to_vec(), Some(holder.as_bytes().to_vec()))],
                        checkpoint: Some(next),
                        guard: CheckpointGuard::Exactly(stored),
                    })
                    .await
            }
        };
        let (a, b) = tokio::join!(cas("a"), cas("b"));
        let winners = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: a = {a:?}, b = {b:?}");
        let loser = if a.is_ok() { b } else { a };
        assert!(
            matches!(loser, Err(StoreError::CheckpointConflict { .. })),
            "{loser:?}"
        );
        let holder = store.get_state("lease:work", b"holder").await.unwrap();
        assert!(holder.is_some());
    }
    assert!(db.stats().injected_unknown > 0, "the fault was exercised");
}

fn two_byte_tags() -> Vec<String> {
    (0..64)
        .map(|i| format!("{}{}", (b'a' + i / 26) as char, (b'a' + i % 26) as char))
        .collect()
}

/// Finding 2: 1 872 events with 64 two-byte tags each are ~10.7 MB to FoundationDB's
/// accounting (56 bytes per mutation, 32 per conflict range, 4-byte stamp offsets). The engine
/// must refuse it as input before writing, not run into `transaction_too_large`. (In namespace
/// "a" the old estimate was 8 997 216 bytes, under its 9 000 000 budget.)
#[tokio::test]
async fn an_append_over_foundationdbs_size_accounting_is_refused_as_input() {
    let db = SimKv::new();
    let store = KvStore::open(db.clone(), "a", KvOptions::new().max_tx_bytes(9_000_000))
        .await
        .unwrap();
    let tags = two_byte_tags();
    let events: Vec<Event> = (0..1872)
        .map(|_| Event::new("E", Vec::new()).tags(tags.iter().cloned()))
        .collect();
    let err = store.append(events, vec![]).await.unwrap_err();
    assert!(is_input_too_long(&err, "transaction"), "{err}");
    assert_eq!(
        db.stats().commits,
        1,
        "only the schema marker was ever committed"
    );
    assert_eq!(store.head().await.unwrap(), None);
}

/// Finding 2: whatever the estimate, `transaction_too_large` (2101) from the store is a typed
/// input error, at once (it is not retryable).
#[tokio::test]
async fn transaction_too_large_from_the_store_is_a_typed_input_error() {
    let db = SimKv::with_config(SimConfig {
        tx_size_limit: 2_000,
        ..SimConfig::default()
    });
    let store = open(&db, KvOptions::new()).await;
    let events: Vec<Event> = (0..20)
        .map(|_| Event::new("E", vec![1; 100]).tag("t"))
        .collect();
    let err = store.append(events, vec![]).await.unwrap_err();
    assert!(is_input_too_long(&err, "transaction"), "{err}");
    assert_eq!(db.stats().too_large, 1, "refused once, not retried");
    assert_eq!(store.head().await.unwrap(), None);
}

/// Finding 2: the engine's estimate is never below FoundationDB's count, for random appends
/// (random sizes, tags, ids, conditions and a tracking checkpoint).
#[tokio::test]
async fn the_size_estimate_is_never_below_foundationdbs_count() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for case in 0..60 {
        let db = SimKv::new();
        let store = open(&db, KvOptions::new()).await;
        let before = db.stats().largest_commit_bytes;
        let n = 1 + next(40) as usize;
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let tags: Vec<String> = (0..next(8))
                    .map(|t| format!("t{}-{}", t, "x".repeat(next(30) as usize)))
                    .collect();
                let mut e =
                    Event::new(format!("T{}", next(5)), vec![0; next(3000) as usize]).tags(tags);
                if next(2) == 0 {
                    e = e.with_id(dcb_core::Uuid::from_u128((case as u128) << 32 | i as u128));
                }
                e
            })
            .collect();
        let conditions: Vec<AppendCondition> = (0..next(3))
            .map(|_| {
                AppendCondition::new(
                    Query::item(
                        QueryItem::new()
                            .types([format!("T{}", next(5))])
                            .tags([format!("c{}", next(4)), format!("d{}", next(4))]),
                    ),
                    None,
                )
            })
            .collect();
        let mut request = AppendRequest::new(events).conditions(conditions);
        if next(2) == 0 {
            request = request.track("consumer-x", Position::from_u64(1 + next(100)));
        }
        let estimate = store.estimate_append_bytes(&request).unwrap();
        store.append_request(request).await.unwrap();
        let measured = db.stats().largest_commit_bytes;
        assert!(measured > before, "case {case}: the append was measured");
        assert!(
            estimate >= measured as usize,
            "case {case}: estimate {estimate} < FoundationDB's count {measured}"
        );
    }
}

/// Finding 3: when the retry budget runs out after attempts whose outcome is unknown (here:
/// timed out while still in flight), the call must settle the outcome before it returns, so
/// that the caller's retry cannot be followed by the abandoned attempt landing too.
#[tokio::test]
async fn an_exhausted_retry_budget_never_lets_an_abandoned_attempt_land() {
    let db = SimKv::new();
    let store = open(&db, KvOptions::new().max_retries(2)).await;
    db.script([CommitFault::Late, CommitFault::Late]);
    let first = store.append(vec![Event::new("Once", vec![])], vec![]).await;
    if first.is_err() {
        // What any client does with a transient error: try again.
        store
            .append(vec![Event::new("Once", vec![])], vec![])
            .await
            .unwrap();
    }
    db.land_late_commits();
    assert_eq!(count_all(&store).await, 1, "first call: {first:?}");
}

/// Finding 3: if even the fencing transaction cannot settle the outcome, the error says the
/// outcome is unknown (a `Storage` error), never "retrying may succeed" (`Unavailable`).
#[tokio::test]
async fn an_unsettled_outcome_is_not_reported_as_transient() {
    let db = SimKv::new();
    let store = open(&db, KvOptions::new().max_retries(2)).await;
    db.script([CommitFault::Late; 8]);
    let err = store
        .append(vec![Event::new("Once", vec![])], vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Storage(_)), "{err:?}");
    assert!(err.to_string().contains("outcome unknown"), "{err}");
}

/// Finding 4: a view rebuild's reset that timed out and was retried must not land later and
/// wipe the checkpoints the rebuild wrote since.
#[tokio::test]
async fn a_late_reset_never_wipes_a_rebuilds_checkpoint() {
    let db = SimKv::new();
    let store = open(&db, KvOptions::new()).await;
    let commit = |p: u64| StateCommit {
        consumer: "view:v".into(),
        writes: vec![(b"row".to_vec(), Some(p.to_be_bytes().to_vec()))],
        checkpoint: Some(Position::from_u64(p)),
        guard: CheckpointGuard::Advancing,
    };
    store.commit_state(commit(5)).await.unwrap();
    db.script([CommitFault::Late]);
    store.reset_consumer("view:v").await.unwrap();
    store.commit_state(commit(1)).await.unwrap();
    db.land_late_commits();
    assert_eq!(
        store.checkpoint("view:v").await.unwrap(),
        Some(Position::from_u64(1))
    );
    assert!(store.get_state("view:v", b"row").await.unwrap().is_some());
}

/// Finding 4: a blind state write (no checkpoint) that timed out and was retried must not land
/// after a later commit deleted the entry.
#[tokio::test]
async fn a_late_blind_state_write_never_resurrects_a_deleted_entry() {
    let db = SimKv::new();
    let store = open(&db, KvOptions::new()).await;
    let write = |v: Option<&[u8]>| StateCommit {
        consumer: "automation:a".into(),
        writes: vec![(b"retry/1".to_vec(), v.map(<[u8]>::to_vec))],
        ..StateCommit::default()
    };
    db.script([CommitFault::Late]);
    store.commit_state(write(Some(b"entry"))).await.unwrap();
    store.commit_state(write(None)).await.unwrap();
    db.land_late_commits();
    assert_eq!(
        store.get_state("automation:a", b"retry/1").await.unwrap(),
        None
    );
}

/// Finding 4: a `destroy` that timed out and was retried must not land after the namespace was
/// opened and written again.
#[tokio::test]
async fn a_late_destroy_never_wipes_a_reopened_namespace() {
    let db = SimKv::new();
    let store = open(&db, KvOptions::new()).await;
    store
        .append(vec![Event::new("Old", vec![])], vec![])
        .await
        .unwrap();
    db.script([CommitFault::Late]);
    store.destroy().await.unwrap();
    let again = open(&db, KvOptions::new()).await;
    again
        .append(vec![Event::new("New", vec![])], vec![])
        .await
        .unwrap();
    db.land_late_commits();
    assert_eq!(count_all(&again).await, 1);
}

/// Finding 5: a condition whose first tag has thousands of postings that lack its other tags
/// must still be checked within one 5-second transaction (1 ms per round trip).
#[tokio::test(start_paused = true)]
async fn a_condition_over_many_postings_commits_within_the_budget() {
    let db = with_latency(Latency::fixed(Duration::from_millis(1)));
    let store = open(&db, KvOptions::new().max_retries(4)).await;
    for _ in 0..6 {
        let batch: Vec<Event> = (0..1000)
            .map(|_| Event::new("E", vec![]).tag("a"))
            .collect();
        store.append(batch, vec![]).await.unwrap();
    }
    let q = Query::item(QueryItem::new().tags(["a", "b"]));
    let started = tokio::time::Instant::now();
    store
        .append(
            vec![Event::new("E", vec![]).tags(["a", "b"])],
            vec![AppendCondition::new(q, None)],
        )
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Finding 6: reading every event when events are large must make progress in requests of
/// bounded size (2 MB/s per request, 12 MB of events).
#[tokio::test(start_paused = true)]
async fn a_large_read_of_all_events_finishes_within_the_budget() {
    let db = with_latency(Latency {
        base: Duration::from_millis(1),
        jitter: Duration::ZERO,
        bytes_per_sec: 2_000_000,
    });
    let store = open(&db, KvOptions::new().max_retries(4)).await;
    for _ in 0..5 {
        let batch: Vec<Event> = (0..40)
            .map(|_| Event::new("Big", vec![9; 60_000]))
            .collect();
        store.append(batch, vec![]).await.unwrap();
    }
    let read = store.read(Query::All, ReadOptions::new()).await.unwrap();
    let events = read.collect_all().await.unwrap();
    assert_eq!(events.len(), 200);
}

/// Finding 7: one append wakes many local waiters through one watch on the head key, not one
/// watch (and two head reads) per waiter.
#[tokio::test(start_paused = true)]
async fn one_head_watcher_serves_every_local_waiter() {
    let db = with_latency(Latency::fixed(Duration::from_millis(1)));
    let store = open(&db, KvOptions::new()).await;
    let first = store
        .append(vec![Event::new("A", vec![])], vec![])
        .await
        .unwrap()
        .last();
    let waiters: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.wait_for_head(first).await })
        })
        .collect();
    // On a paused clock a sleep ends only once every other task is idle: all waiters parked.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = db.stats();
    let second = store
        .append(vec![Event::new("B", vec![])], vec![])
        .await
        .unwrap()
        .last();
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), second);
    }
    let after = db.stats();
    assert!(
        after.watches <= 3,
        "{} watches for 50 waiters",
        after.watches
    );
    // The append itself reads a handful of keys; the waiters read the head once, together.
    assert!(
        after.reads - before.reads <= 10,
        "{} reads to wake 50 waiters",
        after.reads - before.reads
    );
}

/// Finding 7: when watches fail, waiters still wake (the watcher polls the head instead).
#[tokio::test(start_paused = true)]
async fn waiters_wake_by_polling_when_watches_fail() {
    let db = SimKv::with_config(SimConfig {
        faults: Faults {
            seed: 9,
            watch_error: 1.0,
            ..Faults::none()
        },
        latency: Latency::fixed(Duration::from_millis(1)),
        ..SimConfig::default()
    });
    let store = open(&db, KvOptions::new()).await;
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_head(None).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let head = store
        .append(vec![Event::new("A", vec![])], vec![])
        .await
        .unwrap()
        .last();
    let woke = tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .unwrap();
    assert_eq!(woke.unwrap().unwrap(), head);
    assert!(db.stats().injected_watch_errors > 0);
}

/// Finding 8: commit tokens are deleted once their call has returned.
#[tokio::test(start_paused = true)]
async fn commit_tokens_are_cleared_after_the_call() {
    let db = with_latency(Latency::fixed(Duration::from_millis(1)));
    let store = open(&db, KvOptions::new()).await;
    for i in 0..20 {
        store
            .append(vec![Event::new("E", vec![]).tag(format!("t{i}"))], vec![])
            .await
            .unwrap();
        store
            .commit_state(StateCommit {
                consumer: "c".into(),
                writes: vec![(b"k".to_vec(), Some(vec![i]))],
                checkpoint: Some(Position::from_u64(u64::from(i) + 1)),
                guard: CheckpointGuard::Advancing,
            })
            .await
            .unwrap();
    }
    let mut tokens = store.keys().root().to_vec();
    tokens.push(b'b');
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while db.live_keys_with_prefix(&tokens) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(db.live_keys_with_prefix(&tokens), 0);
}

/// Finding 9: a store whose head was written on another cluster (versions not comparable:
/// a DR switch, a restored copy) is refused at open instead of issuing positions below it.
#[tokio::test]
async fn positions_from_another_cluster_are_refused_at_open() {
    let db = SimKv::new();
    let store = open(&db, KvOptions::new()).await;
    for _ in 0..50 {
        store
            .append(vec![Event::new("E", vec![])], vec![])
            .await
            .unwrap();
    }
    let copy = db.copy_to_new_cluster(1);
    let err = KvStore::open(copy, "test", KvOptions::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupted(_)), "{err:?}");
    assert!(err.to_string().contains("cluster"), "{err}");
}
