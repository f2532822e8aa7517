//! The in-memory reference store: simple, obviously correct, not durable.
//!
//! Every read filters the whole log; every condition scans it. It is the model the property tests
//! compare backends against and the store the framework's test harness runs on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use crate::limits::{validate_append, validate_consumer, validate_state_write};
use crate::{
    AppendRequest, Appended, Event, EventStore, Position, Query, ReadOptions, ReadStream,
    SequencedEvent, StateCommit, StoreError, Subscription,
};

#[derive(Default)]
struct Inner {
    events: Vec<(SequencedEvent, u32, u32)>,
    ids: HashMap<Uuid, usize>,
    checkpoints: HashMap<String, Position>,
    state: BTreeMap<(String, Vec<u8>), Vec<u8>>,
    next: u64,
}

/// The reference store. Cheap to clone (clones share the log).
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    head_tx: Arc<watch::Sender<Option<Position>>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store. Positions start at 1 and have no gaps.
    pub fn new() -> MemoryStore {
        let (tx, _rx) = watch::channel(None);
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                next: 1,
                ..Inner::default()
            })),
            head_tx: Arc::new(tx),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-test; the data is still usable
        // because every mutation below is completed before any call that could panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of every stored event, oldest first.
    pub fn snapshot(&self) -> Vec<SequencedEvent> {
        self.lock()
            .events
            .iter()
            .map(|(e, _, _)| e.clone())
            .collect()
    }
}

