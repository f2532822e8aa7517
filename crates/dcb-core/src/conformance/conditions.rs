//! Rules for append conditions.

use super::support::*;
use crate::{AppendCondition, Position, Query, QueryItem, ReadOptions, StoreError};

#[track_caller]
fn assert_failed<T: std::fmt::Debug>(result: Result<T, StoreError>, index: usize) {
    match result {
        Err(StoreError::ConditionFailed { condition }) => {
            assert_eq!(condition, index, "failed condition index")
        }
        other => panic!("expected ConditionFailed {{ condition: {index} }}, got {other:?}"),
    }
}

#[track_caller]
fn assert_passed(result: Result<crate::Appended, StoreError>) -> crate::Appended {
    match result {
        Ok(a) => {
            assert!(!a.replayed);
            a
        }
        Err(e) => panic!("expected the append to pass, got {e:?}"),
    }
}

/// With no `after`, any matching event fails the condition.
pub async fn condition_without_after_fails_when_match_exists(store: Store) {
    seed_standard(&store).await;
    let r = try_append(
        &store,
        vec![ev("New", &[])],
        vec![AppendCondition::none_match(Query::tagged("z"))],
    )
    .await;
    assert_failed(r, 0);
    let r = try_append(
        &store,
        vec![ev("New", &[])],
        vec![AppendCondition::none_match(Query::of_type("C"))],
    )
    .await;
    assert_failed(r, 0);
}

/// With no `after`, the condition passes on an empty store and when nothing matches.
pub async fn condition_without_after_passes_on_empty_store(store: Store) {
    let a = assert_passed(
        try_append(
            &store,
            vec![ev("A", &["x"])],
            vec![AppendCondition::none_match(Query::All)],
        )
        .await,
    );
    assert_eq!(a.positions.len(), 1);
    assert_passed(
        try_append(
            &store,
            vec![ev("A", &["x"])],
            vec![AppendCondition::none_match(Query::tagged("y"))],
        )
        .await,
    );
    assert_eq!(read_all(&store).await.len(), 2);
}

/// `after` is exclusive: a matching event exactly at `after` does not fail the condition.
pub async fn condition_event_at_after_does_not_fail(store: Store) {
    let p = seed_standard(&store).await;
    // The last event with tag z is at p[5].
    let c = AppendCondition::new(Query::tagged("z"), Some(p[5]));
    assert_passed(try_append(&store, vec![ev("New", &["z"])], vec![c]).await);
    let c = AppendCondition::new(Query::of_type("C"), Some(p[3]));
    assert_passed(try_append(&store, vec![ev("New", &[])], vec![c]).await);
}

/// A matching event one position after `after` fails the condition.
pub async fn condition_event_after_boundary_fails(store: Store) {
    let p = seed_standard(&store).await;
    // C is at p[3]: a boundary just below it fails.
    let c = AppendCondition::new(Query::of_type("C"), Some(p[2]));
    assert_failed(try_append(&store, vec![ev("New", &[])], vec![c]).await, 0);
    let c = AppendCondition::new(Query::tagged("z"), Some(p[4]));
    assert_failed(try_append(&store, vec![ev("New", &[])], vec![c]).await, 0);
}

/// Each condition is checked against its own `after`.
pub async fn conditions_have_independent_boundaries(store: Store) {
    let p = seed_standard(&store).await;
    // x at 0,1,5; C at 3.
    let pass_x = AppendCondition::new(Query::tagged("x"), Some(p[5]));
    let pass_c = AppendCondition::new(Query::of_type("C"), Some(p[3]));
    let fail_c = AppendCondition::new(Query::of_type("C"), Some(p[2]));
    assert_passed(
        try_append(
            &store,
            vec![ev("N1", &[])],
            vec![pass_x.clone(), pass_c.clone()],
        )
        .await,
    );
    assert_failed(
        try_append(&store, vec![ev("N2", &[])], vec![pass_x, pass_c, fail_c]).await,
        2,
    );
}

/// The failure names the failing condition's index.
pub async fn condition_failure_reports_index(store: Store) {
    let p = seed_standard(&store).await;
    let ok = |t: &str| AppendCondition::none_match(Query::tagged(t.to_owned()));
    let bad = AppendCondition::new(Query::of_type("A"), Some(p[4]));
    assert_failed(
        try_append(&store, vec![ev("N", &[])], vec![bad.clone()]).await,
        0,
    );
    assert_failed(
        try_append(&store, vec![ev("N", &[])], vec![ok("m1"), bad.clone()]).await,
        1,
    );
    assert_failed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![ok("m1"), ok("m2"), ok("m3"), bad],
        )
        .await,
        3,
    );
}

/// When several conditions fail, the lowest failing index is reported.
pub async fn condition_lowest_failing_index_reported(store: Store) {
    seed_standard(&store).await;
    let ok = AppendCondition::none_match(Query::tagged("nothing"));
    let bad1 = AppendCondition::none_match(Query::of_type("B"));
    let bad2 = AppendCondition::none_match(Query::tagged("x"));
    assert_failed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![ok.clone(), bad1.clone(), bad2.clone()],
        )
        .await,
        1,
    );
    assert_failed(
        try_append(&store, vec![ev("N", &[])], vec![bad2, ok, bad1]).await,
        0,
    );
}

/// The batch is never checked against its own conditions.
pub async fn condition_not_checked_against_own_batch(store: Store) {
    let c = AppendCondition::none_match(Query::tagged("unique"));
    let a = assert_passed(
        try_append(
            &store,
            vec![ev("A", &["unique"]), ev("B", &["unique"])],
            vec![c.clone()],
        )
        .await,
    );
    assert_eq!(a.positions.len(), 2);
    // Now the stored events do fail the same condition.
    assert_failed(
        try_append(&store, vec![ev("A", &["unique"])], vec![c]).await,
        0,
    );
}

