//! Rules for consumer checkpoints (tracking) and consumer state.

use super::support::*;
use crate::{
    AppendCondition, AppendRequest, CheckpointGuard, InputError, Position, Query, ReadOptions,
    StateCommit, StoreError,
};

fn pos(n: u64) -> Position {
    Position::from_u64(n)
}

async fn checkpoint(store: &Store, consumer: &str) -> Option<Position> {
    match store.checkpoint(consumer).await {
        Ok(c) => c,
        Err(e) => panic!("checkpoint({consumer:?}) failed: {e:?}"),
    }
}

async fn get(store: &Store, consumer: &str, key: &[u8]) -> Option<Vec<u8>> {
    match store.get_state(consumer, key).await {
        Ok(v) => v,
        Err(e) => panic!("get_state failed: {e:?}"),
    }
}

async fn commit(store: &Store, c: StateCommit) {
    if let Err(e) = store.commit_state(c).await {
        panic!("commit_state failed: {e:?}");
    }
}

async fn scan(
    store: &Store,
    consumer: &str,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    match store.scan_state(consumer, prefix, after, limit).await {
        Ok(v) => v,
        Err(e) => panic!("scan_state failed: {e:?}"),
    }
}

fn put(k: &str, v: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
}

fn del(k: &str) -> (Vec<u8>, Option<Vec<u8>>) {
    (k.as_bytes().to_vec(), None)
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

#[track_caller]
fn assert_checkpoint_conflict<T: std::fmt::Debug>(
    r: Result<T, StoreError>,
    stored: Option<Position>,
    requested: Position,
) {
    match r {
        Err(StoreError::CheckpointConflict {
            stored: s,
            requested: q,
            ..
        }) => {
            assert_eq!((s, q), (stored, Some(requested)));
        }
        other => panic!("expected CheckpointConflict, got {other:?}"),
    }
}

/// An append with tracking sets the consumer's checkpoint.
pub async fn tracking_sets_checkpoint(store: Store) {
    let p = seed_standard(&store).await;
    let req = AppendRequest::new(vec![ev("Handled", &[])]).track("view", p[2]);
    match store.append_request(req).await {
        Ok(a) => assert!(!a.replayed),
        Err(e) => panic!("append with tracking failed: {e:?}"),
    }
    assert_eq!(checkpoint(&store, "view").await, Some(p[2]));
    let req = AppendRequest::new(vec![ev("Handled", &[])]).track("view", p[4]);
    if let Err(e) = store.append_request(req).await {
        panic!("advancing append failed: {e:?}");
    }
    assert_eq!(checkpoint(&store, "view").await, Some(p[4]));
}

/// With no stored checkpoint any position is accepted, even zero.
pub async fn tracking_first_checkpoint_any_position(store: Store) {
    let req = AppendRequest::new(vec![ev("A", &[])]).track("fresh", Position::ZERO);
    if let Err(e) = store.append_request(req).await {
        panic!("first tracking append failed: {e:?}");
    }
    assert_eq!(checkpoint(&store, "fresh").await, Some(Position::ZERO));
}

/// A tracking position equal to the stored one fails and writes nothing.
pub async fn tracking_equal_position_conflicts_and_writes_nothing(store: Store) {
    let req = AppendRequest::new(vec![ev("A", &[])]).track("view", pos(5));
    if let Err(e) = store.append_request(req).await {
        panic!("{e:?}");
    }
    let before = read_all(&store).await;
    let req = AppendRequest::new(vec![ev("Again", &["again"])]).track("view", pos(5));
    assert_checkpoint_conflict(store.append_request(req).await, Some(pos(5)), pos(5));
    assert_unchanged(&store, &before).await;
    assert!(
        read(&store, Query::tagged("again"), ReadOptions::new())
            .await
            .1
            .is_empty()
    );
    assert_eq!(checkpoint(&store, "view").await, Some(pos(5)));
}

/// A tracking position below the stored one fails.
pub async fn tracking_lower_position_conflicts(store: Store) {
    let req = AppendRequest::new(vec![ev("A", &[])]).track("view", pos(10));
    if let Err(e) = store.append_request(req).await {
        panic!("{e:?}");
    }
    let req = AppendRequest::new(vec![ev("B", &[])]).track("view", pos(3));
    assert_checkpoint_conflict(store.append_request(req).await, Some(pos(10)), pos(3));
    assert_eq!(read_all(&store).await.len(), 1);
    assert_eq!(checkpoint(&store, "view").await, Some(pos(10)));
}

/// An append whose condition fails does not move the checkpoint.
pub async fn tracking_with_failed_condition_keeps_checkpoint(store: Store) {
    seed_standard(&store).await;
    let req = AppendRequest::new(vec![ev("A", &[])])
        .condition(AppendCondition::none_match(Query::tagged("x")))
        .track("view", pos(7));
    match store.append_request(req).await {
        Err(StoreError::ConditionFailed { condition: 0 }) => {}
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    assert_eq!(checkpoint(&store, "view").await, None);
}

/// A consumer never written has no checkpoint and no state.
pub async fn checkpoint_of_unknown_consumer_is_none(store: Store) {
    assert_eq!(checkpoint(&store, "nobody").await, None);
    assert_eq!(get(&store, "nobody", b"k").await, None);
    assert!(scan(&store, "nobody", b"", None, 10).await.is_empty());
}

/// A state commit writes its keys and its checkpoint together.
pub async fn commit_state_writes_keys_and_checkpoint(store: Store) {
    let c = StateCommit {
        consumer: "view".into(),
        writes: vec![put("a", "1"), put("b", "2")],
        checkpoint: Some(pos(3)),
        ..Default::default()
    };
    commit(&store, c).await;
    assert_eq!(get(&store, "view", b"a").await, Some(b"1".to_vec()));
    assert_eq!(get(&store, "view", b"b").await, Some(b"2".to_vec()));
    assert_eq!(checkpoint(&store, "view").await, Some(pos(3)));
    let c = StateCommit {
        consumer: "view".into(),
        writes: vec![put("a", "10")],
        checkpoint: Some(pos(4)),
        ..Default::default()
    };
    commit(&store, c).await;
    assert_eq!(get(&store, "view", b"a").await, Some(b"10".to_vec()));
    assert_eq!(checkpoint(&store, "view").await, Some(pos(4)));
}

/// A state commit whose checkpoint does not advance writes none of its keys.
pub async fn commit_state_checkpoint_conflict_writes_nothing(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![put("a", "1")],
            checkpoint: Some(pos(5)),
            ..Default::default()
        },
    )
    .await;
    let c = StateCommit {
        consumer: "view".into(),
        writes: vec![put("a", "2"), put("new", "x")],
        checkpoint: Some(pos(5)),
        ..Default::default()
    };
    assert_checkpoint_conflict(store.commit_state(c).await, Some(pos(5)), pos(5));
    assert_eq!(get(&store, "view", b"a").await, Some(b"1".to_vec()));
    assert_eq!(get(&store, "view", b"new").await, None);
    assert_eq!(checkpoint(&store, "view").await, Some(pos(5)));
}

