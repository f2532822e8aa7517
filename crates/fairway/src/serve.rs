//! `fairway serve`: the runtime, its services, the host's router with its layers, the workers,
//! and a graceful shutdown on SIGTERM or Ctrl-C.

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
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body.
    pub body_limit: usize,
    /// Whether to serve the dev console under `/console`.
    pub console: bool,
}

/// Serves until SIGTERM or Ctrl-C, then drains requests and stops the workers.
pub async fn run(options: ServeOptions, data_dir: &Path, backend: &Backend) -> anyhow::Result<()> {
    let ServeOptions {
        listen,
        body_limit,
        console,
    } = options;
    let opened = store::open(backend).await?;
    let http = HttpMetrics::default();
    let rt = runtime(data_dir, opened.store.clone(), Some(http.clone()))?;
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
    let host = std::sync::Arc::new(host);

    // Two signals: HTTP stops first (drains in-flight requests, which may wait for views),
    // then the workers (automations and views finish their step and release their leases).
    let (http_trigger, http_stop) = shutdown_channel();
    let (worker_trigger, worker_stop) = shutdown_channel();
    let mut app = router(&host, rt.clone(), body_limit, http);
    if console {
        let token = fairway_console::AdminToken::from_runtime(&rt)?;
        app = fairway_console::Console::new(rt.clone(), host.clone(), token)
            .with_shutdown(http_stop.clone())
            .mount(app, "/console");
    }
    let workers = host.spawn_workers(worker_stop);
    println!(
        "fairway listening on http://{addr} ({}; console: {}; modules: {})",
        backend.describe(),
        if console {
            "/console (admin token: \"console.admin\" in secrets.json of the data directory)"
        } else {
            "off"
        },
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let signals = tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stop requested: draining requests, then stopping workers");
        http_trigger.trigger();
    });
    let drain = http_stop.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { drain.wait().await });
    let deadline = async {
        http_stop.wait().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    let served = tokio::select! {
        r = server => r.context("the HTTP server failed"),
        () = deadline => {
            tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}: stopping anyway");
            Ok(())
        }
    };
    signals.abort();
    worker_trigger.trigger();
    for w in workers {
        match tokio::time::timeout(DRAIN_TIMEOUT, w).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "a worker panicked"),
            Err(_) => tracing::warn!("a worker did not stop in time"),
        }
    }
    served?;
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
