//! Rules for idempotent retries by event id, and id conflicts.

use uuid::Uuid;

use super::support::*;
use crate::{AppendCondition, Event, Query, StoreError};

fn batch(ids: &[Uuid]) -> Vec<Event> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| ev_data("Paid", &["order:1"], format!("{i}")).with_id(*id))
        .collect()
}

#[track_caller]
fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, stored: &[Uuid]) {
    match result {
        Err(StoreError::IdConflict { id }) => assert!(
            stored.contains(&id),
            "IdConflict names {id}, not a stored id"
        ),
        other => panic!("expected IdConflict, got {other:?}"),
    }
}

/// The same batch with ids twice: same positions, `replayed: true`.
pub async fn retry_same_batch_replays_positions(store: Store) {
    let ids = [id(), id(), id()];
    let first = append(&store, batch(&ids)).await;
    assert!(!first.replayed);
    let second = append(&store, batch(&ids)).await;
    assert!(second.replayed, "the retry is reported as replayed");
    assert_eq!(second.positions, first.positions);
}

/// A replayed retry writes nothing.
pub async fn retry_writes_once(store: Store) {
    let ids = [id(), id()];
    let first = append(&store, batch(&ids)).await;
    for _ in 0..3 {
        append(&store, batch(&ids)).await;
    }
    let all = read_all(&store).await;
    assert_eq!(positions(&all), first.positions);
    assert_eq!(head(&store).await, first.last());
}

/// A retry after other appends still replays the original positions.
pub async fn retry_after_other_appends_still_replays(store: Store) {
    let ids = [id(), id()];
    let first = append(&store, batch(&ids)).await;
    seed_standard(&store).await;
    append(&store, vec![ev("Other", &[]).with_id(id())]).await;
    let h = head(&store).await;
    let retry = append(&store, batch(&ids)).await;
    assert!(retry.replayed);
    assert_eq!(retry.positions, first.positions);
    assert_eq!(head(&store).await, h);
}

/// A different batch reusing a stored id conflicts.
pub async fn different_batch_reusing_id_conflicts(store: Store) {
    let ids = [id(), id()];
    append(&store, batch(&ids)).await;
    let other = vec![
        ev("Other", &[]).with_id(id()),
        ev("Other", &[]).with_id(ids[1]),
    ];
    assert_conflict(store.append(other, Vec::new()).await, &ids);
}

/// A subset of the original batch conflicts.
pub async fn subset_of_batch_conflicts(store: Store) {
    let ids = [id(), id(), id()];
    append(&store, batch(&ids)).await;
    let full = batch(&ids);
    assert_conflict(store.append(full[..2].to_vec(), Vec::new()).await, &ids);
    assert_conflict(store.append(full[1..].to_vec(), Vec::new()).await, &ids);
}

/// A superset of the original batch conflicts.
pub async fn superset_of_batch_conflicts(store: Store) {
    let ids = [id(), id()];
    append(&store, batch(&ids)).await;
    let mut more = batch(&ids);
    more.push(ev("Paid", &["order:1"]).with_id(id()));
    assert_conflict(store.append(more, Vec::new()).await, &ids);
    let mut front = vec![ev("Paid", &["order:1"]).with_id(id())];
    front.extend(batch(&ids));
    assert_conflict(store.append(front, Vec::new()).await, &ids);
}

/// The original events in another order conflict.
pub async fn reordered_batch_conflicts(store: Store) {
    let ids = [id(), id()];
    append(&store, batch(&ids)).await;
    let mut swapped = batch(&ids);
    swapped.reverse();
    assert_conflict(store.append(swapped, Vec::new()).await, &ids);
}

/// The same ids with different content conflict.
pub async fn same_ids_different_data_conflicts(store: Store) {
    let ids = [id(), id()];
    append(&store, batch(&ids)).await;
    let mut changed = batch(&ids);
    changed[1].data = b"changed".to_vec().into();
    assert_conflict(store.append(changed, Vec::new()).await, &ids);
    let mut retagged = batch(&ids);
    retagged[0].tags.push("extra");
    assert_conflict(store.append(retagged, Vec::new()).await, &ids);
    let mut retyped = batch(&ids);
    retyped[0].event_type = "Refunded".into();
    assert_conflict(store.append(retyped, Vec::new()).await, &ids);
    let mut remeta = batch(&ids);
    remeta[1] = remeta[1].clone().meta("k", "v");
    assert_conflict(store.append(remeta, Vec::new()).await, &ids);
}

