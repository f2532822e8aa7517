//! Lag, defined once for every consumer (a materialized view or an automation): **the number of
//! events matching the consumer's query after its stored checkpoint**, i.e. the events it has
//! still to process. Events it does not read (another context's, its own output) never count,
//! so a consumer that caught up shows 0 however far the head moved.
//!
//! `GET /metrics` (`fairway_view_lag`, `fairway_automation_lag`), the console
//! (`/console/api/views`, `/console/api/automations`) and `fairway status` all get it from
//! [`Host::lags`](crate::Host::lags), which calls [`lag`]. Computing it reads the matching events
//! after the checkpoint through the store's index, so its cost grows with the lag itself, not
//! with the store's size: nothing for a consumer that keeps up.

use dcb_core::{EventStore, Position, Query, ReadOptions, StoreError};
use futures::StreamExt as _;
use serde::Serialize;
use std::sync::atomic::Ordering;

use crate::automation::automation_consumer;
use crate::runtime::Runtime;
use crate::view::view_consumer;

/// The events matching `query` after `checkpoint` (all of them when `checkpoint` is `None`):
/// the lag of a consumer reading `query` whose checkpoint is `checkpoint`.
pub async fn lag(
    store: &dyn EventStore,
    query: &Query,
    checkpoint: Option<Position>,
) -> Result<u64, StoreError> {
    let mut stream = store
        .read(query.clone(), ReadOptions::new().after_opt(checkpoint))
        .await?;
    let mut n = 0u64;
    while let Some(event) = stream.next().await {
        event?;
        n += 1;
    }
    Ok(n)
}

/// Which kind of consumer a [`ConsumerLag`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerKind {
    /// A materialized view.
    View,
    /// An automation.
    Automation,
}

/// One consumer's checkpoint and lag (see [`lag`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerLag {
    /// A view or an automation.
    pub kind: ConsumerKind,
    /// Its name (the view's or the automation's, without the `view:` / `automation:` prefix).
    pub name: String,
    /// The last position it stored as processed.
    pub checkpoint: Option<Position>,
    /// Events matching its query after `checkpoint`.
    pub lag: u64,
}

/// A consumer a module registered: its kind, name and (restricted) query.
#[derive(Debug, Clone)]
pub(crate) struct Consumer {
    pub(crate) kind: ConsumerKind,
    pub(crate) name: String,
    pub(crate) query: Query,
}

impl Consumer {
    /// The store consumer id holding its checkpoint.
    fn store_id(&self) -> String {
        match self.kind {
            ConsumerKind::View => view_consumer(&self.name),
            ConsumerKind::Automation => automation_consumer(&self.name),
        }
    }
}

/// The lag of each of `consumers`, also stored in the runtime's lag gauges (what `/metrics`
/// renders).
pub(crate) async fn lags(
    rt: &Runtime,
    consumers: &[Consumer],
) -> Result<Vec<ConsumerLag>, StoreError> {
    let mut out = Vec::with_capacity(consumers.len());
    for c in consumers {
        let checkpoint = rt.store().checkpoint(&c.store_id()).await?;
        let n = lag(rt.store(), &c.query, checkpoint).await?;
        match c.kind {
            ConsumerKind::View => rt.metrics().view(&c.name).lag.store(n, Ordering::Relaxed),
            ConsumerKind::Automation => rt
                .metrics()
                .automation(&c.name)
                .lag
                .store(n, Ordering::Relaxed),
        }
        out.push(ConsumerLag {
            kind: c.kind,
            name: c.name.clone(),
            checkpoint,
            lag: n,
        });
    }
    Ok(out)
}
