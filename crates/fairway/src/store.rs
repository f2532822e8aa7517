//! Opening the store a command works on (embedded in the data directory, or FoundationDB), and
//! the counting wrapper behind the store metrics of `/metrics`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use dcb_core::{
    AppendRequest, Appended, EventStore, Position, Query, ReadOptions, ReadStream, StateCommit,
    StoreError, StoreStats, Subscription,
};
use futures::StreamExt as _;

/// Where the events live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The embedded store in `<data-dir>/store`.
    Embedded(PathBuf),
    /// FoundationDB: the cluster file and the namespace (key prefix) of this deployment.
    Fdb {
        /// Path to the cluster file.
        cluster_file: PathBuf,
        /// The namespace inside the cluster.
        namespace: String,
    },
}

impl Backend {
    /// The backend the flags ask for.
    pub fn choose(data_dir: &Path, fdb_cluster_file: Option<&Path>, namespace: &str) -> Backend {
        match fdb_cluster_file {
            Some(f) => Backend::Fdb {
                cluster_file: f.to_path_buf(),
                namespace: namespace.to_owned(),
            },
            None => Backend::Embedded(data_dir.join("store")),
        }
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Backend::Embedded(p) => format!("embedded store at {}", p.display()),
            Backend::Fdb {
                cluster_file,
                namespace,
            } => format!(
                "FoundationDB ({}, namespace {namespace})",
                cluster_file.display()
            ),
        }
    }
}

/// An open store.
pub struct Opened {
    /// The store, shared.
    pub store: Arc<dyn EventStore>,
}

/// Opens the backend; a data directory held by a running server is a clear error.
pub async fn open(backend: &Backend) -> anyhow::Result<Opened> {
    match backend {
        Backend::Embedded(dir) => match dcb_embedded::EmbeddedStore::open(dir) {
            Ok(s) => Ok(Opened { store: Arc::new(s) }),
            Err(StoreError::Locked(_)) => Err(anyhow!(
                "data directory is in use by a running server ({}): stop it first, or use its HTTP API",
                dir.display()
            )),
            Err(e) => Err(e).with_context(|| format!("cannot open the store at {}", dir.display())),
        },
        Backend::Fdb {
            cluster_file,
            namespace,
        } => open_fdb(cluster_file, namespace).await,
    }
}

#[cfg(feature = "fdb")]
async fn open_fdb(cluster_file: &Path, namespace: &str) -> anyhow::Result<Opened> {
    let file = cluster_file
        .to_str()
        .ok_or_else(|| anyhow!("the cluster file path is not UTF-8"))?;
    let store = dcb_fdb::FdbStore::open(Some(file), namespace, dcb_fdb::FdbOptions::new())
        .await
        .with_context(|| format!("cannot open FoundationDB with {file}"))?;
    Ok(Opened {
        store: Arc::new(store),
    })
}

#[cfg(not(feature = "fdb"))]
async fn open_fdb(_cluster_file: &Path, _namespace: &str) -> anyhow::Result<Opened> {
    Err(anyhow!(
        "--fdb-cluster-file needs FoundationDB support, and this fairway was built without it: \
         rebuild with `cargo build --release -p fairway --features fdb` (see docs/fdb.md)"
    ))
}

/// Number of events in the store (from the backend's statistics when it counts them, else by
/// reading every event).
pub async fn count_events(opened: &Opened) -> anyhow::Result<u64> {
    if let Some(n) = opened.store.stats().await?.events {
        return Ok(n);
    }
    let mut stream = opened.store.read(Query::All, ReadOptions::new()).await?;
    let mut n = 0u64;
    while let Some(e) = stream.next().await {
        e?;
        n += 1;
    }
    Ok(n)
}

/// Append counters.
#[derive(Debug, Default)]
pub struct StoreCounters {
    appends: AtomicU64,
    events: AtomicU64,
    condition_failures: AtomicU64,
    replays: AtomicU64,
    errors: AtomicU64,
}

impl StoreCounters {
    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let series: [(&str, &str, &AtomicU64); 5] = [
            (
                "fairway_store_appends_total",
                "Appends committed (idempotent replays included)",
                &self.appends,
            ),
            (
                "fairway_store_appended_events_total",
                "Events written by committed appends",
                &self.events,
            ),
            (
                "fairway_store_condition_failures_total",
                "Appends refused by an append condition; each makes its command re-run (retry) up to its attempt limit",
                &self.condition_failures,
            ),
            (
                "fairway_store_append_replays_total",
                "Idempotent retries: batches already stored, answered with their original positions",
                &self.replays,
            ),
            (
                "fairway_store_append_errors_total",
                "Appends that failed for another reason",
                &self.errors,
            ),
        ];
        for (name, help, v) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// A store that counts appends, condition failures and replays, and forwards everything.
pub struct CountingStore {
    inner: Arc<dyn EventStore>,
    counters: Arc<StoreCounters>,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventStore>) -> CountingStore {
        CountingStore {
            inner,
            counters: Arc::default(),
        }
    }

    /// The counters.
    pub fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }
}

#[async_trait]
impl EventStore for CountingStore {
    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let n = request.events.len() as u64;
        let result = self.inner.append_request(request).await;
        let c = &self.counters;
        match &result {
            Ok(a) if a.replayed => {
                c.replays.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                c.appends.fetch_add(1, Ordering::Relaxed);
                c.events.fetch_add(n, Ordering::Relaxed);
            }
            Err(StoreError::ConditionFailed { .. }) => {
                c.condition_failures.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                c.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
        self.inner.read(query, options).await
    }

    async fn head(&self) -> Result<Option<Position>, StoreError> {
        self.inner.head().await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }

    async fn wait_for_head(&self, after: Option<Position>) -> Result<Option<Position>, StoreError> {
        self.inner.wait_for_head(after).await
    }

    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription {
        self.inner.subscribe(query, after)
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<Position>, StoreError> {
        self.inner.checkpoint(consumer).await
    }

    async fn commit_state(&self, commit: StateCommit) -> Result<(), StoreError> {
        self.inner.commit_state(commit).await
    }

    async fn get_state(&self, consumer: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_state(consumer, key).await
    }

    async fn scan_state(
        &self,
        consumer: &str,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan_state(consumer, prefix, after, limit).await
    }

    async fn reset_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        self.inner.reset_consumer(consumer).await
    }
}
