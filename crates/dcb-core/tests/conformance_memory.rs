//! The conformance suite and the model test against the reference [`MemoryStore`].
//!
//! The reopen hook returns a new handle on the same shared log: it exercises the durability
//! rules' logic, not durability (the memory store has none).
#![cfg(feature = "conformance")]

use std::sync::Arc;

use dcb_core::conformance::Fixture;
use dcb_core::{EventStore, MemoryStore};

async fn memory() -> Fixture {
    let store = MemoryStore::new();
    let shared = store.clone();
    Fixture::new(Arc::new(store)).with_reopen(move || {
        let handle: Arc<dyn EventStore> = Arc::new(shared.clone());
        async move { handle }
    })
}

async fn memory_without_reopen() -> Fixture {
    Fixture::new(Arc::new(MemoryStore::new()))
}

dcb_core::conformance_suite!(memory);
dcb_core::model_test_suite!(memory, 64);

/// Without a reopen hook the durability rules are skipped, not failed.
#[test]
fn durability_rules_skip_without_reopen_hook() {
    dcb_core::conformance::run_fixture_rule("probe", memory_without_reopen, |_fixture| async {
        panic!("a durability rule ran without a reopen hook");
    });
}

/// Deliberately broken stores: the model test must notice each of them.
mod broken {
    use std::sync::Arc;

    use async_trait::async_trait;
    use dcb_core::conformance::{Fixture, model::model_test};
    use dcb_core::{
        AppendCondition, AppendRequest, Appended, EventStore, MemoryStore, Position, Query,
        ReadOptions, ReadStream, StoreError,
    };

    #[derive(Clone, Copy)]
    enum Bug {
        /// Conditions ignore their `after` bound.
        ConditionIgnoresAfter,
        /// Reads ignore `limit`.
        ReadIgnoresLimit,
        /// Ids are dropped, so retries write again.
        NoIdempotency,
        /// `before` is treated as inclusive.
        BeforeInclusive,
    }

    struct Broken {
        inner: MemoryStore,
        bug: Bug,
    }

    #[async_trait]
    impl dcb_core::Delegating for Broken {
        fn inner(&self) -> &dyn EventStore {
            &self.inner
        }

        async fn append_request(&self, mut request: AppendRequest) -> Result<Appended, StoreError> {
            match self.bug {
                Bug::ConditionIgnoresAfter => {
                    request.conditions = request
                        .conditions
                        .into_iter()
                        .map(|c| AppendCondition { after: None, ..c })
                        .collect();
                }
                Bug::NoIdempotency => request.events.iter_mut().for_each(|e| e.id = None),
                _ => {}
            }
            self.inner.append_request(request).await
        }

        async fn read(
            &self,
            query: Query,
            mut options: ReadOptions,
        ) -> Result<ReadStream, StoreError> {
            match self.bug {
                Bug::ReadIgnoresLimit => options.limit = None,
                Bug::BeforeInclusive => options.before = options.before.and_then(Position::next),
                _ => {}
            }
            self.inner.read(query, options).await
        }
    }

    fn caught(bug: Bug) -> bool {
        let factory = move || async move {
            Fixture::new(Arc::new(Broken {
                inner: MemoryStore::new(),
                bug,
            }))
        };
        std::panic::catch_unwind(|| model_test(factory, 64)).is_err()
    }

    /// Whether `rule` fails against a store with `bug`.
    fn rule_fails<R, Fut>(bug: Bug, rule: R) -> bool
    where
        R: FnOnce(Arc<dyn EventStore>) -> Fut + std::panic::UnwindSafe,
        Fut: std::future::Future<Output = ()>,
    {
        let factory = move || async move {
            Fixture::new(Arc::new(Broken {
                inner: MemoryStore::new(),
                bug,
            }))
        };
        std::panic::catch_unwind(|| dcb_core::conformance::run_store_rule("probe", factory, rule))
            .is_err()
    }

    #[test]
    fn rules_catch_broken_stores() {
        use dcb_core::conformance::{conditions, idempotency, reads};
        assert!(rule_fails(
            Bug::ConditionIgnoresAfter,
            conditions::condition_event_at_after_does_not_fail
        ));
        assert!(rule_fails(Bug::ReadIgnoresLimit, reads::reads_limit));
        assert!(rule_fails(
            Bug::NoIdempotency,
            idempotency::retry_same_batch_replays_positions
        ));
        assert!(rule_fails(
            Bug::BeforeInclusive,
            reads::reads_before_is_exclusive
        ));
        // The same rules pass on the reference store: the suite above runs them.
    }

    #[test]
    fn model_test_catches_conditions_ignoring_after() {
        assert!(caught(Bug::ConditionIgnoresAfter));
    }

    #[test]
    fn model_test_catches_reads_ignoring_limit() {
        assert!(caught(Bug::ReadIgnoresLimit));
    }

    #[test]
    fn model_test_catches_missing_idempotency() {
        assert!(caught(Bug::NoIdempotency));
    }

    #[test]
    fn model_test_catches_inclusive_before() {
        assert!(caught(Bug::BeforeInclusive));
    }
}
