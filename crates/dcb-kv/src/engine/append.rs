//! Appends: validation, FoundationDB's size accounting, the idempotent-retry rule, conditions
//! (serializable range reads, probed concurrently) and the batch's writes.

use std::collections::HashMap;

use dcb_core::codec::{StoredEvent, decode_event, encode_event};
use dcb_core::limits::validate_append;
use dcb_core::{
    AppendRequest, Appended, InputError, Position, Query, StoreError, Uuid, classify_retry,
};
use futures::future::{join_all, try_join_all};

use super::read::{Cursor, Source};
use super::retry::AttemptErr;
use super::{KvStore, decode_pos};
use crate::keys::{self, POS_LEN};
use crate::kv::{
    KvDatabase, KvTransaction, MUTATION_OVERHEAD, RANGE_OVERHEAD, STAMP_OFFSET_LEN,
    VERSIONSTAMP_LEN,
};

/// Most events in one versionstamp batch (the 2-byte user version).
pub const MAX_EVENTS_PER_VERSIONSTAMP: usize = 1 << 16;

/// Most tag probes of one condition source in flight at once.
const MAX_PROBES: usize = 4096;

/// Bytes of a write conflict range `[k, k\0)`.
fn point_range(key: usize) -> usize {
    RANGE_OVERHEAD + 2 * key + 1
}

/// A validated append, ready to run.
pub(crate) struct AppendPlan {
    pub(crate) request: AppendRequest,
    pub(crate) records: Vec<Vec<u8>>,
    pub(crate) conditions: Vec<(Query, Option<Position>)>,
    /// The transaction size as FoundationDB counts it (an upper bound).
    pub(crate) estimate: usize,
}

pub(crate) fn stamp_of(pos12: &[u8]) -> Result<[u8; VERSIONSTAMP_LEN], StoreError> {
    let mut s = [0u8; VERSIONSTAMP_LEN];
    let src = pos12
        .get(..VERSIONSTAMP_LEN)
        .ok_or_else(|| StoreError::Corrupted("short commit token".into()))?;
    s.copy_from_slice(src);
    Ok(s)
}

pub(crate) fn batch_positions(stamp: [u8; VERSIONSTAMP_LEN], n: usize) -> Vec<Position> {
    (0..n)
        .map(|i| Position::from_versionstamp(stamp, i as u16))
        .collect()
}

/// The sources that decide whether `item`'s condition is hit, and the tags left to probe.
fn condition_sources(item: &dcb_core::QueryItem) -> (Vec<Source>, &[String]) {
    match item.tags.split_first() {
        Some((tag, rest)) => (
            vec![Source::Tag {
                tag: tag.clone(),
                types: item.types.clone(),
            }],
            rest,
        ),
        None => (
            item.types.iter().map(|t| Source::Type(t.clone())).collect(),
            &[],
        ),
    }
}

impl<D: KvDatabase> KvStore<D> {
    /// The transaction size an append of `request` is estimated at, in bytes as FoundationDB's
    /// client counts them (never below its count); an append over
    /// [`crate::KvOptions::max_tx_bytes`] is refused.
    pub fn estimate_append_bytes(&self, request: &AppendRequest) -> Result<usize, StoreError> {
        validate_append(request)?;
        let records = encode_records(request);
        let conditions = normalized_conditions(request);
        Ok(self.estimate_tx_bytes(request, &records, &conditions))
    }

    fn estimate_tx_bytes(
        &self,
        request: &AppendRequest,
        records: &[Vec<u8>],
        conditions: &[(Query, Option<Position>)],
    ) -> usize {
        let keys = &self.inner.keys;
        // root + the one-byte key tag.
        let root = keys.root().len() + 1;
        let stamped_key = |prefix: usize| MUTATION_OVERHEAD + prefix + POS_LEN + STAMP_OFFSET_LEN;
        let stamped_value =
            |key: usize| MUTATION_OVERHEAD + key + POS_LEN + STAMP_OFFSET_LEN + point_range(key);
        let mut total = 0usize;
        for (e, rec) in request.events.iter().zip(records) {
            total += stamped_key(root) + rec.len();
            total += stamped_key(root + 2 + e.event_type.len());
            for tag in &e.tags {
                total += stamped_key(root + 2 + tag.len()) + e.event_type.len();
            }
            if e.id.is_some() {
                // The id's serializable read and its versionstamped value.
                total += point_range(root + 16) + stamped_value(root + 16);
            }
        }
        // Head and commit token (read serializably, then written).
        total += stamped_value(root) + stamped_value(root + 16) + point_range(root + 16);
        if let Some(t) = &request.tracking {
            let key = root + 2 + t.consumer.len();
            total += point_range(key) + MUTATION_OVERHEAD + key + POS_LEN + point_range(key);
        }
        // One read conflict range per condition source: [prefix + after, strinc(prefix)).
        for (query, _) in conditions {
            let sources = match query {
                Query::All => vec![Source::Events],
                Query::Items(items) => items.iter().flat_map(|i| condition_sources(i).0).collect(),
            };
            for s in sources {
                let prefix = s.prefix(keys).len();
                total += RANGE_OVERHEAD + 2 * (prefix + POS_LEN + 1);
            }
        }
        total
    }

