//! `FdbStore`: the `dcb-kv` engine on a FoundationDB cluster.

use std::time::Duration;

use async_trait::async_trait;
use dcb_core::{EventStore, StoreError};
use dcb_kv::{KvOptions, KvStore};
use foundationdb::Database;

use crate::adapter::FdbDatabase;

/// How an [`FdbStore`] runs its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbOptions {
    /// The engine's options: its per-attempt deadline (also set as each FDB transaction's
    /// `timeout` option), retry budget (the engine runs each attempt in a fresh transaction and
    /// counts attempts itself, so FDB's `retry_limit` is not used), transaction-size bound and
    /// read batching.
    pub kv: KvOptions,
}

impl Default for FdbOptions {
    fn default() -> Self {
        FdbOptions {
            kv: KvOptions::default().tx_timeout(Duration::from_secs(5)),
        }
    }
}

impl FdbOptions {
    /// Defaults: 5 s per transaction, 50 attempts, 5 MB per transaction, 1 MB per read request.
    pub fn new() -> FdbOptions {
        FdbOptions::default()
    }

    /// Sets the engine options.
    pub fn kv(mut self, kv: KvOptions) -> FdbOptions {
        self.kv = kv;
        self
    }
}

/// The DCB event store on FoundationDB. Cheap to clone.
#[derive(Clone, Debug)]
pub struct FdbStore {
    inner: KvStore<FdbDatabase>,
}

impl FdbStore {
    /// Connects to the cluster described by `cluster_file` (`None`: the default cluster file,
    /// e.g. `/etc/foundationdb/fdb.cluster` or `$FDB_CLUSTER_FILE`) and opens `namespace` in it,
    /// booting the client network thread on first use (see [`crate::network`]).
    pub async fn open(
        cluster_file: Option<&str>,
        namespace: &str,
        options: FdbOptions,
    ) -> Result<FdbStore, StoreError> {
        crate::network::boot()?;
        let db = Database::new(cluster_file).map_err(StoreError::storage)?;
        let db = FdbDatabase::new(db, options.kv.tx_timeout);
        let inner = KvStore::open(db, namespace, options.kv).await?;
        Ok(FdbStore { inner })
    }

    /// The engine underneath.
    pub fn kv(&self) -> &KvStore<FdbDatabase> {
        &self.inner
    }

    /// Deletes every key of this store's namespace.
    pub async fn destroy(&self) -> Result<(), StoreError> {
        self.inner.destroy().await
    }
}

#[async_trait]
impl dcb_core::Delegating for FdbStore {
    fn inner(&self) -> &dyn EventStore {
        &self.inner
    }

    /// One transaction (see `dcb_kv`): bounded by FoundationDB's 5-second limit; back up with
    /// `fdbbackup`.
    async fn consumer_snapshot(&self) -> Result<dcb_core::ConsumerSnapshot, StoreError> {
        self.inner.consumer_snapshot().await
    }
}
