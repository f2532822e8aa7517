//! Views: live (folded on each request) and materialized (a read model kept current by a
//! subscription-like loop, stored with its checkpoint in one commit).
//!
//! Reading a materialized view consistently: [`Runtime::wait_for_view`] (or
//! [`Runtime::view_ready`]) returns a [`ViewReadGuard`] once the view provably covers the
//! requested position; hold it while reading. A rebuild in this process deletes the read model
//! only while no guard is held, and a guard is only handed out when the (re)built model has
//! caught up past the position, so a read never answers from a partially rebuilt model.
//!
//! When is a position covered? When the stored checkpoint (committed atomically with the
//! states) is at or past it; or when an update pass of this process proved that no event the
//! view reads lies between the checkpoint it started from (`base`) and the head it read, and the
//! stored checkpoint is still at least `base` (a reset by a rebuild, here or in another process,
//! moves it back and voids the proof until the rebuild re-applied up to `base`); or when the
//! store shows no event of the view's query between the stored checkpoint and the position.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dcb_core::{Position, Query, ReadOptions, StoreError};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedRwLockReadGuard, RwLock, watch};

use crate::event::{DecodeError, EventSet, Sequenced, TypeOutsideSet, restrict_set};
use crate::runtime::Runtime;

mod update;

/// Events applied per commit of a materialized view.
pub const VIEW_BATCH: u64 = 256;

/// How long a replica's lease on a materialized view lasts without renewal.
pub const VIEW_LEASE_TTL: Duration = Duration::from_secs(15);

/// Pause after a failed view update before trying again.
pub const VIEW_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The `Retry-After` (seconds) of a 503 for a view that did not catch up in time.
pub const VIEW_RETRY_AFTER_SECS: u64 = 1;

/// The state key holding a view's layout version ([`MaterializedView::version`]).
const VERSION_KEY: &[u8] = b"m/version";

/// Why a view could not be read or updated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The view's query names a type outside its event set.
    #[error(transparent)]
    Query(#[from] TypeOutsideSet),
    /// A stored state could not be (de)serialized.
    #[error("view state of {key:?}: {message}")]
    State {
        /// The key.
        key: String,
        /// The JSON error.
        message: String,
    },
    /// A read asked to wait for a position past the store's head: no command returned it, so
    /// waiting cannot help (HTTP: 400 `invalid_field` naming `after`).
    #[error(
        "after: position {position} is past the store's head ({head}): wait only for a position a command returned"
    )]
    AheadOfStore {
        /// The view.
        view: String,
        /// The awaited position.
        position: Position,
        /// The store's head (`0` when empty).
        head: Position,
    },
    /// The view did not reach the position in time (HTTP: 503 with `Retry-After`).
    #[error("view {view} did not reach position {position} within {timeout:?}")]
    Timeout {
        /// The view.
        view: String,
        /// The awaited position.
        position: Position,
        /// The time waited.
        timeout: Duration,
    },
}

impl IntoResponse for ViewError {
    /// A timeout is 503 `view_not_ready` with `Retry-After`; the rest as
    /// [`ApiError`](crate::http::ApiError) maps them.
    fn into_response(self) -> Response {
        match self {
            ViewError::Timeout { .. } => {
                let mut response = crate::http::ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "view_not_ready",
                    format!("{self}; retry shortly"),
                )
                .into_response();
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(VIEW_RETRY_AFTER_SECS),
                );
                response
            }
            other => crate::http::ApiError::from(other).into_response(),
        }
    }
}

/// Held while reading a materialized view after [`Runtime::wait_for_view`] or
/// [`Runtime::view_ready`]: a rebuild in this process does not delete the read model while any
/// guard is held, so what the wait proved stays true until the guard is dropped.
pub struct ViewReadGuard {
    _permit: OwnedRwLockReadGuard<()>,
}

impl Debug for ViewReadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewReadGuard").finish_non_exhaustive()
    }
}

/// What an update pass proved: no event the view reads lies in `(base, head]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Seen {
    base: Option<Position>,
    head: Option<Position>,
}

/// One view's in-process coordination.
struct ViewSlot {
    /// The latest proof of an update pass (read-your-writes waits watch it).
    seen: watch::Sender<Seen>,
    /// Serializes update passes and rebuilds in this process.
    update: tokio::sync::Mutex<()>,
    /// Readers hold it shared; deleting the read model (a rebuild) holds it exclusively.
    readers: Arc<RwLock<()>>,
    /// The view's restricted query, once a worker or an update pass of this process named it.
    query: Mutex<Option<Query>>,
    /// The view's layout version, once named (0: unknown).
    version: AtomicU32,
    /// The stored layout version is the view's (checked, or the view was rebuilt).
    layout_ok: AtomicBool,
}

