//! [`Delegating`]: a store that wraps another and forwards every method it does not change.
//!
//! Counting wrappers, fault-injecting test stores and thin adapters all have the same shape:
//! one or two methods of their own, the rest passed through. Written by hand, each wrapper
//! repeats a dozen forwarding methods, and one that forgets a method with a default
//! ([`EventStore::stats`], [`EventStore::consumer_snapshot`]) silently answers the default
//! instead of the wrapped store's. Implement [`Delegating`] instead: [`Delegating::inner`], plus
//! only the methods that differ; every type that implements it is an [`EventStore`].
//!
//! Both traits name the same methods: call a wrapper's methods through [`EventStore`] (import
//! that one, name `Delegating` by its path where it is implemented), or as `dyn EventStore`.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! use dcb_core::{AppendRequest, Appended, Event, EventStore, MemoryStore, StoreError};
//!
//! /// Counts appends; everything else is the memory store's.
//! struct Counting {
//!     inner: MemoryStore,
//!     appends: AtomicU64,
//! }
//!
//! #[async_trait::async_trait]
//! impl dcb_core::Delegating for Counting {
//!     fn inner(&self) -> &dyn EventStore {
//!         &self.inner
//!     }
//!
//!     async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
//!         self.appends.fetch_add(1, Ordering::Relaxed);
//!         self.inner.append_request(request).await
//!     }
//! }
//!
//! # futures::executor::block_on(async {
//! let store = Counting { inner: MemoryStore::new(), appends: AtomicU64::new(0) };
//! store.append(vec![Event::new("Opened", b"{}".to_vec())], vec![]).await.unwrap();
//! assert_eq!(store.appends.load(Ordering::Relaxed), 1);
//! assert_eq!(store.stats().await.unwrap().events, Some(1), "the memory store's own figures");
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::store::{
    AppendRequest, Appended, ConsumerSnapshot, EventStore, ReadOptions, ReadStream, StateCommit,
    StoreStats, Subscription,
};
use crate::{Position, Query, StoreError};

/// A store made of another: each method forwards to [`Delegating::inner`] unless overridden.
///
/// The methods mirror [`EventStore`]'s, with the same contracts; [`EventStore::append`] is not
/// among them because it is [`EventStore::append_request`] (override that one).
#[async_trait]
pub trait Delegating: Send + Sync + 'static {
    /// The store underneath.
    fn inner(&self) -> &dyn EventStore;

    /// As [`EventStore::append_request`].
    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        self.inner().append_request(request).await
    }

    /// As [`EventStore::read`].
    async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.inner().read(query, options).await
    }

    /// As [`EventStore::head`].
    async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.inner().head().await
    }

    /// As [`EventStore::stats`]: the inner store's figures.
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner().stats().await
    }

    /// As [`EventStore::wait_for_head`].
    async fn wait_for_head(&self, after: Option<Position>) -> Result<Option<Position>, StoreError> {
        self.inner().wait_for_head(after).await
    }

    /// As [`EventStore::subscribe`]: the inner store's subscription, whose reads do not pass
    /// through this wrapper (poll through it with [`crate::subscribe::poll_subscription`] when
    /// they should).
    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription {
        self.inner().subscribe(query, after)
    }

    /// As [`EventStore::checkpoint`].
    async fn checkpoint(&self, consumer: &str) -> Result<Option<Position>, StoreError> {
        self.inner().checkpoint(consumer).await
    }

    /// As [`EventStore::commit_state`].
    async fn commit_state(&self, commit: StateCommit) -> Result<(), StoreError> {
        self.inner().commit_state(commit).await
    }

    /// As [`EventStore::get_state`].
    async fn get_state(&self, consumer: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner().get_state(consumer, key).await
    }

    /// As [`EventStore::scan_state`].
    async fn scan_state(
        &self,
        consumer: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner()
            .scan_state(consumer, prefix, after, limit)
            .await
    }

    /// As [`EventStore::reset_consumer`].
    async fn reset_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        self.inner().reset_consumer(consumer).await
    }

    /// As [`EventStore::consumer_snapshot`]: the inner store's snapshot.
    async fn consumer_snapshot(&self) -> Result<ConsumerSnapshot, StoreError> {
        self.inner().consumer_snapshot().await
    }
}

/// The future every forwarded method returns: the one [`Delegating`]'s method made, handed on
/// as it is (no second box, no second poll per call).
type Fwd<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

