//! The DCB conformance suite and the model test, run by every backend (feature `conformance`).
//!
//! # Running it
//!
//! A backend writes one fixture factory, an `async fn() -> Fixture`, and one test file:
//!
//! ```text
//! // crates/<backend>/tests/conformance.rs
//! async fn new_fixture() -> dcb_core::conformance::Fixture {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = my_backend::open(dir.path()).await.unwrap();
//!     dcb_core::conformance::Fixture::new(std::sync::Arc::new(store)).with_guard(dir)
//! }
//! dcb_core::conformance_suite!(new_fixture);
//! dcb_core::model_test_suite!(new_fixture, 64);
//! ```
//!
//! [`conformance_suite!`](crate::conformance_suite) expands to one `#[test]` per rule, named after
//! the rule, each running on a fresh fixture in a multi-threaded tokio runtime (4 workers) under a
//! [`RULE_TIMEOUT`], so `cargo test` lists every rule and a hanging backend fails instead of
//! blocking. [`model_test_suite!`](crate::model_test_suite) expands to one test running
//! [`model::model_test`]. The backend crate needs `dcb-core` with the `conformance` feature as a
//! dev-dependency; nothing else.
//!
//! Durable backends also set [`Fixture::reopen`]: a hook that opens the same storage again (the
//! rule drops every handle of the old store first). Rules that need it print
//! `SKIPPED (not durable)` and return when it is absent.
//!
//! # Rule topics
//!
//! - [`reads`]: query matching (type, tag, AND of tags, OR of items, normalisation), bounds
//!   (`after`, `from`, `before`), `limit`, `backwards`, head reporting, snapshot consistency under
//!   concurrent appends, streaming large results.
//! - [`appends`]: positions (increasing in batch order and across appends), atomicity, round trips
//!   of data, metadata, ids, unicode.
//! - [`limits`]: every limit of [`crate::limits`] rejected with its [`InputError`](crate::InputError)
//!   variant and nothing written; values exactly at a limit accepted.
//! - [`conditions`]: append conditions (with and without `after`, exclusive boundary, several
//!   conditions, the lowest failing index reported, the batch never checked against itself).
//! - [`idempotency`]: idempotent retries by event id and id conflicts.
//! - [`tracking`]: checkpoints moved with appends, consumer state commits, scans, resets.
//! - [`concurrency`]: real tasks contending on one store (one winner per decision, no partial
//!   batches seen, monotonic heads, distinct positions, a retry loop converging).
//! - [`subscriptions`]: catch-up, the `CaughtUp` marker, live events, resuming, filtering, slow
//!   readers, `wait_for_head`.
//! - [`durability`]: everything survives a reopen (needs [`Fixture::reopen`]).
//!
//! Contract points the suite pins beyond the trait docs: when several conditions fail, the
//! lowest index is reported; an [`IdConflict`](crate::StoreError::IdConflict) names an id that is
//! already stored; input is validated (with [`crate::limits`]) before ids, conditions and
//! checkpoints are looked at.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::EventStore;

pub mod appends;
pub mod concurrency;
pub mod conditions;
pub mod durability;
pub mod idempotency;
pub mod limits;
pub mod model;
pub mod reads;
pub mod subscriptions;
pub mod support;
pub mod tracking;

/// The longest a single rule may run before it fails.
pub const RULE_TIMEOUT: Duration = Duration::from_secs(120);

/// Opens the fixture's storage again, after every handle of the previous store was dropped.
pub type ReopenFn = Box<dyn Fn() -> BoxFuture<'static, Arc<dyn EventStore>> + Send + Sync>;

/// A fresh, empty store for one rule, with whatever keeps it alive.
pub struct Fixture {
    /// The store under test.
    pub store: Arc<dyn EventStore>,
    /// Dropped after the rule (e.g. a temporary directory).
    pub guard: Box<dyn Any + Send + Sync>,
    /// For durable backends: reopens the same storage. Durability rules are skipped without it.
    pub reopen: Option<ReopenFn>,
}

impl Fixture {
    /// A fixture around `store`, with no guard and no reopen hook.
    pub fn new(store: Arc<dyn EventStore>) -> Fixture {
        Fixture {
            store,
            guard: Box::new(()),
            reopen: None,
        }
    }

    /// Keeps `guard` alive as long as the fixture.
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Fixture {
        self.guard = Box::new(guard);
        self
    }

    /// Sets the reopen hook.
    pub fn with_reopen<F, Fut>(mut self, reopen: F) -> Fixture
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Arc<dyn EventStore>> + Send + 'static,
    {
        self.reopen = Some(Box::new(move || Box::pin(reopen())));
        self
    }
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("durable", &self.reopen.is_some())
            .finish_non_exhaustive()
    }
}

/// The runtime every rule runs in: multi-threaded, 4 workers, time enabled.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build the tokio runtime: {e}"),
    }
}