/// A state commit without a checkpoint writes keys and leaves the checkpoint alone.
pub async fn commit_state_without_checkpoint_keeps_it(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![],
            checkpoint: Some(pos(9)),
            ..Default::default()
        },
    )
    .await;
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![put("k", "v")],
            checkpoint: None,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(get(&store, "view", b"k").await, Some(b"v".to_vec()));
    assert_eq!(checkpoint(&store, "view").await, Some(pos(9)));
}

/// A state commit with an invalid key is rejected whole.
pub async fn commit_state_rejects_invalid_key_and_writes_nothing(store: Store) {
    let c = StateCommit {
        consumer: "view".into(),
        writes: vec![put("good", "1"), (Vec::new(), Some(b"x".to_vec()))],
        checkpoint: Some(pos(1)),
        ..Default::default()
    };
    let err = expect_input_error(store.commit_state(c).await);
    assert_eq!(err, InputError::Empty { field: "state key" });
    let long = vec![b'k'; crate::limits::MAX_STATE_KEY_LEN + 1];
    let c = StateCommit {
        consumer: "view".into(),
        writes: vec![put("good", "1"), (long, None)],
        checkpoint: None,
        ..Default::default()
    };
    assert!(matches!(
        expect_input_error(store.commit_state(c).await),
        InputError::TooLong {
            field: "state key",
            ..
        }
    ));
    let big = vec![0u8; crate::limits::MAX_STATE_VALUE_LEN + 1];
    let c = StateCommit {
        consumer: "view".into(),
        writes: vec![put("good", "1"), (b"v".to_vec(), Some(big))],
        checkpoint: None,
        ..Default::default()
    };
    assert!(matches!(
        expect_input_error(store.commit_state(c).await),
        InputError::TooLong {
            field: "state value",
            ..
        }
    ));
    assert_eq!(get(&store, "view", b"good").await, None);
    assert_eq!(checkpoint(&store, "view").await, None);
}