/// A batch mixing events without ids and a stored id conflicts (it cannot be a retry).
pub async fn mixed_batch_with_stored_id_conflicts(store: Store) {
    let ids = [id()];
    append(&store, batch(&ids)).await;
    let mut mixed = vec![ev("Plain", &[])];
    mixed.extend(batch(&ids));
    assert_conflict(store.append(mixed, Vec::new()).await, &ids);
    let mut mixed = batch(&ids);
    mixed.push(ev("Plain", &[]));
    assert_conflict(store.append(mixed, Vec::new()).await, &ids);
}

/// An id conflict writes nothing.
pub async fn id_conflict_writes_nothing(store: Store) {
    let ids = [id(), id()];
    append(&store, batch(&ids)).await;
    let before = read_all(&store).await;
    let fresh = id();
    let attempt = vec![ev("X", &[]).with_id(fresh), ev("Y", &[]).with_id(ids[0])];
    assert_conflict(store.append(attempt, Vec::new()).await, &ids);
    assert_unchanged(&store, &before).await;
    // The fresh id was not recorded by the failed append.
    let ok = append(&store, vec![ev("X", &[]).with_id(fresh)]).await;
    assert!(!ok.replayed);
}

/// The conflict names an id that is already stored, not a fresh one of the new batch.
pub async fn id_conflict_names_a_stored_id(store: Store) {
    let stored = [id(), id()];
    append(&store, batch(&stored)).await;
    let attempt = vec![
        ev("X", &[]).with_id(id()),
        ev("Y", &[]).with_id(id()),
        ev("Z", &[]).with_id(stored[1]),
    ];
    match store.append(attempt, Vec::new()).await {
        Err(StoreError::IdConflict { id }) => assert_eq!(id, stored[1]),
        other => panic!("expected IdConflict, got {other:?}"),
    }
}

/// A replay is not re-checked against conditions that would now fail.
pub async fn replay_skips_failing_condition(store: Store) {
    let ids = [id(), id()];
    let cond = AppendCondition::none_match(Query::tagged("order:1"));
    let first = match store.append(batch(&ids), vec![cond.clone()]).await {
        Ok(a) => a,
        Err(e) => panic!("first append failed: {e:?}"),
    };
    // The condition now fails (the batch itself matches it), yet the retry replays.
    match store.append(batch(&ids), vec![cond]).await {
        Ok(a) => {
            assert!(a.replayed);
            assert_eq!(a.positions, first.positions);
        }
        Err(e) => panic!("the retry should replay, got {e:?}"),
    }
    assert_eq!(read_all(&store).await.len(), 2);
}

/// Events without ids are never deduplicated.
pub async fn events_without_ids_never_deduplicated(store: Store) {
    let e = ev("Same", &["t"]);
    let a = append(&store, vec![e.clone(), e.clone()]).await;
    let b = append(&store, vec![e.clone(), e.clone()]).await;
    assert!(!a.replayed && !b.replayed);
    assert!(b.positions[0] > a.positions[1]);
    assert_eq!(read_all(&store).await.len(), 4);
}

/// A single-event batch with an id replays; the same id in a bigger batch conflicts.
pub async fn id_of_single_event_batch_replays(store: Store) {
    let one = id();
    let e = ev("Once", &["k"]).with_id(one);
    let first = append(&store, vec![e.clone()]).await;
    let again = append(&store, vec![e.clone()]).await;
    assert!(again.replayed);
    assert_eq!(again.positions, first.positions);
    assert_conflict(
        store
            .append(vec![e, ev("Twice", &[]).with_id(id())], Vec::new())
            .await,
        &[one],
    );
    assert_eq!(read_all(&store).await.len(), 1);
}
