//! `fairway-console`: the dev console — one web page and a JSON API under it that show what a
//! Fairway host is doing: the events (a live tail, filters, paging, each event's detail), the
//! modules and an Event Modeling board drawn from their self-descriptions, the automations (lag,
//! retries, dead letters to replay or purge), the materialized views (lag, rebuild with progress)
//! and the store (head, event count, appends and condition failures per second).
//!
//! Layer: beside the host, above the framework. It builds on `fairway-runtime` (the
//! [`Host`]'s catalog, metrics, dead letters, view rebuilds) and the
//! [`dcb_core::EventStore`] trait only: it must not depend on a backend (`dcb-embedded`,
//! `dcb-kv`, FoundationDB) nor on any module. It serves no route by itself: a host mounts it
//! (or leaves it out, which turns it off).
//!
//! Everything it serves is embedded in the binary: the page, its script and its style sheet are
//! `include_str!`ed, nothing is fetched from elsewhere at run time.
//!
//! **Who can read it.** The console shows every event, so a host serves it on a listener of its
//! own bound to loopback (`fairway serve` refuses any other address): reading is open to
//! whoever can connect there; replaying or purging a dead letter and rebuilding a view also need
//! the [`AdminToken`] as `Authorization: Bearer <token>`. Every request's `Host` must be one of
//! [`DEFAULT_HOSTS`] or a name given to [`Console::allow_hosts`] (else 421), so that a web page
//! on another origin cannot read it through DNS rebinding. Event fields declared sensitive
//! ([`fairway_runtime::DomainEvent::SENSITIVE_FIELDS`]) are shown as `"[redacted]"`. At most
//! [`DEFAULT_MAX_LIVE_TAILS`] live tails stream at once (see [`Console::max_live_tails`]), all
//! fed by one store subscription. Every error is in the runtime's JSON error shape.
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
mod backup;
mod board;
mod guard;
mod params;
mod sampler;
mod tail;

use std::sync::Arc;
use std::time::Duration;

use fairway_runtime::{Host, Runtime, Secrets, Shutdown};

pub use backup::{BackupRefused, BackupService};
pub use board::board_svg;
pub use guard::DEFAULT_HOSTS;
pub use sampler::{Sample, StoreCounters};
pub use tail::HUB_CAPACITY as DEFAULT_TAIL_BUFFER;

/// The secret name the console's admin token is derived from (see [`AdminToken::from_secrets`]).
pub const ADMIN_SECRET: &str = "console.admin";

/// How often the store is sampled by default.
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Live tails served at once by default (see [`Console::max_live_tails`]).
pub const DEFAULT_MAX_LIVE_TAILS: usize = 64;

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
    max_live_tails: usize,
    tail_buffer: usize,
    hosts: Vec<String>,
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
            max_live_tails: DEFAULT_MAX_LIVE_TAILS,
            tail_buffer: DEFAULT_TAIL_BUFFER,
            hosts: Vec::new(),
        }
    }

    /// Most live tails (`GET api/events/live`) streaming at once (default
    /// [`DEFAULT_MAX_LIVE_TAILS`]); more are refused with 503 and `Retry-After`.
    pub fn max_live_tails(mut self, max: usize) -> Console {
        self.max_live_tails = max;
        self
    }

    /// How many events a live tail may fall behind (default [`DEFAULT_TAIL_BUFFER`], at least
    /// 1): a tail further behind gets an `error` message (code `tail_lagged`) and ends, instead
    /// of being buffered. The buffer holds event summaries without their data.
    pub fn tail_buffer(mut self, events: usize) -> Console {
        self.tail_buffer = events;
        self
    }

    /// Host names the console answers to besides [`DEFAULT_HOSTS`] (e.g. the address it listens
    /// on, or a name an SSH tunnel or reverse proxy uses); requests with any other `Host` get 421.
    pub fn allow_hosts(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Console {
        self.hosts.extend(names.into_iter().map(Into::into));
        self
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
        let page = guard::guarded(
            axum::Router::new().route(&format!("{prefix}/"), axum::routing::get(api::index)),
            &self.hosts,
        );
        router.nest(prefix, self.router()).merge(page)
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
        let sensitive = self.host.sensitive_fields();
        let state = api::ConsoleState::new(api::Inner {
            runtime: self.runtime,
            sensitive,
            tails: tail::Tails::new(self.max_live_tails, self.tail_buffer),
            host: self.host,
            token: self.token,
            shutdown: self.shutdown,
            sampler: sampler::Sampler::new(self.sample_every, capacity, counters),
            rebuilds: Default::default(),
        });
        guard::guarded(api::router(state), &self.hosts)
    }
}