/// Writes in one commit apply in order: put then delete removes, delete then put keeps.
pub async fn state_writes_apply_in_order(store: Store) {
    let c = StateCommit {
        consumer: "view".into(),
        writes: vec![
            put("gone", "1"),
            del("gone"),
            del("kept"),
            put("kept", "2"),
            put("twice", "a"),
            put("twice", "b"),
        ],
        checkpoint: None,
        ..Default::default()
    };
    commit(&store, c).await;
    assert_eq!(get(&store, "view", b"gone").await, None);
    assert_eq!(get(&store, "view", b"kept").await, Some(b"2".to_vec()));
    assert_eq!(get(&store, "view", b"twice").await, Some(b"b".to_vec()));
}

/// A missing key reads as `None`; an empty value is not a missing key.
pub async fn get_state_missing_key_is_none(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![put("empty", "")],
            checkpoint: None,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(get(&store, "view", b"missing").await, None);
    assert_eq!(get(&store, "view", b"empty").await, Some(Vec::new()));
}

/// Deleting a key removes it from gets and scans; deleting a missing key is fine.
pub async fn state_deletes(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![put("a", "1"), put("b", "2")],
            checkpoint: None,
            ..Default::default()
        },
    )
    .await;
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![del("a"), del("never")],
            checkpoint: None,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(get(&store, "view", b"a").await, None);
    assert_eq!(scan(&store, "view", b"", None, 10).await, kv(&[("b", "2")]));
}

/// A scan returns the keys with the prefix, in byte order.
pub async fn scan_state_prefix_in_key_order(store: Store) {
    let writes = vec![
        put("user:2", "b"),
        put("user:10", "c"),
        put("user:1", "a"),
        put("usr", "x"),
        put("order:1", "o"),
        put("user", "u"),
    ];
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes,
            checkpoint: None,
            ..Default::default()
        },
    )
    .await;
    let got = scan(&store, "view", b"user:", None, 100).await;
    assert_eq!(
        got,
        kv(&[("user:1", "a"), ("user:10", "c"), ("user:2", "b")])
    );
    let all = scan(&store, "view", b"", None, 100).await;
    let keys: Vec<_> = all
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        keys,
        ["order:1", "user", "user:1", "user:10", "user:2", "usr"]
    );
    assert!(scan(&store, "view", b"zzz", None, 100).await.is_empty());
}

/// `after` and `limit` page through a scan without gaps or repeats.
pub async fn scan_state_after_and_limit(store: Store) {
    let writes: Vec<_> = (0..25)
        .map(|i| put(&format!("k{i:02}"), &format!("{i}")))
        .collect();
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes,
            checkpoint: None,
            ..Default::default()
        },
    )
    .await;
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = scan(&store, "view", b"k", after.as_deref(), 7).await;
        assert!(page.len() <= 7);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|(k, _)| k.clone());
        seen.extend(page);
    }
    let expected: Vec<_> = (0..25)
        .map(|i| (format!("k{i:02}").into_bytes(), format!("{i}").into_bytes()))
        .collect();
    assert_eq!(seen, expected);
    assert!(scan(&store, "view", b"k", None, 0).await.is_empty());
    assert_eq!(
        scan(&store, "view", b"k", Some(b"k23"), 10).await,
        kv(&[("k24", "24")])
    );
}

