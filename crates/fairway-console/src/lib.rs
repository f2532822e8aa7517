//! `fairway-console`: the dev console — one web page and a JSON API under it that show what a
//! Fairway host is doing: the events (a live tail, filters, paging, each event's detail), the
//! modules and an Event Modeling board drawn from their self-descriptions, the automations (lag,
//! retries, dead letters to replay or purge), the materialized views (lag, rebuild with progress)
//! and the store (head, event count, appends and condition failures per second).
//!
//! Layer: beside the host, above the framework. It builds on `fairway-runtime` (the
//! [`Host`](fairway_runtime::Host)'s catalog, metrics, dead letters, view rebuilds) and the
//! [`dcb_core::EventStore`] trait only: it must not depend on a backend (`dcb-embedded`,
//! `dcb-kv`, FoundationDB) nor on any module. It serves no route by itself: a host mounts it
//! (or leaves it out, which turns it off).
//!
//! Everything it serves is embedded in the binary: the page, its script and its style sheet are
//! `include_str!`ed, nothing is fetched from elsewhere at run time. Reading is open to whoever
//! can reach the mount point; replaying or purging a dead letter and rebuilding a view need the
//! [`AdminToken`] as `Authorization: Bearer <token>`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use fairway_console::{AdminToken, Console};
//! use fairway_runtime::{Host, Runtime, Secrets};
//! # async fn mount(rt: Runtime, modules: Vec<fairway_runtime::Module>) -> Result<(), fairway_console::ConsoleError> {
//! let host = Arc::new(Host::new(rt.clone(), modules));
//! let token = AdminToken::from_secrets(&Secrets::ephemeral())?;
//! let app = Console::new(rt, host.clone(), token).mount(host.router(), "/console");
//! # let _ = app; Ok(()) }
//! ```

mod api;
mod board;
mod params;
mod sampler;

use std::sync::Arc;
use std::time::Duration;

use fairway_runtime::{Host, Runtime, Secrets, Shutdown};

pub use board::board_svg;
pub use sampler::{Sample, StoreCounters};

/// The secret name the console's admin token is derived from (see [`AdminToken::from_secrets`]).
pub const ADMIN_SECRET: &str = "console.admin";

/// How often the store is sampled by default.
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// How much history the store samples cover by default.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(10 * 60);

/// Why the console could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The admin token is too short to be a secret.
    #[error("the console admin token must be at least {min} characters long, got {len}")]
    TokenTooShort {
        /// The minimum length.
        min: usize,
        /// The length given.
        len: usize,
    },
    /// The admin token holds characters that cannot travel in an HTTP header.
    #[error("the console admin token must be printable ASCII without spaces")]
    TokenNotPrintable,
    /// The secrets could not be read or written.
    #[error(transparent)]
    Secrets(#[from] fairway_runtime::services::SecretsError),
    /// The runtime holds no [`Secrets`] service to derive the token from.
    #[error("the runtime provides no Secrets service to derive the console admin token from")]
    NoSecrets,
}

/// The token that state-changing console actions (replay, purge, rebuild) require, sent as
/// `Authorization: Bearer <token>`. The page asks for it once and keeps it in the browser tab's
/// `sessionStorage`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token itself.
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The shortest token accepted.
    pub const MIN_LEN: usize = 16;

    /// A token given by configuration (at least [`AdminToken::MIN_LEN`] printable ASCII
    /// characters, no spaces).
    pub fn new(token: impl Into<String>) -> Result<AdminToken, ConsoleError> {
        let token = token.into();
        if token.len() < Self::MIN_LEN {
            return Err(ConsoleError::TokenTooShort {
                min: Self::MIN_LEN,
                len: token.len(),
            });
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConsoleError::TokenNotPrintable);
        }
        Ok(AdminToken(token))
    }

    /// The hex of the secret [`ADMIN_SECRET`] (`"console.admin"`), generated into the secrets
    /// file on first use (so `<data-dir>/secrets.json` holds it for the operator to read).
    pub fn from_secrets(secrets: &Secrets) -> Result<AdminToken, ConsoleError> {
        let bytes = secrets.get(ADMIN_SECRET)?;
        AdminToken::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    /// [`AdminToken::from_secrets`] with the runtime's [`Secrets`] service.
    pub fn from_runtime(runtime: &Runtime) -> Result<AdminToken, ConsoleError> {
        let secrets = runtime
            .service::<Secrets>()
            .ok_or(ConsoleError::NoSecrets)?;
        AdminToken::from_secrets(&secrets)
    }

    /// The token itself (to print once for the operator, or to send it in a test).
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token (in time independent of where they differ).
    pub fn matches(&self, candidate: &str) -> bool {
        let a = self.0.as_bytes();
        let b = candidate.as_bytes();
        let mut diff = a.len() ^ b.len();
        for (i, x) in a.iter().enumerate() {
            let y = b.get(i).copied().unwrap_or(0);
            diff |= usize::from(x ^ y);
        }
        diff == 0
    }
}

