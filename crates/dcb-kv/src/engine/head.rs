//! One head watcher per store: a background task reads the head key and arms one watch on it
//! in the same transaction, and broadcasts every new head to the store's local waiters. An
//! append then wakes one watch per process, not one per waiter, and the waiters get the new
//! head without reading it themselves. When a watch fails (FoundationDB `too_many_watches`), the
//! watcher polls the head instead; it re-reads it at least every `watch_refresh` in any case.
//! The task ends when no waiter is left (or the store is dropped) and starts with the next one.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dcb_core::{Position, StoreError};
use tokio::sync::watch;

use super::retry::{AttemptErr, Backoff, timed_out};
use super::{Inner, KvStore};
use crate::kv::{KvDatabase, KvTransaction};

/// How often a watcher whose watch failed polls the head.
const POLL_WHEN_WATCH_FAILS: Duration = Duration::from_millis(250);

/// The head as the watcher last read it (`None` until its first read; `Err` when it gave up).
type Seen = Option<Result<Option<Position>, String>>;

pub(crate) struct HeadWatch {
    tx: watch::Sender<Seen>,
    running: Mutex<bool>,
}

impl HeadWatch {
    pub(crate) fn new() -> HeadWatch {
        HeadWatch {
            tx: watch::channel(None).0,
            running: Mutex::new(false),
        }
    }
}

impl<D: KvDatabase> KvStore<D> {
    pub(crate) async fn wait_head(
        &self,
        after: Option<Position>,
    ) -> Result<Option<Position>, StoreError> {
        let mut rx = self.inner.head.tx.subscribe();
        self.ensure_watcher();
        loop {
            match &*rx.borrow_and_update() {
                Some(Ok(head)) if *head > after => return Ok(*head),
                Some(Err(e)) => return Err(StoreError::Unavailable(e.clone())),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(StoreError::Closed);
            }
        }
    }

    fn ensure_watcher(&self) {
        let mut running = self
            .inner
            .head
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *running {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *running = true;
        // A failed head read is reported once; the next waiter starts afresh.
        self.inner.head.tx.send_replace(None);
        handle.spawn(watch_head(Arc::downgrade(&self.inner)));
    }
}

/// The watcher task.
async fn watch_head<D: KvDatabase>(inner: Weak<Inner<D>>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let store = KvStore { inner: strong };
        let opts = store.inner.opts;
        // Stop when nobody waits (checked under the lock a new waiter takes to start one).
        {
            let mut running = store
                .inner
                .head
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if store.inner.head.tx.receiver_count() == 0 {
                *running = false;
                return;
            }
        }
        let mut backoff = Backoff::new(opts.max_retries);
        let armed = loop {
            match read_and_arm(&store).await {
                Ok(armed) => break Ok(armed),
                Err(e) => {
                    if let Err(e) = backoff.retry(e).await {
                        break Err(e);
                    }
                }
            }
        };
        let (head, watch) = match armed {
            Ok(a) => a,
            Err(e) => {
                store.inner.head.tx.send_replace(Some(Err(e.to_string())));
                let mut running = store
                    .inner
                    .head
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                *running = false;
                return;
            }
        };
        store.inner.head.tx.send_if_modified(|seen| {
            let new = Some(Ok(head));
            let changed = *seen != new;
            *seen = new;
            changed
        });
        drop(store);
        match tokio::time::timeout(opts.watch_refresh, watch).await {
            // Fired, or refresh time: read the head again.
            Ok(Ok(())) | Err(_) => {}
            // A watch that cannot be set degrades to polling the head at a modest rate.
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "watch on the head key failed; polling instead");
                tokio::time::sleep(opts.watch_refresh.min(POLL_WHEN_WATCH_FAILS)).await;
            }
        }
    }
}

type Armed = (
    Option<Position>,
    futures::future::BoxFuture<'static, Result<(), crate::kv::KvError>>,
);

/// Reads the head and arms a watch on it in one transaction.
async fn read_and_arm<D: KvDatabase>(store: &KvStore<D>) -> Result<Armed, crate::kv::KvError> {
    let opts = store.inner.opts;
    let tx = store
        .inner
        .db
        .begin()
        .map_err(|e| crate::kv::KvError::new(crate::kv::KvErrorKind::Retryable, e.message))?;
    let head = match tokio::time::timeout(opts.tx_timeout, store.read_head(&tx))
        .await
        .unwrap_or(Err(AttemptErr::Kv(timed_out())))
    {
        Ok(h) => h,
        Err(AttemptErr::Kv(e)) => return Err(e),
        Err(AttemptErr::Store(e)) => return Err(crate::kv::KvError::fatal(e.to_string())),
    };
    let watch = tx.watch(&store.inner.keys.head());
    tokio::time::timeout(opts.tx_timeout, tx.commit())
        .await
        .unwrap_or(Err(timed_out()))?;
    Ok((head, watch))
}