impl ViewSlot {
    fn new() -> ViewSlot {
        ViewSlot {
            seen: watch::channel(Seen::default()).0,
            update: tokio::sync::Mutex::new(()),
            readers: Arc::new(RwLock::new(())),
            query: Mutex::new(None),
            version: AtomicU32::new(0),
            layout_ok: AtomicBool::new(false),
        }
    }

    fn register(&self, query: &Query, version: u32) {
        let mut q = self.query.lock().unwrap_or_else(|p| p.into_inner());
        if q.is_none() {
            *q = Some(query.clone());
        }
        self.version.store(version, Ordering::Release);
    }

    fn query(&self) -> Option<Query> {
        self.query.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records a proof, keeping the one that reaches furthest.
    fn note(&self, base: Option<Position>, head: Option<Position>) {
        self.seen.send_if_modified(|s| {
            if head > s.head || (head == s.head && base < s.base) {
                *s = Seen { base, head };
                true
            } else {
                false
            }
        });
    }
}

/// The in-process state of every materialized view (one per [`Runtime`] and its clones).
#[derive(Clone, Default)]
pub(crate) struct Progress {
    views: Arc<Mutex<HashMap<String, Arc<ViewSlot>>>>,
}

impl Progress {
    fn slot(&self, view: &str) -> Arc<ViewSlot> {
        let mut map = self.views.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(view.to_owned())
            .or_insert_with(|| Arc::new(ViewSlot::new()))
            .clone()
    }
}

/// A view folded from its query on each request (fine for small slices).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a live view",
    note = "implement `fairway_runtime::LiveView`: `Events`, `State`, `query`, `evolve`"
)]
pub trait LiveView: Send + Sync {
    /// The events it reads.
    type Events: EventSet;
    /// The folded state.
    type State: Default + Send;
    /// What it reads.
    fn query(&self) -> Query;
    /// Folds one event, oldest first.
    fn evolve(state: &mut Self::State, event: &Sequenced<Self::Events>);
}

/// A live view's state and the head it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveState<S> {
    /// The folded state.
    pub state: S,
    /// The head of the read.
    pub head: Option<Position>,
}

/// A persisted read model: a map from string keys to states. Each event updates the states of
/// the keys it names; the runtime stores the changed states and the view's checkpoint in one
/// commit of the store's consumer state.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a materialized view",
    note = "implement `fairway_runtime::MaterializedView`: `Events`, `State`, `name`, `query`, `keys`, `evolve`"
)]
pub trait MaterializedView: Send + Sync + 'static {
    /// The events it reads.
    type Events: EventSet;
    /// The state stored under each key (JSON).
    type State: Serialize + DeserializeOwned + Clone + Debug + Send + Sync;
    /// A stable name; it names the view's storage (`view:{name}`).
    fn name(&self) -> &str;
    /// What it reads (`Query::All` = every event of its set).
    fn query(&self) -> Query {
        Query::All
    }
    /// The keys an event updates.
    fn keys(&self, event: &Sequenced<Self::Events>) -> Vec<String>;
    /// Updates one key's state (`None` = absent; set it to `None` to delete).
    fn evolve(&self, key: &str, state: &mut Option<Self::State>, event: &Sequenced<Self::Events>);
    /// The layout version of the stored read model (default 1). Bump it when `keys` or `State`
    /// change incompatibly: when the worker finds a read model stored with another version it
    /// rebuilds the view from the first event (reads wait meanwhile, as during any rebuild).
    fn version(&self) -> u32 {
        1
    }
}

/// The consumer name of a view's storage.
pub fn view_consumer(name: &str) -> String {
    format!("view:{name}")
}

