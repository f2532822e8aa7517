//! Leases shared by host replicas, stored in the store's consumer state.
//!
//! A lease lives in its own consumer (`lease:{work}`): key `holder` holds the [`Lease`], and the
//! consumer's checkpoint is the lease's version. Because a checkpoint must strictly grow, two
//! replicas that both read version `v` and write `v + 1` cannot both succeed: `commit_state`
//! becomes a compare-and-set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dcb_core::{CheckpointGuard, Position, StateCommit, StoreError};
use serde::{Deserialize, Serialize};

use crate::env::millis;
use crate::runtime::Runtime;

/// Who may do a piece of work until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The replica id.
    pub holder: String,
    /// Expiry (ms since the Unix epoch).
    pub expires_at_ms: u64,
    /// Bumped by every acquisition or renewal; equals the lease consumer's checkpoint.
    pub version: u64,
}

/// The consumer holding the lease of `work` (e.g. `"automation:welcome"`).
pub fn lease_consumer(work: &str) -> String {
    format!("lease:{work}")
}

/// Acquires, renews and releases one lease for one replica.
#[derive(Debug)]
pub(crate) struct LeaseKeeper {
    consumer: String,
    replica: String,
    ttl: Duration,
    held: Option<Lease>,
    gauge: Arc<AtomicU64>,
}

/// The lease could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupted lease: {0}")]
    Corrupted(String),
}

impl LeaseKeeper {
    pub(crate) fn new(
        work: &str,
        replica: String,
        ttl: Duration,
        gauge: Arc<AtomicU64>,
    ) -> LeaseKeeper {
        LeaseKeeper {
            consumer: lease_consumer(work),
            replica,
            ttl,
            held: None,
            gauge,
        }
    }

    pub(crate) fn replica(&self) -> &str {
        &self.replica
    }

    pub(crate) fn lose(&mut self) {
        if self.held.take().is_some() {
            tracing::info!(replica = %self.replica, lease = %self.consumer, "lease lost");
        }
        self.gauge.store(0, Ordering::Relaxed);
    }

    /// Acquires or renews the lease (renewing once half of it has run out); `false` when another
    /// replica holds it.
    pub(crate) async fn ensure(&mut self, rt: &Runtime) -> Result<bool, LeaseError> {
        let now = millis(rt.env().now());
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        if let Some(l) = &self.held
            && now.saturating_add(ttl / 2) < l.expires_at_ms
        {
            return Ok(true);
        }
        self.write(rt, now.saturating_add(ttl)).await
    }

    /// Gives the lease up so another replica can take it at once.
    pub(crate) async fn release(&mut self, rt: &Runtime) -> Result<(), LeaseError> {
        if self.held.is_some() {
            self.write(rt, 0).await?;
            self.lose();
        }
        Ok(())
    }

    /// Writes a lease for this replica expiring at `expires_at_ms` if the stored one is free,
    /// expired or ours.
    async fn write(&mut self, rt: &Runtime, expires_at_ms: u64) -> Result<bool, LeaseError> {
        let store = rt.store();
        let stored_version = store.checkpoint(&self.consumer).await?;
        let version = stored_version.map_or(0, |p| p.as_u64().unwrap_or(u64::MAX));
        let current = match store.get_state(&self.consumer, b"holder").await? {
            Some(raw) => Some(
                serde_json::from_slice::<Lease>(&raw)
                    .map_err(|e| LeaseError::Corrupted(e.to_string()))?,
            ),
            None => None,
        };
        if let Some(l) = &current {
            // A version mismatch means we read between two writes: try again later.
            if l.version != version
                || (l.holder != self.replica && l.expires_at_ms > millis(rt.env().now()))
            {
                self.lose();
                return Ok(false);
            }
        }
        let Some(next) = version.checked_add(1) else {
            return Err(LeaseError::Corrupted("lease version exhausted".into()));
        };
        let lease = Lease {
            holder: self.replica.clone(),
            expires_at_ms,
            version: next,
        };
        let value = serde_json::to_vec(&lease).map_err(|e| LeaseError::Corrupted(e.to_string()))?;
        let commit = StateCommit {
            consumer: self.consumer.clone(),
            writes: vec![(b"holder".to_vec(), Some(value))],
            checkpoint: Some(Position::from_u64(next)),
            // Compare-and-set on the version read above.
            guard: CheckpointGuard::Exactly(stored_version),
        };
        match store.commit_state(commit).await {
            Ok(()) => {
                if self.held.is_none() {
                    tracing::info!(replica = %self.replica, lease = %self.consumer, "lease acquired");
                }
                self.held = Some(lease);
                self.gauge.store(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(StoreError::CheckpointConflict { .. }) => {
                self.lose();
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}
