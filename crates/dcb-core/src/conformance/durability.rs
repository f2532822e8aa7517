//! Rules for durable backends: what was acknowledged survives a reopen.
//!
//! Each rule takes the whole [`Fixture`]; the runner skips it (printing `SKIPPED (not durable)`)
//! when the fixture has no reopen hook. A rule drops every handle of the old store before it
//! calls the hook.

use std::sync::Arc;

use super::Fixture;
use super::support::*;
use crate::{
    AppendCondition, AppendRequest, EventStore, Query, ReadOptions, StateCommit, StoreError,
};

/// Drops `store` (the rule's last handle) and opens the storage again.
async fn reopen(fixture: &mut Fixture, store: Store) -> Store {
    drop(store);
    // The fixture's own handle must go too, so that the storage is closed.
    let placeholder: Arc<dyn EventStore> = Arc::new(crate::MemoryStore::new());
    drop(std::mem::replace(&mut fixture.store, placeholder));
    let Some(hook) = fixture.reopen.as_ref() else {
        panic!("durability rule run without a reopen hook")
    };
    let fresh = hook().await;
    fixture.store = fresh.clone();
    fresh
}

/// Appended events come back after a reopen, identical and at the same positions.
pub async fn events_survive_reopen(mut fixture: Fixture) {
    let store = fixture.store.clone();
    seed_standard(&store).await;
    append(
        &store,
        vec![
            ev_data("Big", &["big"], vec![9u8; 10_000])
                .meta("m", "v")
                .with_id(id()),
        ],
    )
    .await;
    let before = read_all(&store).await;
    let store = reopen(&mut fixture, store).await;
    assert_eq!(read_all(&store).await, before);
    let (_, by_tag) = read(&store, Query::tagged("y"), ReadOptions::new()).await;
    assert_eq!(by_tag.len(), 4, "the tag index survives too");
    let (_, by_type) = read(&store, Query::of_type("A"), ReadOptions::new()).await;
    assert_eq!(by_type.len(), 3, "the type index survives too");
}

/// An id-carrying batch replays after a reopen, and a conflicting reuse is still a conflict.
pub async fn ids_replay_after_reopen(mut fixture: Fixture) {
    let store = fixture.store.clone();
    let ids = [id(), id()];
    let batch: Vec<_> = ids
        .iter()
        .map(|i| ev("Paid", &["order"]).with_id(*i))
        .collect();
    let first = append(&store, batch.clone()).await;
    let store = reopen(&mut fixture, store).await;
    let again = append(&store, batch.clone()).await;
    assert!(again.replayed);
    assert_eq!(again.positions, first.positions);
    match store
        .append(vec![ev("Other", &[]).with_id(ids[0])], Vec::new())
        .await
    {
        Err(StoreError::IdConflict { id }) => assert_eq!(id, ids[0]),
        other => panic!("expected IdConflict, got {other:?}"),
    }
    assert_eq!(read_all(&store).await.len(), 2);
}

/// Checkpoints (from appends and state commits) and consumer state survive a reopen.
pub async fn checkpoints_and_state_survive_reopen(mut fixture: Fixture) {
    let store = fixture.store.clone();
    let p = seed_standard(&store).await;
    if let Err(e) = store
        .append_request(AppendRequest::new(vec![ev("Done", &[])]).track("automation", p[3]))
        .await
    {
        panic!("{e:?}");
    }
    let commit = StateCommit {
        consumer: "view".into(),
        writes: vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), Some(b"2".to_vec())),
        ],
        checkpoint: Some(p[5]),
        ..Default::default()
    };
    if let Err(e) = store.commit_state(commit).await {
        panic!("{e:?}");
    }
    let store = reopen(&mut fixture, store).await;
    let cp = |c: &'static str| {
        let store = store.clone();
        async move {
            match store.checkpoint(c).await {
                Ok(v) => v,
                Err(e) => panic!("{e:?}"),
            }
        }
    };
    assert_eq!(cp("automation").await, Some(p[3]));
    assert_eq!(cp("view").await, Some(p[5]));
    match store.scan_state("view", b"", None, 10).await {
        Ok(kvs) => assert_eq!(
            kvs,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        ),
        Err(e) => panic!("{e:?}"),
    }
    // The stored checkpoint still guards against moving backwards.
    let req = AppendRequest::new(vec![ev("Again", &[])]).track("automation", p[3]);
    assert!(matches!(
        store.append_request(req).await,
        Err(StoreError::CheckpointConflict { .. })
    ));
}

/// Conditions evaluated right after a reopen see the events stored before it.
pub async fn conditions_see_events_after_reopen(mut fixture: Fixture) {
    let store = fixture.store.clone();
    let p = seed_standard(&store).await;
    let store = reopen(&mut fixture, store).await;
    let r = store
        .append(
            vec![ev("N", &[])],
            vec![AppendCondition::none_match(Query::tagged("z"))],
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::ConditionFailed { condition: 0 })),
        "{r:?}"
    );
    let r = store
        .append(
            vec![ev("N", &[])],
            vec![AppendCondition::new(Query::of_type("C"), Some(p[2]))],
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::ConditionFailed { condition: 0 })),
        "{r:?}"
    );
    let r = store
        .append(
            vec![ev("N", &[])],
            vec![AppendCondition::new(Query::of_type("C"), Some(p[3]))],
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
}

/// Positions given after a reopen are greater than every position given before it.
pub async fn positions_grow_after_reopen(mut fixture: Fixture) {
    let store = fixture.store.clone();
    let p = seed_standard(&store).await;
    let store = reopen(&mut fixture, store).await;
    let a = append(&store, vec![ev("After", &[]), ev("After", &[])]).await;
    assert!(
        a.positions[0] > p[5],
        "{:?} not after {:?}",
        a.positions,
        p[5]
    );
    let store = reopen(&mut fixture, store).await;
    let b = append(&store, vec![ev("Again", &[])]).await;
    assert!(b.positions[0] > a.positions[1]);
    assert_eq!(read_all(&store).await.len(), 9);
}

/// The head after a reopen is the head before it.
pub async fn head_survives_reopen(mut fixture: Fixture) {
    let store = fixture.store.clone();
    seed_standard(&store).await;
    let h = head(&store).await;
    let store = reopen(&mut fixture, store).await;
    assert_eq!(head(&store).await, h);
    let (rh, _) = read(&store, Query::All, ReadOptions::new().limit(0)).await;
    assert_eq!(rh, h);
}
