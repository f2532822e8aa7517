//! Opening the store a command works on (embedded in the data directory, or FoundationDB), the
//! data directory's permissions, the file-descriptor limit, and the counting wrapper behind the
//! store metrics of `/metrics`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, anyhow};
use async_trait::async_trait;
use dcb_core::{
    AppendRequest, Appended, EventStore, Position, Query, ReadOptions, ReadStream, StoreError,
    Subscription,
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

/// The process umask: every file and directory it creates is its owner's only (0600 / 0700).
pub const UMASK: u32 = 0o077;

/// Makes files and directories this process creates private to its user (umask [`UMASK`]).
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(UMASK));
}

/// Creates `dir` if needed and makes it private: the directory and every directory below it
/// 0700, every file in them without group or other permissions (0600 for an ordinary file).
/// Directories made by an older version under a umask of 022 are tightened too.
pub fn secure_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let mut pending = vec![dir.to_path_buf()];
    // Bounded: the walk follows no symlinks, so it visits each entry of the tree once.
    while let Some(d) = pending.pop() {
        set_mode(&d, 0o700)?;
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", d.display()))?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let mode = entry.metadata()?.permissions().mode();
                if mode & 0o077 != 0 {
                    set_mode(&path, mode & 0o700)?;
                }
            }
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot restrict the permissions of {}", path.display()))
}

/// File descriptors kept free for the store, the secrets, the outbox and the console, below the
/// limit the connection caps must stay under.
pub const FD_RESERVE: u64 = 128;

/// Raises the soft limit on open files to the hard limit; returns the soft limit now in force
/// (`None` when unlimited).
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-files limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// An open store.
pub struct Opened {
    /// The store, shared.
    pub store: Arc<dyn EventStore>,
}

/// Opens the backend; a data directory held by a running server is a clear error.
pub async fn open(backend: &Backend) -> anyhow::Result<Opened> {
    match backend {
        Backend::Embedded(dir) => {
            if let Some(data_dir) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                secure_data_dir(data_dir)?;
            }
            open_embedded(dir)
        }
        Backend::Fdb {
            cluster_file,
            namespace,
        } => open_fdb(cluster_file, namespace).await,
    }
}

fn open_embedded(dir: &Path) -> anyhow::Result<Opened> {
    match dcb_embedded::EmbeddedStore::open(dir) {
        Ok(s) => Ok(Opened { store: Arc::new(s) }),
        Err(StoreError::Locked(_)) => Err(anyhow!(
            "data directory is in use by a running server ({}): stop it first, or use its HTTP API",
            dir.display()
        )),
        Err(e) => Err(e).with_context(|| format!("cannot open the store at {}", dir.display())),
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
    reads: AtomicU64,
}

impl StoreCounters {
    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let series: [(&str, &str, &AtomicU64); 6] = [
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
            (
                "fairway_store_reads_total",
                "Reads started: commands' queries, views' and subscriptions' pages, console lists",
                &self.reads,
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

/// A store that counts appends, condition failures, replays and reads, and forwards everything.
#[derive(Clone)]
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
impl dcb_core::Delegating for CountingStore {
    fn inner(&self) -> &dyn EventStore {
        &*self.inner
    }

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
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read(query, options).await
    }

    fn subscribe(&self, query: Query, after: Option<Position>) -> Subscription {
        // Every backend subscribes by polling (`read` after the last position, `wait_for_head`);
        // polling through this wrapper counts those reads too.
        dcb_core::subscribe::poll_subscription(Arc::new(self.clone()), query, after)
    }
}