/// Decides whether `events` (all with ids) are an idempotent retry, given a lookup of stored
/// events by id. Shared by backends whose id index gives `(position, stored)`.
pub fn classify_retry<F>(
    events: &[Event],
    mut lookup: F,
) -> Result<Option<Vec<Position>>, StoreError>
where
    F: FnMut(&Uuid) -> Result<Option<(Position, crate::codec::StoredEvent)>, StoreError>,
{
    let mut found = Vec::with_capacity(events.len());
    let mut any = false;
    for e in events {
        match e.id {
            Some(id) => {
                let hit = lookup(&id)?;
                any |= hit.is_some();
                found.push((id, hit));
            }
            None => found.push((Uuid::nil(), None)),
        }
    }
    if !any {
        return Ok(None);
    }
    let n = events.len() as u32;
    // The first id of the batch that is already stored: the one a conflict names.
    let reused = found
        .iter()
        .find_map(|(id, hit)| hit.as_ref().map(|_| *id))
        .unwrap_or_else(Uuid::nil);
    let mut positions = Vec::with_capacity(events.len());
    for (i, (e, (id, hit))) in events.iter().zip(found).enumerate() {
        let Some((pos, stored)) = hit else {
            // Some ids are stored and this one (or an event without id) is not: not the same batch.
            return Err(StoreError::IdConflict { id: reused });
        };
        if stored.batch_index != i as u32 || stored.batch_len != n || stored.event != *e {
            return Err(StoreError::IdConflict { id });
        }
        positions.push(pos);
    }
    Ok(Some(positions))
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        validate_append(&request)?;
        let mut inner = self.lock();
        let retry = classify_retry(&request.events, |id| {
            Ok(inner.ids.get(id).map(|&i| {
                let (se, idx, len) = &inner.events[i];
                (
                    se.position,
                    crate::codec::StoredEvent {
                        event: se.event.clone(),
                        batch_index: *idx,
                        batch_len: *len,
                    },
                )
            }))
        })?;
        if let Some(positions) = retry {
            return Ok(Appended {
                positions,
                replayed: true,
            });
        }
        for (i, c) in request.conditions.iter().enumerate() {
            let q = c.fail_if_events_match.normalized();
            let hit = inner
                .events
                .iter()
                .any(|(se, _, _)| c.after.is_none_or(|a| se.position > a) && q.matches(&se.event));
            if hit {
                return Err(StoreError::ConditionFailed { condition: i });
            }
        }
        if let Some(t) = &request.tracking {
            let stored = inner.checkpoints.get(&t.consumer).copied();
            if stored.is_some_and(|s| s >= t.position) {
                return Err(StoreError::CheckpointConflict {
                    consumer: t.consumer.clone(),
                    stored,
                    requested: Some(t.position),
                });
            }
        }
        let n = request.events.len();
        let mut positions = Vec::with_capacity(n);
        for (i, event) in request.events.into_iter().enumerate() {
            let position = Position::from_u64(inner.next);
            inner.next += 1;
            if let Some(id) = event.id {
                let idx = inner.events.len();
                inner.ids.insert(id, idx);
            }
            inner
                .events
                .push((SequencedEvent { position, event }, i as u32, n as u32));
            positions.push(position);
        }
        if let Some(t) = request.tracking {
            inner.checkpoints.insert(t.consumer, t.position);
        }
        let head = positions.last().copied();
        drop(inner);
        // Concurrent appends may publish out of order: the published head only moves forward.
        self.head_tx.send_if_modified(|h| {
            let moved = head > *h;
            if moved {
                *h = head;
            }
            moved
        });
        Ok(Appended {
            positions,
            replayed: false,
        })
    }

    async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        crate::store::check_read(&query, &options)?;
        let q = query.normalized();
        let inner = self.lock();
        let head = inner.events.last().map(|(e, _, _)| e.position);
        let mut out: Vec<SequencedEvent> = inner
            .events
            .iter()
            .filter(|(se, _, _)| options.contains(se.position) && q.matches(&se.event))
            .map(|(se, _, _)| se.clone())
            .collect();
        drop(inner);
        if options.backwards {
            out.reverse();
        }
        if let Some(limit) = options.limit {
            out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        Ok(ReadStream::from_vec(head, out))
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        Ok(self.lock().events.last().map(|(e, _, _)| e.position))
    }

    async fn stats(&self) -> Result<crate::StoreStats, StoreError> {
        let inner = self.lock();
        Ok(crate::StoreStats {
            head: inner.events.last().map(|(e, _, _)| e.position),
            events: Some(inner.events.len() as u64),
        })
    }

    async fn wait_for_head(&self, after: Option<Position>) -> Result<Option<Position>, StoreError> {
        let mut rx = self.head_tx.subscribe();
        let head = rx
            .wait_for(|h| *h > after)
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(*head)
    }

    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription {
        crate::subscribe::poll_subscription(Arc::new(self.clone()), query, after)
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<Position>, StoreError> {
        validate_consumer(consumer)?;
        Ok(self.lock().checkpoints.get(consumer).copied())
    }

    async fn commit_state(&self, commit: StateCommit) -> Result<(), StoreError> {
        validate_consumer(&commit.consumer)?;
        if commit.writes.len() > crate::limits::MAX_STATE_WRITES {
            return Err(crate::InputError::TooMany {
                field: "state writes",
                count: commit.writes.len(),
                max: crate::limits::MAX_STATE_WRITES,
            }
            .into());
        }
        for (k, v) in &commit.writes {
            validate_state_write(k, v.as_deref())?;
        }
        let mut inner = self.lock();
        crate::check_state_commit(&commit, inner.checkpoints.get(&commit.consumer).copied())?;
        for (k, v) in commit.writes {
            let key = (commit.consumer.clone(), k);
            match v {
                Some(v) => {
                    inner.state.insert(key, v);
                }
                None => {
                    inner.state.remove(&key);
                }
            }
        }
        if let Some(p) = commit.checkpoint {
            inner.checkpoints.insert(commit.consumer, p);
        }
        Ok(())
    }

    async fn get_state(&self, consumer: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        validate_consumer(consumer)?;
        Ok(self
            .lock()
            .state
            .get(&(consumer.to_owned(), key.to_vec()))
            .cloned())
    }

    async fn scan_state(
        &self,
        consumer: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        validate_consumer(consumer)?;
        let inner = self.lock();
        Ok(inner
            .state
            .range((consumer.to_owned(), prefix.to_vec())..)
            .take_while(|((c, k), _)| c == consumer && k.starts_with(prefix))
            .filter(|((_, k), _)| after.is_none_or(|a| k.as_slice() > a))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn reset_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        validate_consumer(consumer)?;
        let mut inner = self.lock();
        inner.checkpoints.remove(consumer);
        inner.state.retain(|(c, _), _| c != consumer);
        Ok(())
    }

    /// Copies every checkpoint and state entry under the lock (this store holds everything in
    /// memory anyway).
    async fn consumer_snapshot(&self) -> Result<crate::ConsumerSnapshot, StoreError> {
        use futures::StreamExt;
        let inner = self.lock();
        let head = inner.events.last().map(|(e, _, _)| e.position);
        let checkpoints = inner
            .checkpoints
            .iter()
            .map(|(c, p)| (c.clone(), *p))
            .collect();
        let state: Vec<Result<crate::StateEntry, StoreError>> = inner
            .state
            .iter()
            .map(|((consumer, key), value)| {
                Ok(crate::StateEntry {
                    consumer: consumer.clone(),
                    key: key.clone(),
                    value: value.clone(),
                })
            })
            .collect();
        drop(inner);
        Ok(crate::ConsumerSnapshot {
            head,
            checkpoints,
            state: futures::stream::iter(state).boxed(),
        })
    }
}