fn state_key(key: &str) -> Vec<u8> {
    let mut k = b"k/".to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

impl Runtime {
    /// Folds a live view now.
    pub async fn live<V: LiveView>(&self, view: &V) -> Result<LiveState<V::State>, ViewError> {
        let query = restrict_set::<V::Events>(&view.query())?;
        let mut stream = self.store().read(query, ReadOptions::new()).await?;
        let head = stream.head();
        let mut state = V::State::default();
        while let Some(e) = stream.next().await {
            V::evolve(&mut state, &Sequenced::decode(e?)?);
        }
        Ok(LiveState { state, head })
    }

    /// Reads one key of a materialized view.
    pub async fn view_get<V: MaterializedView>(
        &self,
        view: &V,
        key: &str,
    ) -> Result<Option<V::State>, ViewError> {
        let raw = self
            .store()
            .get_state(&view_consumer(view.name()), &state_key(key))
            .await?;
        raw.map(|b| {
            serde_json::from_slice(&b).map_err(|e| ViewError::State {
                key: key.to_owned(),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// Lists up to `limit` entries of a materialized view whose keys start with `prefix`, after
    /// key `after` (for paging).
    pub async fn view_scan<V: MaterializedView>(
        &self,
        view: &V,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, V::State)>, ViewError> {
        let after = after.map(state_key);
        let rows = self
            .store()
            .scan_state(
                &view_consumer(view.name()),
                &state_key(prefix),
                after.as_deref(),
                limit,
            )
            .await?;
        rows.into_iter()
            .map(|(k, v)| {
                let key = String::from_utf8_lossy(k.get(2..).unwrap_or_default()).into_owned();
                let state = serde_json::from_slice(&v).map_err(|e| ViewError::State {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
                Ok((key, state))
            })
            .collect()
    }

    /// Waits until view `name` covers everything up to `position` (read-your-writes after a
    /// command returned its positions), then returns a guard to hold while reading it.
    ///
    /// Covered means: the stored checkpoint is at or past `position`, or no event the view
    /// reads lies between the stored checkpoint and `position` (proved by an update pass of
    /// this process, or by the store when this process knows the view's query). During a
    /// rebuild the read model restarts from nothing, so the wait lasts until the rebuild has
    /// re-applied everything up to `position`; after `timeout`, [`ViewError::Timeout`] (HTTP
    /// 503 with `Retry-After`).
    pub async fn wait_for_view(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<ViewReadGuard, ViewError> {
        let slot = self.progress().slot(name);
        let consumer = view_consumer(name);
        let mut rx = slot.seen.subscribe();
        let wait = async {
            loop {
                let seen = *rx.borrow_and_update();
                if self.covers(&slot, &consumer, position, seen).await? {
                    let permit = slot.readers.clone().read_owned().await;
                    // A rebuild may have deleted the read model before the permit was granted.
                    let seen = *rx.borrow_and_update();
                    if self.covers(&slot, &consumer, position, seen).await? {
                        return Ok::<ViewReadGuard, ViewError>(ViewReadGuard { _permit: permit });
                    }
                    continue;
                }
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(25)) => {}
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(ViewError::Timeout {
                view: name.to_owned(),
                position,
                timeout,
            }),
        }
    }

    /// The guard for reading view `name`: with `after`, [`Runtime::wait_for_view`] for it;
    /// without, the same for the store's head now, so a read never answers from a state older
    /// than the moment it arrived (in particular not from a view being rebuilt). An `after`
    /// past the store's head is [`ViewError::AheadOfStore`] at once (every position a command
    /// returned is at or below the head).
    pub async fn view_ready(
        &self,
        name: &str,
        after: Option<Position>,
        timeout: Duration,
    ) -> Result<ViewReadGuard, ViewError> {
        let head = self.store().head().await?;
        let target = match after {
            Some(p) if p > head.unwrap_or(Position::ZERO) => {
                return Err(ViewError::AheadOfStore {
                    view: name.to_owned(),
                    position: p,
                    head: head.unwrap_or(Position::ZERO),
                });
            }
            Some(p) => Some(p),
            None => head,
        };
        match target {
            Some(p) => self.wait_for_view(name, p, timeout).await,
            None => {
                let slot = self.progress().slot(name);
                let permit = tokio::time::timeout(timeout, slot.readers.clone().read_owned())
                    .await
                    .map_err(|_| ViewError::Timeout {
                        view: name.to_owned(),
                        position: Position::ZERO,
                        timeout,
                    })?;
                Ok(ViewReadGuard { _permit: permit })
            }
        }
    }

    async fn covers(
        &self,
        slot: &ViewSlot,
        consumer: &str,
        position: Position,
        seen: Seen,
    ) -> Result<bool, ViewError> {
        let version = slot.version.load(Ordering::Acquire);
        if version != 0 && !slot.layout_ok.load(Ordering::Acquire) {
            // A read model stored with another layout is about to be rebuilt: not covered.
            if stored_version(self, consumer).await? != version {
                return Ok(false);
            }
            slot.layout_ok.store(true, Ordering::Release);
        }
        let query = slot.query();
        let checkpoint = self.store().checkpoint(consumer).await?;
        if checkpoint >= Some(position) {
            return Ok(true);
        }
        if seen.head >= Some(position) && checkpoint >= seen.base {
            return Ok(true);
        }
        let Some(query) = query else {
            return Ok(false);
        };
        let options = ReadOptions::new().after_opt(checkpoint).limit(1);
        let mut next = self.store().read(query, options).await?;
        if next.head() < Some(position) {
            // Not committed yet: events up to it may still come.
            return Ok(false);
        }
        Ok(match next.next().await {
            None => true,
            Some(e) => e?.position > position,
        })
    }
}

/// The layout version a view's read model was stored with (absent: 1; unreadable: 0, which no
/// view has, so it is rebuilt).
async fn stored_version(rt: &Runtime, consumer: &str) -> Result<u32, ViewError> {
    let stored = rt.store().get_state(consumer, VERSION_KEY).await?;
    Ok(match stored {
        None => 1,
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0),
    })
}