/// Runs one rule that needs only the store, on a fresh fixture, under [`RULE_TIMEOUT`].
pub fn run_store_rule<F, FFut, R, RFut>(name: &str, factory: F, rule: R)
where
    F: FnOnce() -> FFut,
    FFut: Future<Output = Fixture>,
    R: FnOnce(Arc<dyn EventStore>) -> RFut,
    RFut: Future<Output = ()>,
{
    runtime().block_on(async {
        let fixture = factory().await;
        let store = fixture.store.clone();
        if tokio::time::timeout(RULE_TIMEOUT, rule(store))
            .await
            .is_err()
        {
            panic!("rule {name} did not finish within {RULE_TIMEOUT:?}");
        }
        drop(fixture);
    });
}

/// Runs one rule that needs the whole fixture (durability), under [`RULE_TIMEOUT`].
pub fn run_fixture_rule<F, FFut, R, RFut>(name: &str, factory: F, rule: R)
where
    F: FnOnce() -> FFut,
    FFut: Future<Output = Fixture>,
    R: FnOnce(Fixture) -> RFut,
    RFut: Future<Output = ()>,
{
    runtime().block_on(async {
        let fixture = factory().await;
        if fixture.reopen.is_none() {
            println!("{name}: SKIPPED (not durable)");
            return;
        }
        if tokio::time::timeout(RULE_TIMEOUT, rule(fixture))
            .await
            .is_err()
        {
            panic!("rule {name} did not finish within {RULE_TIMEOUT:?}");
        }
    });
}