/// Conditions on queries nothing matches pass.
pub async fn condition_unrelated_query_passes(store: Store) {
    seed_standard(&store).await;
    let conds = vec![
        AppendCondition::none_match(Query::tagged("w")),
        AppendCondition::none_match(Query::of_type("D")),
        AppendCondition::none_match(Query::item(QueryItem::new().r#type("C").tag("x"))),
    ];
    assert_passed(try_append(&store, vec![ev("N", &["w"])], conds).await);
}

/// A type+tag item fails only on events with that type AND tag.
pub async fn condition_type_and_tag_item(store: Store) {
    seed_standard(&store).await;
    let pass = AppendCondition::none_match(Query::item(QueryItem::new().r#type("C").tag("y")));
    assert_passed(try_append(&store, vec![ev("N", &[])], vec![pass]).await);
    let fail = AppendCondition::none_match(Query::item(QueryItem::new().r#type("B").tag("z")));
    assert_failed(try_append(&store, vec![ev("N", &[])], vec![fail]).await, 0);
}

/// Several tags in a condition item must all be present on one event.
pub async fn condition_multi_tag_is_and(store: Store) {
    seed(&store, vec![ev("A", &["p"]), ev("A", &["q"])]).await;
    let both = AppendCondition::none_match(Query::item(QueryItem::new().tags(["p", "q"])));
    assert_passed(try_append(&store, vec![ev("N", &[])], vec![both.clone()]).await);
    append(&store, vec![ev("A", &["q", "p"])]).await;
    assert_failed(try_append(&store, vec![ev("N", &[])], vec![both]).await, 0);
}

/// A condition with several items fails when any item matches.
pub async fn condition_or_of_items(store: Store) {
    let p = seed_standard(&store).await;
    let q = Query::tagged("w").or(QueryItem::new().r#type("C"));
    assert_failed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![AppendCondition::none_match(q.clone())],
        )
        .await,
        0,
    );
    assert_passed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![AppendCondition::new(q.clone(), Some(p[3]))],
        )
        .await,
    );
    append(&store, vec![ev("D", &["w"])]).await;
    assert_failed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![AppendCondition::new(q, Some(p[3]))],
        )
        .await,
        0,
    );
}

/// An All condition fails on any event after `after`.
pub async fn condition_all_query(store: Store) {
    let p = seed_standard(&store).await;
    assert_failed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![AppendCondition::new(Query::All, Some(p[4]))],
        )
        .await,
        0,
    );
    let a = assert_passed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![AppendCondition::new(Query::All, Some(p[5]))],
        )
        .await,
    );
    assert_failed(
        try_append(
            &store,
            vec![ev("M", &[])],
            vec![AppendCondition::new(Query::All, Some(p[5]))],
        )
        .await,
        0,
    );
    assert_passed(
        try_append(
            &store,
            vec![ev("M", &[])],
            vec![AppendCondition::new(Query::All, a.last())],
        )
        .await,
    );
}

/// A condition whose query holds an unconstrained item behaves like All.
pub async fn condition_unconstrained_item_acts_as_all(store: Store) {
    let p = seed_standard(&store).await;
    let q = Query::tagged("nothing").or(QueryItem::new());
    assert_failed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![AppendCondition::new(q.clone(), Some(p[4]))],
        )
        .await,
        0,
    );
    assert_passed(
        try_append(
            &store,
            vec![ev("N", &[])],
            vec![AppendCondition::new(q, Some(p[5]))],
        )
        .await,
    );
}

/// A failed condition writes nothing and leaves the head alone.
pub async fn condition_failure_writes_nothing(store: Store) {
    seed_standard(&store).await;
    let before = read_all(&store).await;
    let c = AppendCondition::none_match(Query::tagged("x"));
    let r = try_append(&store, vec![ev("N", &["new"]), ev("M", &["new"])], vec![c]).await;
    assert_failed(r, 0);
    assert_unchanged(&store, &before).await;
    assert!(
        read(&store, Query::tagged("new"), ReadOptions::new())
            .await
            .1
            .is_empty()
    );
}

/// A condition with `after` = the current head passes, whatever its query.
pub async fn condition_after_head_passes(store: Store) {
    seed_standard(&store).await;
    let h = head(&store).await;
    let conds = vec![
        AppendCondition::new(Query::All, h),
        AppendCondition::new(Query::tagged("x"), h),
        AppendCondition::new(Query::of_type("A"), h),
    ];
    assert_passed(try_append(&store, vec![ev("N", &["x"])], conds).await);
    let far = AppendCondition::new(Query::All, Some(Position::MAX));
    assert_passed(try_append(&store, vec![ev("N", &["x"])], vec![far]).await);
}

/// Read a decision's events, then append on condition after the read's head: the first append
/// passes, a second based on the same stale head fails, a fresh read lets it pass again.
pub async fn condition_read_head_then_append_pattern(store: Store) {
    seed_standard(&store).await;
    let q = Query::tagged("y");
    let (h, _) = read(&store, q.clone(), ReadOptions::new()).await;
    let cond = AppendCondition::new(q.clone(), h);
    assert_passed(try_append(&store, vec![ev("Decided", &["y"])], vec![cond.clone()]).await);
    assert_failed(
        try_append(&store, vec![ev("Decided", &["y"])], vec![cond]).await,
        0,
    );
    let (h2, _) = read(&store, q.clone(), ReadOptions::new().limit(0)).await;
    // An unrelated append after the fresh read does not matter.
    append(&store, vec![ev("Other", &["x"])]).await;
    assert_passed(
        try_append(
            &store,
            vec![ev("Decided", &["y"])],
            vec![AppendCondition::new(q, h2)],
        )
        .await,
    );
}