    /// Validates `request` and prepares it.
    pub(crate) fn plan_append(&self, request: AppendRequest) -> Result<AppendPlan, StoreError> {
        validate_append(&request)?;
        let n = request.events.len();
        if n > MAX_EVENTS_PER_VERSIONSTAMP {
            return Err(InputError::TooMany {
                field: "events per versionstamp batch",
                count: n,
                max: MAX_EVENTS_PER_VERSIONSTAMP,
            }
            .into());
        }
        let records = encode_records(&request);
        let conditions = normalized_conditions(&request);
        let estimate = self.estimate_tx_bytes(&request, &records, &conditions);
        if estimate > self.inner.opts.max_tx_bytes {
            return Err(InputError::TooLong {
                field: "transaction",
                len: estimate,
                max: self.inner.opts.max_tx_bytes,
            }
            .into());
        }
        Ok(AppendPlan {
            request,
            records,
            conditions,
            estimate,
        })
    }

    /// The reads of one append attempt after the token: `Some` when the batch is an idempotent
    /// retry by event ids.
    pub(crate) async fn append_attempt(
        &self,
        tx: &D::Tx,
        plan: &AppendPlan,
    ) -> Result<Option<Appended>, AttemptErr> {
        let keys = &self.inner.keys;
        let request = &plan.request;
        // Idempotent retry by event ids.
        let ids: Vec<Uuid> = request.events.iter().filter_map(|e| e.id).collect();
        if !ids.is_empty() {
            let id_keys: Vec<Vec<u8>> = ids.iter().map(|id| keys.id(id)).collect();
            let hits = join_all(id_keys.iter().map(|k| tx.get(k, false))).await;
            let mut found: HashMap<Uuid, (Position, StoredEvent)> = HashMap::new();
            for (id, hit) in ids.iter().zip(hits) {
                if let Some(pos) = hit? {
                    let pos = decode_pos(&pos, "id index")?;
                    let mut ek = keys.events_prefix();
                    ek.extend_from_slice(&pos.to_bytes());
                    let rec = tx.get(&ek, true).await?.ok_or_else(|| {
                        StoreError::Corrupted(format!("id {id} points at missing event {pos}"))
                    })?;
                    found.insert(*id, (pos, decode_event(&rec)?));
                }
            }
            if !found.is_empty() {
                let retry = classify_retry(&request.events, |id| Ok(found.get(id).cloned()))?;
                if let Some(positions) = retry {
                    return Ok(Some(Appended {
                        positions,
                        replayed: true,
                    }));
                }
            }
        }
        // Conditions, all at once, with conflict-registering range reads.
        let hits = try_join_all(
            plan.conditions
                .iter()
                .map(|(query, after)| self.condition_hit(tx, query, *after)),
        )
        .await?;
        if let Some(i) = hits.iter().position(|hit| *hit) {
            return Err(StoreError::ConditionFailed { condition: i }.into());
        }
        // The checkpoint.
        if let Some(t) = &request.tracking {
            let stored = match tx.get(&keys.checkpoint(&t.consumer), false).await? {
                Some(v) => Some(decode_pos(&v, "checkpoint")?),
                None => None,
            };
            if stored.is_some_and(|s| s >= t.position) {
                return Err(StoreError::CheckpointConflict {
                    consumer: t.consumer.clone(),
                    stored,
                    requested: Some(t.position),
                }
                .into());
            }
        }
        Ok(None)
    }

