//! `fairway serve`: the runtime, its services, the host's router with its layers, the public
//! listener and the console's own loopback listener (both under the connection limits of
//! [`crate::listen`]), the workers, and a graceful shutdown on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fairway_runtime::idempotency::{self, Idempotency};
use fairway_runtime::{
    ExtraMetrics, Host, Mailer, OutboxMailer, Runtime, Secrets, shutdown_channel,
};
use tokio::net::TcpListener;

use crate::layers::{self, HttpMetrics};
use crate::listen::{self, ConnLimits};
use crate::modules;
use crate::store::{self, Backend, CountingStore};

/// How long in-flight requests may take to finish after the stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the runtime every command and worker uses: the counting store and the host services
/// (outbox mailer, secrets, extra metrics).
pub fn runtime(
    data_dir: &Path,
    store: Arc<dyn dcb_core::EventStore>,
    http: Option<HttpMetrics>,
) -> anyhow::Result<Runtime> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let counting = CountingStore::new(store);
    let counters = counting.counters();
    let mailer: Arc<dyn Mailer> = Arc::new(OutboxMailer::new(data_dir.join("outbox.jsonl")));
    let secrets = Secrets::load_or_create(data_dir.join("secrets.json"))
        .context("cannot load the secrets")?;
    let extra = ExtraMetrics::new(move || {
        let mut text = counters.render();
        if let Some(h) = &http {
            text.push_str(&h.render());
        }
        text
    });
    Ok(Runtime::new(Arc::new(counting))
        .with_service(mailer)
        .with_service(secrets)
        .with_service(extra))
}

/// The host's full router: module routes, `/health`, `/metrics`, then (inside out) idempotency
/// keys, the panic catcher, JSON errors and request metrics.
pub fn router(host: &Host, runtime: Runtime, body_limit: usize, http: HttpMetrics) -> axum::Router {
    host.router()
        .layer(axum::middleware::from_fn_with_state(
            Idempotency::new(runtime, body_limit),
            idempotency::middleware,
        ))
        .layer(axum::middleware::from_fn(layers::catch_panics))
        .layer(axum::middleware::from_fn(layers::json_errors))
        .layer(axum::middleware::from_fn_with_state(http, layers::track))
}

/// How `fairway serve` serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address of the public listener (the module routes, `/health`, `/metrics`).
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub body_limit: usize,
    /// Where the dev console listens (a loopback address), or `None` for no console.
    pub console: Option<SocketAddr>,
    /// Extra names the console answers to in `Host` (besides localhost, the loopback
    /// addresses and its listen address).
    pub console_hosts: Vec<String>,
    /// Most live tails the console streams at once.
    pub max_live_tails: usize,
    /// Connection limits of the public listener.
    pub limits: ConnLimits,
}

/// The console listener's connection cap: its live tails plus a few for the page itself.
fn console_connections(max_live_tails: usize) -> usize {
    max_live_tails.saturating_add(32)
}

/// Checks that the connection caps fit under the open-files limit (raised to the hard limit
/// first), keeping [`store::FD_RESERVE`] descriptors for the store and the files.
fn check_fd_budget(options: &ServeOptions) -> anyhow::Result<Option<u64>> {
    let limit = store::raise_fd_limit();
    let console = options
        .console
        .map_or(0, |_| console_connections(options.max_live_tails));
    let wanted = (options.limits.max_connections as u64)
        .saturating_add(console as u64)
        .saturating_add(store::FD_RESERVE);
    if let Some(limit) = limit
        && wanted > limit
    {
        anyhow::bail!(
            "--max-connections {} (plus {console} console connections and {} descriptors kept \
             for the store) needs {wanted} open files, but the limit is {limit}: lower \
             --max-connections (or --max-live-tails), or raise the limit (ulimit -n)",
            options.limits.max_connections,
            store::FD_RESERVE,
        );
    }
    Ok(limit)
}