type CounterFn = Arc<dyn Fn() -> Option<StoreCounters> + Send + Sync>;

/// The console of one host: build it with [`Console::new`], adjust it with the builder methods,
/// and mount [`Console::router`] where the host wants it (e.g. `/console`).
pub struct Console {
    runtime: Runtime,
    host: Arc<Host>,
    token: AdminToken,
    shutdown: Option<Shutdown>,
    sample_every: Duration,
    history: Duration,
    counters: Option<CounterFn>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("sample_every", &self.sample_every)
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console over `host` (its catalog, views and rebuilds) and `runtime` (the same runtime
    /// the host runs on: its store, metrics and services), guarded by `token`.
    pub fn new(runtime: Runtime, host: Arc<Host>, token: AdminToken) -> Console {
        Console {
            runtime,
            host,
            token,
            shutdown: None,
            sample_every: DEFAULT_SAMPLE_EVERY,
            history: DEFAULT_HISTORY,
            counters: None,
        }
    }

    /// Ends the live tails (server-sent events) when `shutdown` fires, so that a graceful
    /// shutdown does not wait for browsers to hang up.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Console {
        self.shutdown = Some(shutdown);
        self
    }

    /// How often the store is sampled (default [`DEFAULT_SAMPLE_EVERY`], at least 10 ms).
    pub fn sample_every(mut self, every: Duration) -> Console {
        self.sample_every = every.max(Duration::from_millis(10));
        self
    }

    /// How much sampled history is kept (default [`DEFAULT_HISTORY`]).
    pub fn history(mut self, history: Duration) -> Console {
        self.history = history;
        self
    }

    /// Where the append and condition-failure counters come from. By default the console reads
    /// the `fairway_store_appends_total` and `fairway_store_condition_failures_total` counters
    /// from the runtime's [`ExtraMetrics`](fairway_runtime::ExtraMetrics) service, when the host
    /// registered one that renders them; without either, the store panel shows events per second
    /// only.
    pub fn store_counters(
        mut self,
        counters: impl Fn() -> Option<StoreCounters> + Send + Sync + 'static,
    ) -> Console {
        self.counters = Some(Arc::new(counters));
        self
    }

    /// Mounts the console on `router` at `prefix` (e.g. `"/console"`): the page answers at
    /// `prefix` and `prefix/`, the rest below it. This is [`Console::router`] nested at
    /// `prefix`, plus the trailing-slash form of the page that `Router::nest` alone leaves out.
    pub fn mount(self, router: axum::Router, prefix: &str) -> axum::Router {
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return router.merge(self.router());
        }
        router
            .nest(prefix, self.router())
            .route(&format!("{prefix}/"), axum::routing::get(api::index))
    }

    /// The console's routes: the page at `/`, its assets under `/assets/`, the JSON API under
    /// `/api/`. Mount it with [`Console::mount`] (or `Router::nest`, which serves the page at
    /// `/console` but not `/console/`). The store sampler starts with the first request (or
    /// right away inside a Tokio runtime) and stops when the router is dropped.
    pub fn router(self) -> axum::Router {
        let counters = self.counters.clone().unwrap_or_else(|| {
            let rt = self.runtime.clone();
            Arc::new(move || sampler::counters_from_extra_metrics(&rt))
        });
        let capacity =
            usize::try_from(self.history.as_millis() / self.sample_every.as_millis().max(1))
                .unwrap_or(usize::MAX)
                .clamp(2, 100_000);
        let state = api::ConsoleState::new(api::Inner {
            runtime: self.runtime,
            host: self.host,
            token: self.token,
            shutdown: self.shutdown,
            sampler: sampler::Sampler::new(self.sample_every, capacity, counters),
            rebuilds: Default::default(),
        });
        api::router(state)
    }
}