/// The list of rules, defined once: calls `$store_rule!` for each rule taking the store and
/// `$fixture_rule!` for each rule taking the whole fixture. Adding a rule is one line here.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_for_each_rule {
    ($factory:path) => {
        $crate::__conformance_store_rules! { $factory;
            reads::reads_all_in_position_order,
            reads::reads_empty_store_with_no_head,
            reads::reads_by_type,
            reads::reads_by_tag,
            reads::reads_and_of_tags,
            reads::reads_or_of_items,
            reads::reads_type_and_tags,
            reads::reads_several_types_in_one_item,
            reads::reads_unconstrained_item_as_all,
            reads::reads_duplicate_terms_like_single,
            reads::reads_unknown_type_or_tag_returns_nothing,
            reads::reads_after_is_exclusive,
            reads::reads_from_is_inclusive,
            reads::reads_before_is_exclusive,
            reads::reads_after_and_before_window,
            reads::reads_from_zero_and_after_zero_return_everything,
            reads::reads_limit,
            reads::reads_limit_zero_returns_nothing_with_head,
            reads::reads_backwards_newest_first,
            reads::reads_backwards_with_limit_takes_newest,
            reads::reads_backwards_with_bounds,
            reads::reads_filtered_with_bounds_and_limit,
            reads::reads_after_head_returns_nothing,
            reads::reads_from_above_before_returns_nothing,
            reads::reads_head_when_result_empty,
            reads::reads_head_when_limited,
            reads::reads_head_matches_head_method,
            reads::reads_invalid_query_rejected,
            reads::reads_snapshot_consistent_under_concurrent_appends,
            reads::reads_stream_large_result_in_order,
            reads::reads_in_batches_match_the_stream,
            appends::append_positions_increase_in_batch_order,
            appends::append_later_batches_get_greater_positions,
            appends::append_positions_match_read_back,
            appends::append_head_advances,
            appends::append_empty_batch_rejected,
            appends::append_batch_with_one_invalid_event_writes_nothing,
            appends::append_round_trips_data_metadata_and_id,
            appends::append_allows_empty_data,
            appends::append_round_trips_binary_data,
            appends::append_unicode_types_and_tags,
            appends::append_keeps_tag_order,
            appends::append_accepts_values_at_the_limits,
            appends::append_large_batch_is_contiguous,
            appends::stats_report_head_and_count,
            limits::rejects_empty_type,
            limits::rejects_empty_tag,
            limits::rejects_type_too_long,
            limits::rejects_tag_too_long,
            limits::rejects_too_many_tags,
            limits::rejects_data_too_large,
            limits::rejects_metadata_too_large,
            limits::rejects_too_many_events,
            limits::rejects_append_too_large,
            limits::rejects_too_many_conditions,
            limits::rejects_too_many_query_items,
            limits::evaluates_a_query_at_the_item_limit,
            limits::rejects_too_many_query_types,
            limits::rejects_too_many_query_tags,
            limits::rejects_control_character_in_type,
            limits::rejects_control_character_in_tag,
            limits::rejects_duplicate_tag,
            limits::rejects_duplicate_id_in_batch,
            limits::rejects_empty_condition_query,
            limits::rejects_invalid_condition_query_term,
            limits::rejects_invalid_tracking_consumer,
            conditions::condition_without_after_fails_when_match_exists,
            conditions::condition_without_after_passes_on_empty_store,
            conditions::condition_event_at_after_does_not_fail,
            conditions::condition_event_after_boundary_fails,
            conditions::conditions_have_independent_boundaries,
            conditions::condition_failure_reports_index,
            conditions::condition_lowest_failing_index_reported,
            conditions::condition_not_checked_against_own_batch,
            conditions::condition_unrelated_query_passes,
            conditions::condition_type_and_tag_item,
            conditions::condition_multi_tag_is_and,
            conditions::condition_or_of_items,
            conditions::condition_all_query,
            conditions::condition_unconstrained_item_acts_as_all,
            conditions::condition_failure_writes_nothing,
            conditions::condition_after_head_passes,
            conditions::condition_read_head_then_append_pattern,
            idempotency::retry_same_batch_replays_positions,
            idempotency::retry_writes_once,
            idempotency::retry_after_other_appends_still_replays,
            idempotency::different_batch_reusing_id_conflicts,
            idempotency::subset_of_batch_conflicts,
            idempotency::superset_of_batch_conflicts,
            idempotency::reordered_batch_conflicts,
            idempotency::same_ids_different_data_conflicts,
            idempotency::mixed_batch_with_stored_id_conflicts,
            idempotency::id_conflict_writes_nothing,
            idempotency::id_conflict_names_a_stored_id,
            idempotency::replay_skips_failing_condition,
            idempotency::events_without_ids_never_deduplicated,
            idempotency::id_of_single_event_batch_replays,
            tracking::tracking_sets_checkpoint,
            tracking::tracking_first_checkpoint_any_position,
            tracking::tracking_equal_position_conflicts_and_writes_nothing,
            tracking::tracking_lower_position_conflicts,
            tracking::tracking_with_failed_condition_keeps_checkpoint,
            tracking::checkpoint_of_unknown_consumer_is_none,
            tracking::commit_state_writes_keys_and_checkpoint,
            tracking::commit_state_checkpoint_conflict_writes_nothing,
            tracking::commit_state_without_checkpoint_keeps_it,
            tracking::commit_state_rejects_invalid_key_and_writes_nothing,
            tracking::state_writes_apply_in_order,
            tracking::get_state_missing_key_is_none,
            tracking::state_deletes,
            tracking::scan_state_prefix_in_key_order,
            tracking::scan_state_after_and_limit,
            tracking::reset_consumer_clears_state_and_checkpoint,
            tracking::consumers_are_isolated,
            tracking::invalid_consumer_names_rejected,
            tracking::guard_exactly_absent_admits_first_commit,
            tracking::guard_exactly_mismatch_conflicts_and_writes_nothing,
            tracking::guard_without_checkpoint_fences_writes,
            tracking::guard_exactly_race_has_one_winner,
            concurrency::contenders_for_unique_tag_one_winner,
            concurrency::disjoint_tags_all_succeed,
            concurrency::readers_never_see_partial_batch,
            concurrency::heads_never_go_backwards,
            concurrency::concurrent_appends_get_distinct_positions,
            concurrency::contention_loop_converges,
            concurrency::concurrent_tracking_one_winner,
            concurrency::concurrent_identical_retries_write_once,
            subscriptions::subscription_catches_up_then_goes_live,
            subscriptions::subscription_caught_up_exactly_once,
            subscriptions::subscription_resumes_without_gap_or_duplicate,
            subscriptions::subscription_filtered_by_query,
            subscriptions::subscription_live_events_in_order,
            subscriptions::subscription_on_empty_store,
            subscriptions::subscription_slow_reader_gets_everything,
            subscriptions::wait_for_head_returns_when_head_moves,
            subscriptions::wait_for_head_immediate_when_already_past,
        }
        $crate::__conformance_fixture_rules! { $factory;
            durability::events_survive_reopen,
            durability::ids_replay_after_reopen,
            durability::checkpoints_and_state_survive_reopen,
            durability::conditions_see_events_after_reopen,
            durability::positions_grow_after_reopen,
            durability::head_survives_reopen,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_store_rules {
    ($factory:path; $($module:ident :: $rule:ident),* $(,)?) => {
        $(
            #[test]
            fn $rule() {
                $crate::conformance::run_store_rule(
                    stringify!($rule),
                    $factory,
                    $crate::conformance::$module::$rule,
                );
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_fixture_rules {
    ($factory:path; $($module:ident :: $rule:ident),* $(,)?) => {
        $(
            #[test]
            fn $rule() {
                $crate::conformance::run_fixture_rule(
                    stringify!($rule),
                    $factory,
                    $crate::conformance::$module::$rule,
                );
            }
        )*
    };
}

/// Expands to one test per conformance rule, each on a fresh fixture from `$factory`, an
/// `async fn() -> dcb_core::conformance::Fixture`.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::__conformance_for_each_rule!($factory);
    };
}

/// Expands to one test, `model_test_matches_reference`, comparing a fresh store from `$factory`
/// with a fresh [`MemoryStore`](crate::MemoryStore) over `$cases` random operation sequences
/// (64 when omitted).
#[macro_export]
macro_rules! model_test_suite {
    ($factory:path) => {
        $crate::model_test_suite!($factory, 64);
    };
    ($factory:path, $cases:expr) => {
        #[test]
        fn model_test_matches_reference() {
            $crate::conformance::model::model_test($factory, $cases);
        }
    };
}