    /// Buffers the batch's writes and its commit token.
    pub(crate) fn write_batch(&self, tx: &D::Tx, plan: &AppendPlan, token: &[u8]) {
        let keys = &self.inner.keys;
        let request = &plan.request;
        let events_prefix = keys.events_prefix();
        for (i, (event, record)) in request.events.iter().zip(&plan.records).enumerate() {
            let index = i as u16;
            let (k, off) = keys::stamped(&events_prefix, index);
            tx.set_versionstamped_key(&k, off, record);
            let (k, off) = keys::stamped(&keys.type_prefix(&event.event_type), index);
            tx.set_versionstamped_key(&k, off, &[]);
            for tag in &event.tags {
                let (k, off) = keys::stamped(&keys.tag_prefix(tag), index);
                tx.set_versionstamped_key(&k, off, event.event_type.as_bytes());
            }
            if let Some(id) = event.id {
                tx.set_versionstamped_value(&keys.id(&id), &keys::stamped_value(index), 0);
            }
        }
        tx.set_versionstamped_value(token, &keys::stamped_value(0), 0);
        let last = request.events.len().saturating_sub(1) as u16;
        tx.set_versionstamped_value(&keys.head(), &keys::stamped_value(last), 0);
        if let Some(t) = &request.tracking {
            tx.set(&keys.checkpoint(&t.consumer), &t.position.to_bytes());
        }
    }

    /// Whether an event matching `query` exists after `after`. The index ranges are read
    /// serializably, so that a concurrent commit of a matching event aborts this transaction;
    /// the sources of all items are scanned concurrently.
    async fn condition_hit(
        &self,
        tx: &D::Tx,
        query: &Query,
        after: Option<Position>,
    ) -> Result<bool, AttemptErr> {
        let lo = match after {
            Some(a) => match a.next() {
                Some(n) => Some(n),
                None => return Ok(false),
            },
            None => None,
        };
        let keys = &self.inner.keys;
        let items = match query {
            Query::All => {
                let mut c = Cursor::new(Source::Events, keys, lo, None);
                c.fetch(tx, 1, 0, false, false).await?;
                return Ok(!c.buf.is_empty());
            }
            Query::Items(items) => items,
        };
        let scans = items.iter().flat_map(|item| {
            let (sources, rest) = condition_sources(item);
            sources
                .into_iter()
                .map(move |s| self.source_hit(tx, s, lo, rest))
        });
        Ok(try_join_all(scans).await?.into_iter().any(|hit| hit))
    }

    /// Scans one source's postings after `lo` (serializably, in growing batches) for one that
    /// also carries every tag of `rest`. Each batch's postings are probed all at once, with
    /// snapshot reads: they are committed events, which never change, and the range read
    /// already carries the conflict for anything new.
    async fn source_hit(
        &self,
        tx: &D::Tx,
        source: Source,
        lo: Option<Position>,
        rest: &[String],
    ) -> Result<bool, AttemptErr> {
        let keys = &self.inner.keys;
        let mut c = Cursor::new(source, keys, lo, None);
        // At most this many point reads in flight per source.
        let max_batch = (MAX_PROBES / rest.len().max(1)).max(1);
        let mut limit = 16.min(max_batch);
        while !c.done {
            c.fetch(tx, limit, 0, false, false).await?;
            limit = (limit * 4).min(self.inner.opts.read_batch).min(max_batch);
            let batch: Vec<Position> = c.buf.drain(..).map(|(p, _)| p).collect();
            if rest.is_empty() {
                if !batch.is_empty() {
                    return Ok(true);
                }
                continue;
            }
            let probes: Vec<Vec<u8>> = batch
                .iter()
                .flat_map(|pos| {
                    rest.iter().map(move |t| {
                        let mut k = keys.tag_prefix(t);
                        k.extend_from_slice(&pos.to_bytes());
                        k
                    })
                })
                .collect();
            let found = try_join_all(probes.iter().map(|k| tx.get(k, true))).await?;
            if found
                .chunks(rest.len())
                .any(|tags| tags.iter().all(Option::is_some))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn encode_records(request: &AppendRequest) -> Vec<Vec<u8>> {
    let n32 = request.events.len() as u32;
    request
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| encode_event(e, i as u32, n32))
        .collect()
}

fn normalized_conditions(request: &AppendRequest) -> Vec<(Query, Option<Position>)> {
    request
        .conditions
        .iter()
        .map(|c| (c.fail_if_events_match.normalized(), c.after))
        .collect()
}
