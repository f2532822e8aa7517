//! Rebuilding a materialized view while it is read and while its worker runs: a read that
//! waited for a position never answers from a partially rebuilt read model.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dcb_core::{EventStore, MemoryStore, Position, StoreError};
use fairway_runtime::{
    DomainEvent, MaterializedView, NewEvent, Runtime, Sequenced, ViewError, shutdown_channel, tag,
    view_consumer,
};
use serde::{Deserialize, Serialize};

const LONG: Duration = Duration::from_secs(60);

/// One numbered tick.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ticked {
    pub n: u64,
}

impl DomainEvent for Ticked {
    const TYPE: &'static str = "Ticked";
    fn tags(&self) -> Vec<String> {
        vec![tag("tick", self.n)]
    }
}

/// An event the view does not read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ignored {
    pub n: u64,
}

impl DomainEvent for Ignored {
    const TYPE: &'static str = "Ignored";
    fn tags(&self) -> Vec<String> {
        vec![tag("ignored", self.n)]
    }
}

fairway_runtime::event_set! {
    /// What the view reads.
    pub enum TickEvents { Ticked(Ticked) }
}

/// One key per tick.
#[derive(Debug, Clone, Copy)]
pub struct Ticks;

impl MaterializedView for Ticks {
    type Events = TickEvents;
    type State = u64;

    fn name(&self) -> &str {
        "ticks"
    }

    fn keys(&self, e: &Sequenced<TickEvents>) -> Vec<String> {
        let TickEvents::Ticked(t) = &e.event;
        vec![format!("t/{:08}", t.n)]
    }

    fn evolve(&self, _key: &str, state: &mut Option<u64>, e: &Sequenced<TickEvents>) {
        let TickEvents::Ticked(t) = &e.event;
        *state = Some(t.n);
    }
}

/// Appends ticks `from..to` in batches; returns the last position.
async fn tick(store: &dyn EventStore, from: u64, to: u64) -> Position {
    let mut last = None;
    let all: Vec<u64> = (from..to).collect();
    for chunk in all.chunks(1000) {
        let batch = chunk
            .iter()
            .map(|n| {
                let id = dcb_core::Uuid::from_u128(u128::from(*n) + 1);
                NewEvent::from(Ticked { n: *n })
                    .to_event(id, std::time::UNIX_EPOCH)
                    .unwrap()
            })
            .collect();
        last = store.append(batch, vec![]).await.unwrap().last();
    }
    last.unwrap()
}

async fn ignored(store: &dyn EventStore, n: u64) -> Position {
    let e = NewEvent::from(Ignored { n })
        .to_event(
            dcb_core::Uuid::from_u128(u128::from(n) << 64),
            std::time::UNIX_EPOCH,
        )
        .unwrap();
    store.append(vec![e], vec![]).await.unwrap().last().unwrap()
}

async fn count(rt: &Runtime) -> usize {
    rt.view_scan(&Ticks, "t/", None, 1_000_000)
        .await
        .unwrap()
        .len()
}

/// The bug it pins: a read whose wait had passed kept reading while a rebuild (started from the
/// console right then) deleted and refilled the read model, and answered 200 with part of it.
/// Now a read that passed its wait holds the view until it is done reading, and a rebuild that
/// starts meanwhile waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_rebuild_serves_partial_state_to_a_read_that_passed_its_wait() {
    const N: u64 = 20_000;
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::new(store.clone());
    let head = tick(&*store, 0, N).await;
    rt.catch_up(&Ticks).await.unwrap();

    let reading = rt.wait_for_view("ticks", head, LONG).await.unwrap();
    let rebuild = tokio::spawn({
        let rt = rt.clone();
        async move { rt.rebuild(&Ticks).await }
    });
    // Wait until the rebuild has started (it counts itself at the start).
    let deadline = Instant::now() + LONG;
    while rt.metrics().view("ticks").rebuilds.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "the rebuild never started");
        tokio::task::yield_now().await;
    }
    assert_eq!(
        count(&rt).await,
        N as usize,
        "a read that passed its wait saw a partly rebuilt view"
    );
    drop(reading);
    assert_eq!(rebuild.await.unwrap().unwrap(), Some(head));
    let _reading = rt.wait_for_view("ticks", head, LONG).await.unwrap();
    assert_eq!(count(&rt).await, N as usize);
}