/// Security headers every response carries: no MIME sniffing, no framing.
fn security_headers(router: axum::Router) -> axum::Router {
    use axum::http::{HeaderName, HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let csp_if_missing = SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    router
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(csp_if_missing)
}

/// Serves until SIGTERM or Ctrl-C, then drains requests and stops the workers.
pub async fn run(options: ServeOptions, data_dir: &Path, backend: &Backend) -> anyhow::Result<()> {
    let fd_limit = check_fd_budget(&options)?;
    let ServeOptions {
        listen,
        body_limit,
        console,
        console_hosts,
        max_live_tails,
        limits,
    } = options;
    let opened = store::open(backend).await?;
    let http = HttpMetrics::default();
    let rt = runtime(data_dir, opened.store.clone(), Some(http.clone()))?;
    let rt = crate::backup::with_service(rt, opened.store.clone(), backend);
    let mods = modules::all();
    let names: Vec<String> = mods.iter().map(|m| m.info().name.clone()).collect();
    let mut host = Host::new(rt.clone(), mods).body_limit(body_limit);
    if matches!(backend, Backend::Embedded(_)) {
        // One process at a time opens an embedded data directory, so every run is the same
        // replica: after a crash the next run takes the view and automation leases back at
        // once instead of waiting for them to expire.
        host = host.replica("embedded");
    }
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let console_listener = match console {
        Some(c) => {
            let l = TcpListener::bind(c)
                .await
                .with_context(|| format!("cannot listen on {c} for the console"))?;
            let a = l.local_addr()?;
            Some((l, a))
        }
        None => None,
    };
    let host = std::sync::Arc::new(host);

    // Two signals: HTTP stops first (drains in-flight requests, which may wait for views),
    // then the workers (automations and views finish their step and release their leases).
    let (http_trigger, http_stop) = shutdown_channel();
    let (worker_trigger, worker_stop) = shutdown_channel();
    let app = security_headers(router(&host, rt.clone(), body_limit, http));
    let console_app = match &console_listener {
        Some((_, console_addr)) => {
            let token = fairway_console::AdminToken::from_runtime(&rt)?;
            let mut hosts = vec![console_addr.ip().to_string()];
            hosts.extend(console_hosts.iter().cloned());
            let console = fairway_console::Console::new(rt.clone(), host.clone(), token)
                .with_shutdown(http_stop.clone())
                .max_live_tails(max_live_tails)
                .allow_hosts(hosts);
            let app = console
                .mount(axum::Router::new(), "/console")
                .route(
                    "/",
                    axum::routing::get(|| async { axum::response::Redirect::to("/console/") }),
                )
                .layer(axum::middleware::from_fn(layers::catch_panics))
                .layer(axum::middleware::from_fn(layers::json_errors));
            Some(security_headers(app))
        }
        None => None,
    };
    let workers = host.spawn_workers(worker_stop);
    println!(
        "fairway listening on http://{addr} ({}; console: {}; modules: {})",
        backend.describe(),
        match &console_listener {
            Some((_, a)) => format!(
                "http://{a}/console (admin token: \"console.admin\" in secrets.json of the data directory)"
            ),
            None => "off".to_owned(),
        },
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        open_files_limit = ?fd_limit,
        "connection limits"
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let signals = tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stop requested: draining requests, then stopping workers");
        http_trigger.trigger();
    });
    let public = listen::serve(
        "http",
        listener,
        app,
        limits,
        http_stop.clone(),
        DRAIN_TIMEOUT,
    );
    let console_served = async {
        if let (Some((l, _)), Some(app)) = (console_listener, console_app) {
            let console_limits = ConnLimits {
                max_connections: console_connections(max_live_tails),
                ..limits
            };
            listen::serve(
                "console",
                l,
                app,
                console_limits,
                http_stop.clone(),
                DRAIN_TIMEOUT,
            )
            .await;
        }
    };
    tokio::join!(public, console_served);
    signals.abort();
    worker_trigger.trigger();
    for w in workers {
        match tokio::time::timeout(DRAIN_TIMEOUT, w).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "a worker panicked"),
            Err(_) => tracing::warn!("a worker did not stop in time"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
