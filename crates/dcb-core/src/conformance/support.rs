//! Small helpers the rules share: building events, appending and reading with clear failures.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{
    AppendCondition, AppendRequest, Appended, Event, EventStore, InputError, Position, Query,
    ReadOptions, SequencedEvent, StoreError, Subscription, SubscriptionItem,
};

/// The store handle every rule receives.
pub type Store = Arc<dyn EventStore>;

/// How long a rule waits for a live event before it fails.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// An event of type `t` carrying `tags`, with `data` = the type's bytes.
pub fn ev(t: &str, tags: &[&str]) -> Event {
    Event::new(t.to_owned(), t.as_bytes().to_vec()).tags(tags.iter().map(|t| t.to_string()))
}

/// An event of type `t` carrying `tags` and the given data.
pub fn ev_data(t: &str, tags: &[&str], data: impl Into<Vec<u8>>) -> Event {
    Event::new(t.to_owned(), data.into()).tags(tags.iter().map(|t| t.to_string()))
}

/// Appends unconditionally; panics with the error on failure.
pub async fn append(store: &Store, events: Vec<Event>) -> Appended {
    match store.append(events, Vec::new()).await {
        Ok(a) => a,
        Err(e) => panic!("append failed: {e:?}"),
    }
}

/// Appends with conditions, returning the result.
pub async fn try_append(
    store: &Store,
    events: Vec<Event>,
    conditions: Vec<AppendCondition>,
) -> Result<Appended, StoreError> {
    store.append(events, conditions).await
}

/// Appends each event as its own batch and returns their positions.
pub async fn seed(store: &Store, events: Vec<Event>) -> Vec<Position> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let a = append(store, vec![e]).await;
        assert_eq!(
            a.positions.len(),
            1,
            "one event appended, one position returned"
        );
        out.push(a.positions[0]);
    }
    out
}

/// Appends the standard small data set, one event per batch, and returns the positions:
///
/// | # | type | tags |
/// |---|------|------|
/// | 0 | A | x |
/// | 1 | B | x, y |
/// | 2 | A | y |
/// | 3 | C | (none) |
/// | 4 | B | y, z |
/// | 5 | A | x, y, z |
pub async fn seed_standard(store: &Store) -> Vec<Position> {
    seed(
        store,
        vec![
            ev("A", &["x"]),
            ev("B", &["x", "y"]),
            ev("A", &["y"]),
            ev("C", &[]),
            ev("B", &["y", "z"]),
            ev("A", &["x", "y", "z"]),
        ],
    )
    .await
}

/// Reads, collecting every event; panics on failure.
pub async fn read(
    store: &Store,
    query: Query,
    options: ReadOptions,
) -> (Option<Position>, Vec<SequencedEvent>) {
    let stream = match store.read(query, options).await {
        Ok(s) => s,
        Err(e) => panic!("read failed: {e:?}"),
    };
    let head = stream.head();
    match stream.collect_all().await {
        Ok(events) => (head, events),
        Err(e) => panic!("reading the stream failed: {e:?}"),
    }
}

/// Every stored event, oldest first.
pub async fn read_all(store: &Store) -> Vec<SequencedEvent> {
    read(store, Query::All, ReadOptions::new()).await.1
}

/// The positions of `events`.
pub fn positions(events: &[SequencedEvent]) -> Vec<Position> {
    events.iter().map(|e| e.position).collect()
}

/// The positions at `indexes` of `all`.
pub fn pick(all: &[Position], indexes: &[usize]) -> Vec<Position> {
    indexes.iter().map(|&i| all[i]).collect()
}

/// The store's head; panics on failure.
pub async fn head(store: &Store) -> Option<Position> {
    match store.head().await {
        Ok(h) => h,
        Err(e) => panic!("head failed: {e:?}"),
    }
}

/// Asserts `result` is an input error and returns it.
#[track_caller]
pub fn expect_input_error<T: std::fmt::Debug>(result: Result<T, StoreError>) -> InputError {
    match result {
        Err(StoreError::InvalidInput(e)) => e,
        other => panic!("expected an input error, got {other:?}"),
    }
}

/// Asserts the store holds exactly `expected` (compared by position and event).
pub async fn assert_unchanged(store: &Store, expected: &[SequencedEvent]) {
    let now = read_all(store).await;
    assert_eq!(
        now, expected,
        "the store changed although the operation failed"
    );
    let expected_head = expected.last().map(|e| e.position);
    assert_eq!(
        head(store).await,
        expected_head,
        "the head moved although the operation failed"
    );
}

/// Appends `request`, expects an input error, checks nothing was written, returns the error.
pub async fn rejected(store: &Store, request: AppendRequest) -> InputError {
    let before = read_all(store).await;
    let err = expect_input_error(store.append_request(request).await);
    assert_unchanged(store, &before).await;
    err
}

/// The next subscription item, failing after [`LIVE_TIMEOUT`].
pub async fn next_item(sub: &mut Subscription) -> SubscriptionItem {
    match tokio::time::timeout(LIVE_TIMEOUT, sub.next()).await {
        Err(_) => panic!("no subscription item within {LIVE_TIMEOUT:?}"),
        Ok(None) => panic!("the subscription ended"),
        Ok(Some(Err(e))) => panic!("the subscription failed: {e:?}"),
        Ok(Some(Ok(item))) => item,
    }
}

/// The next subscription item, which must be an event.
pub async fn next_event(sub: &mut Subscription) -> SequencedEvent {
    match next_item(sub).await {
        SubscriptionItem::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Reads items until `CaughtUp`, returning the events before it and the caught-up head.
pub async fn until_caught_up(sub: &mut Subscription) -> (Vec<SequencedEvent>, Option<Position>) {
    let mut out = Vec::new();
    loop {
        match next_item(sub).await {
            SubscriptionItem::Event(e) => out.push(e),
            SubscriptionItem::CaughtUp { head } => return (out, head),
        }
    }
}

/// Asserts that nothing arrives on `sub` for a short while.
pub async fn assert_quiet(sub: &mut Subscription) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
        panic!("expected no subscription item, got {item:?}");
    }
}

/// A fresh random id.
pub fn id() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}