// Written out rather than with `#[async_trait]`, whose `async fn`s would box each forwarded
// future once more. The signatures are those `#[async_trait]` gives `EventStore`'s methods.
impl<T: Delegating> EventStore for T {
    fn append_request<'l0, 'at>(&'l0 self, request: AppendRequest) -> Fwd<'at, Appended>
    where
        'l0: 'at,
        Self: 'at,
    {
        Delegating::append_request(self, request)
    }

    fn read<'l0, 'at>(&'l0 self, query: Query, options: ReadOptions) -> Fwd<'at, ReadStream>
    where
        'l0: 'at,
        Self: 'at,
    {
        Delegating::read(self, query, options)
    }

    fn head<'l0, 'at>(&'l0 self) -> Fwd<'at, Option<Position>>
    where
        'l0: 'at,
        Self: 'at,
    {
        Delegating::head(self)
    }

    fn stats<'l0, 'at>(&'l0 self) -> Fwd<'at, StoreStats>
    where
        'l0: 'at,
        Self: 'at,
    {
        Delegating::stats(self)
    }

    fn wait_for_head<'l0, 'at>(&'l0 self, after: Option<Position>) -> Fwd<'at, Option<Position>>
    where
        'l0: 'at,
        Self: 'at,
    {
        Delegating::wait_for_head(self, after)
    }

    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription {
        Delegating::subscribe(self, query, after)
    }

    fn checkpoint<'l0, 'l1, 'at>(&'l0 self, consumer: &'l1 str) -> Fwd<'at, Option<Position>>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        Delegating::checkpoint(self, consumer)
    }

    fn commit_state<'l0, 'at>(&'l0 self, commit: StateCommit) -> Fwd<'at, ()>
    where
        'l0: 'at,
        Self: 'at,
    {
        Delegating::commit_state(self, commit)
    }

    fn get_state<'l0, 'l1, 'l2, 'at>(
        &'l0 self,
        consumer: &'l1 str,
        key: &'l2 [u8],
    ) -> Fwd<'at, Option<Vec<u8>>>
    where
        'l0: 'at,
        'l1: 'at,
        'l2: 'at,
        Self: 'at,
    {
        Delegating::get_state(self, consumer, key)
    }

    fn scan_state<'l0, 'l1, 'l2, 'l3, 'at>(
        &'l0 self,
        consumer: &'l1 str,
        prefix: &'l2 [u8],
        after: Option<&'l3 [u8]>,
        limit: usize,
    ) -> Fwd<'at, Vec<(Vec<u8>, Vec<u8>)>>
    where
        'l0: 'at,
        'l1: 'at,
        'l2: 'at,
        'l3: 'at,
        Self: 'at,
    {
        Delegating::scan_state(self, consumer, prefix, after, limit)
    }

    fn reset_consumer<'l0, 'l1, 'at>(&'l0 self, consumer: &'l1 str) -> Fwd<'at, ()>
    where
        'l0: 'at,
        'l1: 'at,
        Self: 'at,
    {
        Delegating::reset_consumer(self, consumer)
    }

    fn consumer_snapshot<'l0, 'at>(&'l0 self) -> Fwd<'at, ConsumerSnapshot>
    where
        'l0: 'at,
        Self: 'at,
    {
        Delegating::consumer_snapshot(self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::{AppendCondition, Event, MemoryStore};

    /// Overrides nothing: every answer is the inner store's.
    struct Plain(MemoryStore);

    impl Delegating for Plain {
        fn inner(&self) -> &dyn EventStore {
            &self.0
        }
    }

    /// Refuses every append; counts reads.
    struct ReadOnly {
        inner: MemoryStore,
        reads: AtomicU64,
    }

    #[async_trait]
    impl Delegating for ReadOnly {
        fn inner(&self) -> &dyn EventStore {
            &self.inner
        }

        async fn append_request(&self, _: AppendRequest) -> Result<Appended, StoreError> {
            Err(StoreError::Unavailable("read-only".into()))
        }

        async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.inner.read(query, options).await
        }
    }

    fn ev(n: u8) -> Event {
        Event::new("Counted", vec![b'0' + n]).tag("c:1")
    }

    #[tokio::test]
    async fn a_wrapper_that_overrides_nothing_answers_as_its_inner_store() {
        let plain = Plain(MemoryStore::new());
        // Both traits name these methods: a wrapper is used as an `EventStore`.
        let store: &dyn EventStore = &plain;
        let appended = store.append(vec![ev(1), ev(2)], vec![]).await.unwrap();
        assert_eq!(appended.positions.len(), 2);
        let inner = &plain.0;
        assert_eq!(store.head().await.unwrap(), inner.head().await.unwrap());
        assert_eq!(store.stats().await.unwrap(), inner.stats().await.unwrap());
        assert_eq!(store.stats().await.unwrap().events, Some(2));
        let read = store
            .read(Query::tagged("c:1"), ReadOptions::new())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(read.len(), 2);
        let stale = AppendCondition::new(Query::tagged("c:1"), None);
        assert!(matches!(
            store.append(vec![ev(3)], vec![stale]).await,
            Err(StoreError::ConditionFailed { .. })
        ));
        assert_eq!(
            store.consumer_snapshot().await.unwrap().head,
            inner.consumer_snapshot().await.unwrap().head
        );
        assert_eq!(store.checkpoint("view:x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_overridden_method_is_the_wrappers_and_the_rest_stay_the_inner_stores() {
        let inner = MemoryStore::new();
        inner.append(vec![ev(1)], vec![]).await.unwrap();
        let wrapper = ReadOnly {
            inner,
            reads: AtomicU64::new(0),
        };
        let store: &dyn EventStore = &wrapper;
        assert!(matches!(
            store.append(vec![ev(2)], vec![]).await,
            Err(StoreError::Unavailable(_))
        ));
        let read = store
            .read(Query::All, ReadOptions::new())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "the refused append wrote nothing");
        assert_eq!(wrapper.reads.load(Ordering::Relaxed), 1);
        assert_eq!(
            store.head().await.unwrap(),
            read.first().map(|e| e.position)
        );
        assert_eq!(
            EventStore::head(&wrapper).await.unwrap(),
            store.head().await.unwrap()
        );
    }
}
