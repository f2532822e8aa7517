//! Focused tests of the KV engine over `SimKv`: unknown commit results, contention, long reads,
//! the transaction-size bound, the key layout, watches, and a randomised comparison with the
//! reference store.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use dcb_core::{
    AppendCondition, AppendRequest, Event, EventStore, InputError, MemoryStore, Position, Query,
    QueryItem, ReadOptions, StoreError, Uuid,
};
use dcb_kv::{Faults, KvOptions, KvStore, SimConfig, SimKv};

async fn store_with(config: SimConfig, opts: KvOptions) -> KvStore<SimKv> {
    KvStore::open(SimKv::with_config(config), "test", opts)
        .await
        .unwrap()
}

async fn plain() -> KvStore<SimKv> {
    store_with(SimConfig::default(), KvOptions::new()).await
}

fn ev(t: &str, tags: &[&str]) -> Event {
    Event::new(t.to_owned(), t.as_bytes().to_vec()).tags(tags.iter().map(|t| t.to_string()))
}

async fn all(store: &impl EventStore) -> Vec<dcb_core::SequencedEvent> {
    store
        .read(Query::All, ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
}

fn unknown_results(seed: u64) -> SimConfig {
    SimConfig {
        faults: Faults {
            seed,
            unknown_after_commit: 0.5,
            unknown_without_commit: 0.2,
            ..Faults::none()
        },
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_unknown_result_never_duplicates_a_batch_with_ids() {
    let store = store_with(unknown_results(7), KvOptions::new()).await;
    let mut expected = Vec::new();
    for i in 0..60 {
        let batch: Vec<Event> = (0..3)
            .map(|j| {
                ev("Id", &[&format!("b{i}")])
                    .with_id(Uuid::new_v4())
                    .meta("j", j.to_string())
            })
            .collect();
        let appended = store.append(batch.clone(), vec![]).await.unwrap();
        assert_eq!(appended.positions.len(), 3);
        assert!(
            !appended.replayed,
            "our own earlier attempt is not a replay"
        );
        let again = store.append(batch.clone(), vec![]).await.unwrap();
        assert!(again.replayed, "a second call with the same ids is");
        assert_eq!(again.positions, appended.positions);
        expected.extend(batch.into_iter().zip(appended.positions));
    }
    let stats = store.database().stats();
    assert!(
        stats.injected_unknown > 10,
        "the faults must actually fire: {stats:?}"
    );
    let stored = all(&store).await;
    assert_eq!(
        stored.len(),
        expected.len(),
        "no batch stored twice, none lost"
    );
    for (se, (e, p)) in stored.iter().zip(&expected) {
        assert_eq!(&se.event, e);
        assert_eq!(
            se.position, *p,
            "the positions returned are the stored ones"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_unknown_result_never_duplicates_a_batch_without_ids() {
    let store = store_with(unknown_results(11), KvOptions::new()).await;
    let mut expected = Vec::new();
    for i in 0..60 {
        // A mix: some events with ids, some without, so the commit token is used.
        let batch = vec![
            ev("NoId", &[&format!("n{i}")]),
            ev("NoId", &["x"]).with_id(Uuid::new_v4()),
        ];
        let appended = store.append(batch.clone(), vec![]).await.unwrap();
        assert!(
            !appended.replayed,
            "a commit token resolves our own earlier attempt as a first write"
        );
        expected.extend(batch.into_iter().zip(appended.positions));
    }
    assert!(store.database().stats().injected_unknown > 10);
    let stored = all(&store).await;
    assert_eq!(stored.len(), expected.len());
    for (se, (e, p)) in stored.iter().zip(&expected) {
        assert_eq!((&se.event, se.position), (e, *p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_unknown_result_with_a_condition_is_not_reported_as_failed() {
    // The batch matches its own condition: a naive retry after an unknown (but successful)
    // commit would report ConditionFailed for an append that did happen.
    let store = store_with(unknown_results(3), KvOptions::new()).await;
    for i in 0..40 {
        let tag = format!("u{i}");
        let cond = AppendCondition::none_match(Query::tagged(tag.clone()));
        let r = store
            .append(vec![ev("Once", &[&tag])], vec![cond.clone()])
            .await;
        assert!(r.is_ok(), "append {i}: {r:?}");
        let again = store.append(vec![ev("Once", &[&tag])], vec![cond]).await;
        assert!(matches!(
            again,
            Err(StoreError::ConditionFailed { condition: 0 })
        ));
    }
    assert_eq!(all(&store).await.len(), 40);
}

async fn contend(store: KvStore<SimKv>) {
    store
        .append(vec![ev("Seed", &["other"])], vec![])
        .await
        .unwrap();
    let head = store.head().await.unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let q = Query::item(QueryItem::new().r#type("Claimed").tag("seat:1"));
                let e = ev("Claimed", &["seat:1", &format!("by:{i}")]);
                store
                    .append(vec![e], vec![AppendCondition::new(q, head)])
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::ConditionFailed { condition: 0 }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(wins, 1, "exactly one contender wins");
    let claimed = store
        .read(Query::tagged("seat:1"), ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_appends_have_exactly_one_winner() {
    let store = plain().await;
    contend(store.clone()).await;
    assert!(
        store.database().stats().conflicts > 0,
        "the contenders really did conflict"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_conflicting_appends_have_exactly_one_winner_under_faults() {
    for seed in 1..6 {
        contend(
            store_with(
                SimConfig {
                    faults: Faults::chaos(seed),
                    ..SimConfig::default()
                },
                KvOptions::new(),
            )
            .await,
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disjoint_conditions_do_not_conflict() {
    let store = plain().await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let tag = format!("k{i}");
                store
                    .append(
                        vec![ev("A", &[&tag])],
                        vec![AppendCondition::none_match(Query::tagged(tag))],
                    )
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.database().stats().conflicts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_reads_span_fresh_transactions_without_gaps_or_duplicates() {
    // Every batch of the read runs in a new transaction, transactions expire after 50 ms, and the
    // reader is slow; appends keep coming while it reads.
    let config = SimConfig {
        max_tx_age: Duration::from_millis(50),
        ..SimConfig::default()
    };
    let opts = KvOptions::new()
        .read_batch(7)
        .read_tx_span(Duration::from_millis(20));
    let store = store_with(config, opts).await;
    for i in 0..30 {
        let batch: Vec<Event> = (0..10)
            .map(|j| {
                ev(
                    if j % 2 == 0 { "Even" } else { "Odd" },
                    &[&format!("g{}", i % 3), "all"],
                )
            })
            .collect();
        store.append(batch, vec![]).await.unwrap();
    }
    for backwards in [false, true] {
        let q = Query::item(QueryItem::new().r#type("Even").tag("g1"))
            .or(QueryItem::new().r#type("Odd").tag("g2"));
        let mut options = ReadOptions::new();
        if backwards {
            options = options.backwards();
        }
        let mut stream = store.read(q.clone(), options).await.unwrap();
        let head = stream.head();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    store
                        .append(vec![ev("Even", &["g1", "all"])], vec![])
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        };
        let mut got = Vec::new();
        use futures::StreamExt;
        while let Some(e) = stream.next().await {
            got.push(e.unwrap().position);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        writer.await.unwrap();
        let mut expected: Vec<Position> = all(&store)
            .await
            .into_iter()
            .filter(|e| Some(e.position) <= head && q.matches(&e.event))
            .map(|e| e.position)
            .collect();
        if backwards {
            expected.reverse();
        }
        assert_eq!(got, expected);
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    }
}

#[tokio::test]
async fn transaction_size_bound_is_a_typed_error_and_writes_nothing() {
    let store = store_with(SimConfig::default(), KvOptions::new().max_tx_bytes(50_000)).await;
    let batch: Vec<Event> = (0..100)
        .map(|_| Event::new("Big", vec![7u8; 1000]).tag("t"))
        .collect();
    let err = store.append(batch, vec![]).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidInput(InputError::TooLong {
                field: "transaction",
                ..
            })
        ),
        "{err}"
    );
    assert!(all(&store).await.is_empty());
    assert_eq!(store.head().await.unwrap(), None);
}

#[tokio::test]
async fn index_keys_grow_linearly_with_tags() {
    let store = plain().await;
    store.append(vec![ev("Warmup", &[])], vec![]).await.unwrap();
    // Commit tokens are swept in the background after each call: leave them out.
    let mut tokens = store.keys().root().to_vec();
    tokens.push(b'b');
    let db = store.database();
    let keys = || db.live_keys() - db.live_keys_with_prefix(&tokens);
    let before = keys();
    let tags: Vec<String> = (0..20).map(|i| format!("tag{i}")).collect();
    let e = Event::new("Many", vec![]).tags(tags.iter().cloned());
    store.append(vec![e.clone()], vec![]).await.unwrap();
    let after = keys();
    // record + type index + 20 tag postings (the head key already existed).
    assert_eq!(after - before, 1 + 1 + 20);
    let q = Query::item(QueryItem::new().tags(["tag3", "tag17", "tag9"]));
    let found = store
        .read(q, ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].event, e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_head_wakes_on_the_watch_not_by_polling() {
    // With a one-minute refresh, only the watch can wake the waiter in time.
    let store = store_with(
        SimConfig::default(),
        KvOptions::new().watch_refresh(Duration::from_secs(60)),
    )
    .await;
    let first = store
        .append(vec![ev("A", &[])], vec![])
        .await
        .unwrap()
        .last();
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_head(first).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    let second = store
        .append(vec![ev("B", &[])], vec![])
        .await
        .unwrap()
        .last();
    let woke = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(woke, second);
}

#[tokio::test]
async fn namespaces_are_isolated_and_destroy_clears_one() {
    let db = SimKv::new();
    let a = KvStore::open(db.clone(), "a", KvOptions::new())
        .await
        .unwrap();
    let ab = KvStore::open(db.clone(), "ab", KvOptions::new())
        .await
        .unwrap();
    a.append(vec![ev("InA", &["x"])], vec![]).await.unwrap();
    ab.append(vec![ev("InAb", &["x"])], vec![]).await.unwrap();
    assert_eq!(all(&a).await.len(), 1);
    assert_eq!(all(&ab).await[0].event.event_type, "InAb");
    a.destroy().await.unwrap();
    let again = KvStore::open(db, "a", KvOptions::new()).await.unwrap();
    assert!(all(&again).await.is_empty());
    assert_eq!(all(&ab).await.len(), 1);
}

/// A tiny deterministic generator for the randomised comparison.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn random_query(rng: &mut Rng) -> Query {
    if rng.below(8) == 0 {
        return Query::All;
    }
    let items = (0..1 + rng.below(3))
        .map(|_| {
            let mut item = QueryItem::new();
            for _ in 0..rng.below(3) {
                item = item.r#type(format!("T{}", rng.below(4)));
            }
            for _ in 0..rng.below(3) {
                item = item.tag(format!("g{}", rng.below(5)));
            }
            item
        })
        .collect::<Vec<_>>();
    Query::items(items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomised_operations_agree_with_the_reference_store() {
    let kv = store_with(
        SimConfig {
            faults: Faults::chaos(99),
            ..SimConfig::default()
        },
        KvOptions::new().read_batch(5),
    )
    .await;
    let memory = MemoryStore::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Positions differ between the stores: map each through its index in the full log.
    for step in 0..300 {
        if rng.below(3) > 0 {
            let n = 1 + rng.below(4);
            let events: Vec<Event> = (0..n)
                .map(|_| {
                    let tags: Vec<String> = (0..5)
                        .filter(|_| rng.below(3) == 0)
                        .map(|t| format!("g{t}"))
                        .collect();
                    Event::new(format!("T{}", rng.below(4)), vec![]).tags(tags)
                })
                .collect();
            // `after` is drawn as an index into the log and translated per store below.
            let conditions: Vec<AppendCondition> = (0..rng.below(3))
                .map(|_| {
                    let q = random_query(&mut rng);
                    let after = if rng.below(2) == 0 {
                        None
                    } else {
                        Some(Position::from_u64(rng.below(1000)))
                    };
                    AppendCondition::new(q, after)
                })
                .collect();
            let log_kv = all(&kv).await;
            let log_mem = memory.snapshot();
            let translate = |log: &[dcb_core::SequencedEvent], c: &AppendCondition| {
                let after = c.after.and_then(|p| {
                    let idx = usize::try_from(p.get()).unwrap_or(usize::MAX) % (log.len() + 1);
                    if idx == 0 {
                        None
                    } else {
                        Some(log[idx - 1].position)
                    }
                });
                AppendCondition::new(c.fail_if_events_match.clone(), after)
            };
            let ck: Vec<_> = conditions.iter().map(|c| translate(&log_kv, c)).collect();
            let cm: Vec<_> = conditions.iter().map(|c| translate(&log_mem, c)).collect();
            let rk = kv
                .append_request(AppendRequest::new(events.clone()).conditions(ck))
                .await;
            let rm = memory
                .append_request(AppendRequest::new(events).conditions(cm))
                .await;
            match (&rk, &rm) {
                (Ok(a), Ok(b)) => assert_eq!(a.positions.len(), b.positions.len()),
                (
                    Err(StoreError::ConditionFailed { condition: x }),
                    Err(StoreError::ConditionFailed { condition: y }),
                ) => {
                    assert_eq!(x, y)
                }
                _ => panic!("step {step}: kv {rk:?} vs memory {rm:?}"),
            }
        } else {
            let q = random_query(&mut rng);
            let log_kv = all(&kv).await;
            let log_mem = memory.snapshot();
            assert_eq!(log_kv.len(), log_mem.len());
            let idx = rng.below(log_kv.len() as u64 + 1) as usize;
            let mut ok = ReadOptions::new();
            let mut om = ReadOptions::new();
            if idx > 0 {
                ok = ok.after(log_kv[idx - 1].position);
                om = om.after(log_mem[idx - 1].position);
            }
            if rng.below(2) == 0 {
                ok = ok.backwards();
                om = om.backwards();
            }
            if rng.below(2) == 0 {
                let l = rng.below(6);
                ok = ok.limit(l);
                om = om.limit(l);
            }
            let gk = kv
                .read(q.clone(), ok)
                .await
                .unwrap()
                .collect_all()
                .await
                .unwrap();
            let gm = memory
                .read(q.clone(), om)
                .await
                .unwrap()
                .collect_all()
                .await
                .unwrap();
            let ik: Vec<usize> = gk
                .iter()
                .map(|e| {
                    log_kv
                        .iter()
                        .position(|x| x.position == e.position)
                        .unwrap()
                })
                .collect();
            let im: Vec<usize> = gm
                .iter()
                .map(|e| {
                    log_mem
                        .iter()
                        .position(|x| x.position == e.position)
                        .unwrap()
                })
                .collect();
            assert_eq!(ik, im, "step {step}: query {q:?}");
        }
    }
    let stats = kv.database().stats();
    assert!(
        stats.injected_unknown > 0 && stats.injected_conflicts > 0 && stats.injected_too_old > 0,
        "{stats:?}"
    );
}
