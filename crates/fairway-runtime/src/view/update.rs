//! Keeping a materialized view current: the update pass, layout checks, rebuilds and the
//! worker that runs them while its replica holds the view's lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dcb_core::{CheckpointGuard, Position, Query, ReadOptions, StateCommit, StoreError};
use futures::StreamExt;
use tracing::Instrument;

use super::{
    MaterializedView, VERSION_KEY, VIEW_BATCH, VIEW_LEASE_TTL, VIEW_RETRY_DELAY, ViewError,
    ViewSlot, state_key, stored_version, view_consumer,
};
use crate::event::{Sequenced, restrict_set};
use crate::lease::LeaseKeeper;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;

impl Runtime {
    /// Applies every event after the view's checkpoint (in commits of at most [`VIEW_BATCH`]
    /// events) and returns the position the view has now processed up to (the head it read).
    /// When the stored layout version differs from [`MaterializedView::version`], the view is
    /// rebuilt first.
    pub async fn catch_up<V: MaterializedView>(
        &self,
        view: &V,
    ) -> Result<Option<Position>, ViewError> {
        let slot = self.progress().slot(view.name());
        let query = restrict_set::<V::Events>(&view.query())?;
        slot.register(&query, view.version());
        if !slot.layout_ok.load(Ordering::Acquire) {
            let _readers = slot.readers.write().await;
            let _update = slot.update.lock().await;
            if !slot.layout_ok.load(Ordering::Acquire) {
                self.check_layout(view).await?;
                slot.layout_ok.store(true, Ordering::Release);
            }
        }
        let _update = slot.update.lock().await;
        self.apply_pending(view, &slot, query).await
    }

    /// Rebuilds the view when its stored layout version is not the view's.
    async fn check_layout<V: MaterializedView>(&self, view: &V) -> Result<(), ViewError> {
        let consumer = view_consumer(view.name());
        let stored = stored_version(self, &consumer).await?;
        if stored == view.version() {
            return Ok(());
        }
        if self.store().checkpoint(&consumer).await?.is_some() {
            tracing::info!(
                view = view.name(),
                stored,
                version = view.version(),
                "the stored read model has another layout version: rebuilding it"
            );
            self.metrics()
                .view(view.name())
                .rebuilds
                .fetch_add(1, Ordering::Relaxed);
        }
        self.reset_view(view).await
    }

    /// Deletes the read model and checkpoint and records the layout version.
    ///
    /// The reset and the version are two commits, so another replica may commit between them
    /// (or this process may stop there). That is safe because every batch applied from an
    /// empty checkpoint writes the version too (see `apply_pending`): the version
    /// commit here only matters for a view with no events yet, and when it loses its
    /// compare-and-set the batch that beat it has recorded the version already.
    async fn reset_view<V: MaterializedView>(&self, view: &V) -> Result<(), ViewError> {
        let consumer = view_consumer(view.name());
        self.store().reset_consumer(&consumer).await?;
        if let Some(write) = version_write(view) {
            let recorded = self
                .store()
                .commit_state(StateCommit {
                    consumer,
                    writes: vec![write],
                    checkpoint: None,
                    guard: CheckpointGuard::Exactly(None),
                })
                .await;
            match recorded {
                Ok(()) | Err(StoreError::CheckpointConflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The update pass itself; the caller holds the slot's update lock.
    async fn apply_pending<V: MaterializedView>(
        &self,
        view: &V,
        slot: &ViewSlot,
        query: Query,
    ) -> Result<Option<Position>, ViewError> {
        let name = view.name();
        let consumer = view_consumer(name);
        let metrics = self.metrics().view(name);
        let mut cursor = self.store().checkpoint(&consumer).await?;
        let base = cursor;
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
                if cursor.is_none() {
                    // A model built from nothing records its layout in the same commit, so no
                    // replica ever sees a read model without the version it was built with.
                    writes.extend(version_write(view));
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
                // Proved: nothing the view reads lies in (cursor, reached]. Valid while the
                // stored checkpoint is at least `cursor` (a reset voids it).
                slot.note(cursor, reached);
                return Ok(reached);
            }
            slot.note(base.max(cursor), cursor);
        }
    }

    /// Deletes the view's read model and checkpoint, then rebuilds it from the first event.
    ///
    /// In this process it waits for the reads holding a [`ViewReadGuard`](crate::ViewReadGuard) to finish before
    /// deleting anything, and the view's worker pauses until it is done; reads that arrive
    /// meanwhile wait until the rebuilt model covers their position. Counted in
    /// `rebuilds` as soon as it starts.
    pub async fn rebuild<V: MaterializedView>(
        &self,
        view: &V,
    ) -> Result<Option<Position>, ViewError> {
        let slot = self.progress().slot(view.name());
        let query = restrict_set::<V::Events>(&view.query())?;
        slot.register(&query, view.version());
        self.metrics()
            .view(view.name())
            .rebuilds
            .fetch_add(1, Ordering::Relaxed);
        let _update = {
            let _readers = slot.readers.write().await;
            let update = slot.update.lock().await;
            self.reset_view(view).await?;
            slot.layout_ok.store(true, Ordering::Release);
            update
        };
        self.apply_pending(view, &slot, query).await
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
        if let Ok(query) = restrict_set::<V::Events>(&view.query()) {
            // Read-your-writes waits on this replica can then ask the store, even while
            // another replica holds the lease.
            self.progress()
                .slot(view.name())
                .register(&query, view.version());
        }
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

/// The write recording a view's layout version (none for version 1, which an absent key means).
fn version_write<V: MaterializedView>(view: &V) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    (view.version() != 1).then(|| {
        (
            VERSION_KEY.to_vec(),
            Some(view.version().to_string().into_bytes()),
        )
    })
}

async fn pause(shutdown: &Shutdown, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.wait() => {}
    }
}