/// The bug it pins: the wait trusted the in-memory progress of this process's worker even after
/// the read model was deleted (by a rebuild from another process, or another replica), so a
/// read-your-writes wait passed at once and the read answered from an empty or partial model.
#[tokio::test]
async fn regression_a_reset_elsewhere_invalidates_the_in_memory_progress() {
    let store = Arc::new(MemoryStore::new());
    let worker = Runtime::new(store.clone());
    let other = Runtime::new(store.clone());
    tick(&*store, 0, 600).await;
    // The newest event is one the view does not read: only the in-memory progress knows the view
    // is past it.
    let head = ignored(&*store, 1).await;
    assert_eq!(worker.catch_up(&Ticks).await.unwrap(), Some(head));
    worker
        .wait_for_view("ticks", head, LONG)
        .await
        .expect("caught up");

    store.reset_consumer(&view_consumer("ticks")).await.unwrap();
    let waited = worker
        .wait_for_view("ticks", head, Duration::from_millis(300))
        .await;
    assert!(
        matches!(waited, Err(ViewError::Timeout { .. })),
        "the wait passed on an empty read model: {waited:?} with {} entries",
        count(&worker).await
    );

    other.catch_up(&Ticks).await.unwrap();
    let _reading = worker.wait_for_view("ticks", head, LONG).await.unwrap();
    assert_eq!(count(&worker).await, 600);
}

/// A rebuild while the view's worker runs and writes keep arriving: the rebuild completes, and
/// every read that waited for a position sees at least every tick up to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_beside_the_worker_completes_and_reads_are_never_partial() {
    const N: u64 = 5_000;
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::new(store.clone());
    tick(&*store, 0, N).await;
    let (trigger, shutdown) = shutdown_channel();
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run_view(Arc::new(Ticks), shutdown, "r1").await }
    });
    let head = store.head().await.unwrap().unwrap();
    drop(rt.wait_for_view("ticks", head, LONG).await.unwrap());

    let rebuild = tokio::spawn({
        let rt = rt.clone();
        async move { rt.rebuild(&Ticks).await }
    });
    for round in 0..20u64 {
        let n = N + round;
        let p = tick(&*store, n, n + 1).await;
        let _reading = rt.wait_for_view("ticks", p, LONG).await.unwrap();
        let seen = count(&rt).await;
        assert!(
            seen >= (n + 1) as usize,
            "round {round}: {seen} ticks after waiting for tick {n}"
        );
    }
    rebuild.await.unwrap().unwrap();
    let last = tick(&*store, N + 20, N + 21).await;
    drop(rt.wait_for_view("ticks", last, LONG).await.unwrap());
    assert_eq!(count(&rt).await, (N + 21) as usize);
    trigger.trigger();
    worker.await.unwrap();
}

/// `Ticks` with another layout: it stores twice the tick.
#[derive(Debug, Clone, Copy)]
pub struct TicksV2;

impl MaterializedView for TicksV2 {
    type Events = TickEvents;
    type State = u64;

    fn name(&self) -> &str {
        "ticks"
    }

    fn keys(&self, e: &Sequenced<TickEvents>) -> Vec<String> {
        Ticks.keys(e)
    }

    fn evolve(&self, _key: &str, state: &mut Option<u64>, e: &Sequenced<TickEvents>) {
        let TickEvents::Ticked(t) = &e.event;
        *state = Some(t.n * 2);
    }

    fn version(&self) -> u32 {
        2
    }
}

/// A new layout version rebuilds the stored read model once, when the next process first
/// updates it; a read waiting meanwhile sees only the new layout.
#[tokio::test]
async fn a_new_layout_version_rebuilds_the_view_once() {
    let store = Arc::new(MemoryStore::new());
    let old = Runtime::new(store.clone());
    let head = tick(&*store, 0, 300).await;
    old.catch_up(&Ticks).await.unwrap();
    assert_eq!(old.view_get(&Ticks, "t/00000007").await.unwrap(), Some(7));

    let new = Runtime::new(store.clone());
    assert_eq!(new.catch_up(&TicksV2).await.unwrap(), Some(head));
    let _reading = new.wait_for_view("ticks", head, LONG).await.unwrap();
    assert_eq!(
        new.view_get(&TicksV2, "t/00000007").await.unwrap(),
        Some(14)
    );
    assert_eq!(count(&new).await, 300);
    assert_eq!(
        new.metrics().view("ticks").rebuilds.load(Ordering::Relaxed),
        1
    );
    drop(_reading);

    // The next process finds the new layout stored: no rebuild.
    let next = Runtime::new(store.clone());
    let more = tick(&*store, 300, 301).await;
    assert_eq!(next.catch_up(&TicksV2).await.unwrap(), Some(more));
    assert_eq!(
        next.metrics()
            .view("ticks")
            .rebuilds
            .load(Ordering::Relaxed),
        0
    );
    assert_eq!(
        next.view_get(&TicksV2, "t/00000300").await.unwrap(),
        Some(600)
    );
    assert_eq!(
        next.view_get(&TicksV2, "t/00000007").await.unwrap(),
        Some(14)
    );
}

/// A view that did not catch up in time answers 503 `view_not_ready` with `Retry-After`.
#[tokio::test]
async fn a_view_timeout_is_503_with_retry_after() {
    use axum::response::IntoResponse as _;
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::new(store.clone());
    let head = tick(&*store, 0, 3).await;
    let err = rt
        .wait_for_view("ticks", head, Duration::from_millis(50))
        .await
        .unwrap_err();
    let response = err.into_response();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "view_not_ready", "{json}");
}