/// Resetting a consumer removes its state and checkpoint, and only its own.
pub async fn reset_consumer_clears_state_and_checkpoint(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![put("a", "1"), put("b", "2")],
            checkpoint: Some(pos(8)),
            ..Default::default()
        },
    )
    .await;
    commit(
        &store,
        StateCommit {
            consumer: "other".into(),
            writes: vec![put("a", "x")],
            checkpoint: Some(pos(2)),
            ..Default::default()
        },
    )
    .await;
    if let Err(e) = store.reset_consumer("view").await {
        panic!("reset failed: {e:?}");
    }
    assert_eq!(checkpoint(&store, "view").await, None);
    assert!(scan(&store, "view", b"", None, 10).await.is_empty());
    assert_eq!(get(&store, "other", b"a").await, Some(b"x".to_vec()));
    assert_eq!(checkpoint(&store, "other").await, Some(pos(2)));
    // After a reset the checkpoint may start low again.
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![],
            checkpoint: Some(pos(1)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(checkpoint(&store, "view").await, Some(pos(1)));
}

/// Consumers do not see each other's keys or checkpoints, even when names share a prefix.
pub async fn consumers_are_isolated(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "view".into(),
            writes: vec![put("k", "1")],
            checkpoint: Some(pos(4)),
            ..Default::default()
        },
    )
    .await;
    commit(
        &store,
        StateCommit {
            consumer: "view2".into(),
            writes: vec![put("k", "2")],
            checkpoint: Some(pos(1)),
            ..Default::default()
        },
    )
    .await;
    commit(
        &store,
        StateCommit {
            consumer: "vie".into(),
            writes: vec![put("wk", "3")],
            checkpoint: None,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(get(&store, "view", b"k").await, Some(b"1".to_vec()));
    assert_eq!(get(&store, "view2", b"k").await, Some(b"2".to_vec()));
    assert_eq!(scan(&store, "view", b"", None, 10).await, kv(&[("k", "1")]));
    assert_eq!(scan(&store, "vie", b"", None, 10).await, kv(&[("wk", "3")]));
    assert_eq!(checkpoint(&store, "view").await, Some(pos(4)));
    assert_eq!(checkpoint(&store, "view2").await, Some(pos(1)));
    assert_eq!(checkpoint(&store, "vie").await, None);
    let req = AppendRequest::new(vec![ev("A", &[])]).track("view2", pos(2));
    if let Err(e) = store.append_request(req).await {
        panic!("tracking another consumer failed: {e:?}");
    }
    assert_eq!(checkpoint(&store, "view").await, Some(pos(4)));
}

/// Empty, over-long and control-character consumer names are rejected by every consumer call.
pub async fn invalid_consumer_names_rejected(store: Store) {
    let long = "c".repeat(crate::limits::MAX_CONSUMER_LEN + 1);
    for name in ["", long.as_str(), "a\u{0}b"] {
        expect_input_error(store.checkpoint(name).await);
        expect_input_error(store.get_state(name, b"k").await);
        expect_input_error(store.scan_state(name, b"", None, 10).await);
        expect_input_error(store.reset_consumer(name).await);
        let c = StateCommit {
            consumer: name.to_owned(),
            writes: vec![put("k", "v")],
            checkpoint: Some(pos(1)),
            ..Default::default()
        };
        expect_input_error(store.commit_state(c).await);
    }
    // At the limit is fine.
    let max = "c".repeat(crate::limits::MAX_CONSUMER_LEN);
    commit(
        &store,
        StateCommit {
            consumer: max.clone(),
            writes: vec![put("k", "v")],
            checkpoint: Some(pos(1)),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(checkpoint(&store, &max).await, Some(pos(1)));
}

/// A guarded commit succeeds when the stored checkpoint is exactly the expected one (none yet).
pub async fn guard_exactly_absent_admits_first_commit(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "g".into(),
            writes: vec![put("k", "1")],
            checkpoint: Some(pos(5)),
            guard: CheckpointGuard::Exactly(None),
        },
    )
    .await;
    assert_eq!(checkpoint(&store, "g").await, Some(pos(5)));
    assert_eq!(get(&store, "g", b"k").await, Some(b"1".to_vec()));
}

/// Compare-and-set: a commit expecting a checkpoint that has moved fails and writes nothing,
/// even when its new checkpoint would advance the stored one.
pub async fn guard_exactly_mismatch_conflicts_and_writes_nothing(store: Store) {
    let base = StateCommit {
        consumer: "g".into(),
        checkpoint: Some(pos(3)),
        ..Default::default()
    };
    commit(&store, base).await;
    // Another replica moves the checkpoint from 3 to 6.
    commit(
        &store,
        StateCommit {
            consumer: "g".into(),
            writes: vec![put("k", "replica-b")],
            checkpoint: Some(pos(6)),
            guard: CheckpointGuard::Exactly(Some(pos(3))),
        },
    )
    .await;
    // A stale replica that also started from 3 tries to move it to 9.
    let stale = store
        .commit_state(StateCommit {
            consumer: "g".into(),
            writes: vec![put("k", "replica-a"), put("other", "x")],
            checkpoint: Some(pos(9)),
            guard: CheckpointGuard::Exactly(Some(pos(3))),
        })
        .await;
    match stale {
        Err(StoreError::CheckpointConflict {
            stored, requested, ..
        }) => {
            assert_eq!((stored, requested), (Some(pos(6)), Some(pos(9))));
        }
        other => panic!("expected CheckpointConflict, got {other:?}"),
    }
    assert_eq!(checkpoint(&store, "g").await, Some(pos(6)));
    assert_eq!(get(&store, "g", b"k").await, Some(b"replica-b".to_vec()));
    assert_eq!(get(&store, "g", b"other").await, None);
}

/// A guard without a new checkpoint fences the writes alone and leaves the checkpoint as is.
pub async fn guard_without_checkpoint_fences_writes(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "g".into(),
            checkpoint: Some(pos(2)),
            ..Default::default()
        },
    )
    .await;
    commit(
        &store,
        StateCommit {
            consumer: "g".into(),
            writes: vec![put("k", "ok")],
            checkpoint: None,
            guard: CheckpointGuard::Exactly(Some(pos(2))),
        },
    )
    .await;
    let r = store
        .commit_state(StateCommit {
            consumer: "g".into(),
            writes: vec![put("k", "no")],
            checkpoint: None,
            guard: CheckpointGuard::Exactly(None),
        })
        .await;
    match r {
        Err(StoreError::CheckpointConflict {
            stored, requested, ..
        }) => {
            assert_eq!((stored, requested), (Some(pos(2)), None));
        }
        other => panic!("expected CheckpointConflict, got {other:?}"),
    }
    assert_eq!(checkpoint(&store, "g").await, Some(pos(2)));
    assert_eq!(get(&store, "g", b"k").await, Some(b"ok".to_vec()));
}

/// Of several replicas racing a compare-and-set from the same checkpoint, exactly one wins.
pub async fn guard_exactly_race_has_one_winner(store: Store) {
    commit(
        &store,
        StateCommit {
            consumer: "g".into(),
            checkpoint: Some(pos(1)),
            ..Default::default()
        },
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .commit_state(StateCommit {
                    consumer: "g".into(),
                    writes: vec![(b"winner".to_vec(), Some(i.to_string().into_bytes()))],
                    checkpoint: Some(pos(10 + i)),
                    guard: CheckpointGuard::Exactly(Some(pos(1))),
                })
                .await
        }));
    }
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("task") {
            Ok(()) => winners.push(i as u64),
            Err(StoreError::CheckpointConflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let w = winners[0];
    assert_eq!(checkpoint(&store, "g").await, Some(pos(10 + w)));
    assert_eq!(
        get(&store, "g", b"winner").await,
        Some(w.to_string().into_bytes())
    );
}
