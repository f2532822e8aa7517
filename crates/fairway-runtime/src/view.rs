//! Views: live (folded on each request) and materialized (a read model kept current by a
//! subscription-like loop, stored with its checkpoint in one commit).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dcb_core::{CheckpointGuard, Position, Query, ReadOptions, StateCommit, StoreError};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::event::{DecodeError, EventSet, Sequenced, TypeOutsideSet, restrict};
use crate::lease::LeaseKeeper;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;
use tracing::Instrument;

/// Events applied per commit of a materialized view.
pub const VIEW_BATCH: u64 = 256;

/// How long a replica's lease on a materialized view lasts without renewal.
pub const VIEW_LEASE_TTL: Duration = Duration::from_secs(15);

/// Pause after a failed view update before trying again.
pub const VIEW_RETRY_DELAY: Duration = Duration::from_secs(1);

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
    /// The view did not reach the position in time.
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
        let query = restrict(&view.query(), V::Events::TYPES)?;
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

    /// Waits until view `name` has processed everything up to `position` (read-your-writes after
    /// a command returned its positions).
    pub async fn wait_for_view(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ViewError> {
        let consumer = view_consumer(name);
        let mut rx = self.progress().sender(name).subscribe();
        let wait = async {
            loop {
                // The stored checkpoint covers views updated by another replica; the in-memory
                // progress covers positions the view has seen but does not read.
                if self.store().checkpoint(&consumer).await? >= Some(position)
                    || *rx.borrow() >= Some(position)
                {
                    return Ok::<(), ViewError>(());
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

    /// Applies every event after the view's checkpoint (in commits of at most [`VIEW_BATCH`]
    /// events) and returns the position the view has now processed up to (the head it read).
    pub async fn catch_up<V: MaterializedView>(
        &self,
        view: &V,
    ) -> Result<Option<Position>, ViewError> {
        let name = view.name();
        let consumer = view_consumer(name);
        let query = restrict(&view.query(), V::Events::TYPES)?;
        let metrics = self.metrics().view(name);
        let mut cursor = self.store().checkpoint(&consumer).await?;
        loop {
            let options = ReadOptions::new().after_opt(cursor).limit(VIEW_BATCH);
            let mut stream = self.store().read(query.clone(), options).await?;
            let head = stream.head();
            let mut changed: BTreeMap<String, Option<V::State>> = BTreeMap::new();
            let mut n = 0u64;
            let mut last = cursor;
            while let Some(stored) = stream.next().await {
                let event = Sequenced::<V::Events>::decode(stored?)?;
                n += 1;
                last = Some(event.position);
                for key in view.keys(&event) {
                    if !changed.contains_key(&key) {
                        let current = self.view_get(view, &key).await?;
                        changed.insert(key.clone(), current);
                    }
                    if let Some(state) = changed.get_mut(&key) {
                        view.evolve(&key, state, &event);
                    }
                }
            }
            if n > 0 {
                let mut writes = Vec::with_capacity(changed.len());
                for (key, state) in changed {
                    let value = state
                        .map(|s| serde_json::to_vec(&s))
                        .transpose()
                        .map_err(|e| ViewError::State {
                            key: key.clone(),
                            message: e.to_string(),
                        })?;
                    writes.push((state_key(&key), value));
                }
                self.store()
                    .commit_state(StateCommit {
                        consumer: consumer.clone(),
                        writes,
                        checkpoint: last,
                        // Compare-and-set from where this batch started: a replica that took the
                        // view over meanwhile makes this commit fail instead of applying twice.
                        guard: CheckpointGuard::Exactly(cursor),
                    })
                    .await?;
                metrics.processed.fetch_add(n, Ordering::Relaxed);
                cursor = last;
            }
            if n < VIEW_BATCH {
                let reached = head.max(cursor);
                self.progress().advance(name, reached);
                let lag = head
                    .map_or(0, |h| h.get())
                    .saturating_sub(reached.map_or(0, |p| p.get()));
                metrics
                    .lag
                    .store(u64::try_from(lag).unwrap_or(u64::MAX), Ordering::Relaxed);
                return Ok(reached);
            }
            self.progress().advance(name, cursor);
        }
    }

    /// Deletes the view's read model and checkpoint, then rebuilds it from the first event.
    pub async fn rebuild<V: MaterializedView>(
        &self,
        view: &V,
    ) -> Result<Option<Position>, ViewError> {
        self.store()
            .reset_consumer(&view_consumer(view.name()))
            .await?;
        self.progress().reset(view.name());
        self.metrics()
            .view(view.name())
            .rebuilds
            .fetch_add(1, Ordering::Relaxed);
        self.catch_up(view).await
    }

    /// Keeps a materialized view current until `shutdown`: while this replica holds the view's
    /// lease (`lease:view:{name}`), catch up, wait for the head to move, repeat; otherwise wait
    /// for the lease. Store errors are logged and retried after [`VIEW_RETRY_DELAY`]. The lease
    /// is released on the way out.
    pub async fn run_view<V: MaterializedView>(
        &self,
        view: Arc<V>,
        shutdown: Shutdown,
        replica: impl Into<String>,
    ) {
        let gauge = self.metrics().view(view.name()).lease_held.clone();
        let mut lease = LeaseKeeper::new(
            &view_consumer(view.name()),
            replica.into(),
            VIEW_LEASE_TTL,
            gauge,
        );
        let span = tracing::info_span!("view", name = view.name(), replica = %lease.replica());
        let renew = VIEW_LEASE_TTL / 3;
        async move {
            while !shutdown.is_set() {
                match lease.ensure(self).await {
                    Ok(true) => {}
                    Ok(false) => {
                        pause(&shutdown, renew).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "view lease failed");
                        pause(&shutdown, VIEW_RETRY_DELAY).await;
                        continue;
                    }
                }
                let wait_from = match self.catch_up(&*view).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "view update failed");
                        pause(&shutdown, VIEW_RETRY_DELAY).await;
                        continue;
                    }
                };
                tokio::select! {
                    r = self.store().wait_for_head(wait_from) => {
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "waiting for new events failed");
                            pause(&shutdown, VIEW_RETRY_DELAY).await;
                        }
                    }
                    _ = tokio::time::sleep(renew) => {}
                    _ = shutdown.wait() => {}
                }
            }
            if let Err(e) = lease.release(self).await {
                tracing::warn!(error = %e, "cannot release the view lease");
            }
        }
        .instrument(span)
        .await
    }
}

async fn pause(shutdown: &Shutdown, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.wait() => {}
    }
}