/// A position past the store's head is never covered, even when no event of the view's query
/// follows its checkpoint (events up to it may still come).
#[tokio::test]
async fn a_position_past_the_head_is_not_covered() {
    let store = Arc::new(MemoryStore::new());
    let rt = Runtime::new(store.clone());
    let head = tick(&*store, 0, 3).await;
    rt.catch_up(&Ticks).await.unwrap();
    let beyond = Position::new(head.get() + 1000).unwrap();
    let waited = rt
        .wait_for_view("ticks", beyond, Duration::from_millis(200))
        .await;
    assert!(
        matches!(waited, Err(ViewError::Timeout { .. })),
        "{waited:?}"
    );
    drop(rt.wait_for_view("ticks", head, LONG).await.unwrap());
}

/// The bug it pins: a rebuild resets the read model and then records the layout version in a
/// second commit. A process that stopped between the two (or a replica whose worker rebuilt the
/// model from nothing in between) left a read model of layout 2 stored without its version, so
/// every later process took it for layout 1: a reader that does not hold the view's lease
/// waited for a rebuild that never came (503 `view_not_ready` for good), and the next process
/// to update it rebuilt it again. Now a batch applied from an empty checkpoint records the
/// version in its own commit.
#[tokio::test]
async fn regression_a_model_rebuilt_after_an_interrupted_reset_keeps_its_layout_version() {
    let store = Arc::new(MemoryStore::new());
    let worker = Runtime::new(store.clone());
    let head = tick(&*store, 0, 300).await;
    worker.catch_up(&TicksV2).await.unwrap();
    // A rebuild elsewhere reset the model and stopped before recording the version.
    store.reset_consumer(&view_consumer("ticks")).await.unwrap();
    assert_eq!(worker.catch_up(&TicksV2).await.unwrap(), Some(head));

    let next = Runtime::new(store.clone());
    let more = tick(&*store, 300, 301).await;
    assert_eq!(next.catch_up(&TicksV2).await.unwrap(), Some(more));
    assert_eq!(
        next.metrics()
            .view("ticks")
            .rebuilds
            .load(Ordering::Relaxed),
        0,
        "the model rebuilt from nothing was taken for another layout"
    );
    assert_eq!(
        next.view_get(&TicksV2, "t/00000007").await.unwrap(),
        Some(14)
    );
}

/// A store that pauses right after a reset once armed, until the test lets it go on.
struct PauseAfterReset {
    inner: MemoryStore,
    armed: std::sync::atomic::AtomicBool,
    reset_done: tokio::sync::Notify,
    resume: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl dcb_core::Delegating for PauseAfterReset {
    fn inner(&self) -> &dyn EventStore {
        &self.inner
    }
    async fn reset_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        self.inner.reset_consumer(consumer).await?;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reset_done.notify_one();
            self.resume.notified().await;
        }
        Ok(())
    }
}

/// The bug it pins (seen in the multi-replica simulation): a rebuild on one replica reset the
/// view, the replica holding the view's lease rebuilt it from nothing before the rebuild could
/// record the layout version, the rebuild failed on that compare-and-set, and the model stayed
/// without its version: the rebuilding replica answered 503 `view_not_ready` from then on. Now
/// the rebuild carries on from the other replica's progress, and the model keeps its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_rebuild_overtaken_by_the_lease_holder_completes() {
    let store = Arc::new(PauseAfterReset {
        inner: MemoryStore::new(),
        armed: std::sync::atomic::AtomicBool::new(false),
        reset_done: tokio::sync::Notify::new(),
        resume: tokio::sync::Notify::new(),
    });
    let holder = Runtime::new(store.clone());
    let rebuilder = Runtime::new(store.clone());
    let head = tick(&*store, 0, 300).await;
    holder.catch_up(&TicksV2).await.unwrap();

    store.armed.store(true, Ordering::SeqCst);
    let rebuild = tokio::spawn({
        let rebuilder = rebuilder.clone();
        async move { rebuilder.rebuild(&TicksV2).await }
    });
    store.reset_done.notified().await;
    assert_eq!(holder.catch_up(&TicksV2).await.unwrap(), Some(head));
    store.resume.notify_one();
    assert_eq!(rebuild.await.unwrap().unwrap(), Some(head));

    drop(rebuilder.wait_for_view("ticks", head, LONG).await.unwrap());
    assert_eq!(count(&rebuilder).await, 300);
    let next = Runtime::new(store.clone());
    next.catch_up(&TicksV2).await.unwrap();
    assert_eq!(
        next.metrics()
            .view("ticks")
            .rebuilds
            .load(Ordering::Relaxed),
        0,
        "the model was left without its layout version"
    );
}
