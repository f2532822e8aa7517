//! The console's routes: the page, its assets and the JSON API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use axum::Router;
use axum::extract::{OriginalUri, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use dcb_core::{EventStore, Position, Query, ReadOptions, SequencedEvent};
use fairway_runtime::http::ApiError;
use fairway_runtime::{
    ConsumerKind, ConsumerLag, Host, ModuleKind, RECORDED_AT_KEY, Runtime, Shutdown,
    automation_consumer, view_consumer,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AdminToken;
use crate::params::{Params, parse_position};
use crate::sampler::{Sampler, rates};
use crate::tail::Tails;

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// Dead letters listed per automation in the overview.
const DEAD_LETTERS_SHOWN: usize = 100;

/// Everything the handlers share.
pub(crate) struct Inner {
    pub(crate) runtime: Runtime,
    pub(crate) host: Arc<Host>,
    pub(crate) token: AdminToken,
    pub(crate) shutdown: Option<Shutdown>,
    pub(crate) sampler: Sampler,
    pub(crate) rebuilds: Mutex<HashMap<String, RebuildStatus>>,
    /// Per event type, the data fields shown as `"[redacted]"`.
    pub(crate) sensitive: BTreeMap<String, BTreeSet<String>>,
    pub(crate) tails: Tails,
}

/// The handlers' state.
#[derive(Clone)]
pub(crate) struct ConsoleState(Arc<Inner>);

impl ConsoleState {
    pub(crate) fn new(inner: Inner) -> ConsoleState {
        let state = ConsoleState(Arc::new(inner));
        state.start_sampler();
        state
    }

    fn start_sampler(&self) {
        self.0
            .sampler
            .start(Arc::downgrade(&self.0), |inner: &Inner| {
                (&inner.sampler, &inner.runtime)
            });
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.0.runtime
    }

    fn rt(&self) -> &Runtime {
        &self.0.runtime
    }

    pub(crate) fn store(&self) -> Arc<dyn EventStore> {
        self.0.runtime.store_arc()
    }

    pub(crate) fn tails(&self) -> &Tails {
        &self.0.tails
    }

    pub(crate) fn shutdown(&self) -> Option<Shutdown> {
        self.0.shutdown.clone()
    }

    fn now_ms(&self) -> u64 {
        self.rt()
            .env()
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// 401 unless the request carries the admin token.
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this action needs the console admin token as `Authorization: Bearer <token>`",
            )),
            Some(t) if self.0.token.matches(t) => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong console admin token",
            )),
        }
    }

    fn automations(&self) -> Vec<(String, Option<u32>)> {
        self.0
            .host
            .catalog()
            .into_iter()
            .flat_map(|m| {
                let max = m.max_attempts;
                m.workers
                    .into_iter()
                    .filter_map(move |w| Some((w.strip_prefix("automation:")?.to_owned(), max)))
            })
            .collect()
    }

    fn known_automation(&self, name: &str) -> Result<(), ApiError> {
        if self.automations().iter().any(|(n, _)| n == name) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "no automation called {name:?}"
            )))
        }
    }
}

/// `Path` whose rejection (e.g. a segment that is not UTF-8) has the runtime's error shape.
pub(crate) struct Segments<T>(T);

impl<S, T> axum::extract::FromRequestParts<S> for Segments<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Segments(v)),
            Err(e) => Err(ApiError::bad_field("path", e.body_text())),
        }
    }
}

/// The state of a view rebuild started from the console.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RebuildStatus {
    /// `running`, `done` or `failed`.
    state: &'static str,
    started_at_ms: u64,
    finished_at_ms: Option<u64>,
    /// The first event of the store when the rebuild started.
    first: Option<Position>,
    /// The head when the rebuild started: it is done when the view has passed it.
    target: Option<Position>,
    /// Where the view got to (when done).
    reached: Option<Position>,
    error: Option<String>,
}

pub(crate) fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/console.js", get(script))
        .route("/assets/console.css", get(style))
        .route("/api/events", get(list_events))
        .route("/api/events/live", get(crate::tail::live_events))
        .route("/api/events/{position}", get(event_detail))
        .route("/api/modules", get(modules))
        .route("/api/board.svg", get(board))
        .route("/api/automations", get(automations))
        .route(
            "/api/automations/{name}/dead-letters",
            get(dead_letters).delete(purge_all),
        )
        .route(
            "/api/automations/{name}/dead-letters/{position}",
            delete(purge_one),
        )
        .route(
            "/api/automations/{name}/dead-letters/{position}/replay",
            post(replay),
        )
        .route("/api/views", get(views))
        .route("/api/views/{name}/rebuild", post(rebuild))
        .route("/api/store", get(store))
        .route("/api/backup", post(crate::backup::backup))
        .fallback(|| async { ApiError::not_found("no such console route") })
        .with_state(state)
}

fn no_params(raw: &Option<String>) -> Result<(), ApiError> {
    Params::parse(raw.as_deref(), &[]).map(|_| ())
}

pub(crate) async fn index(OriginalUri(uri): OriginalUri, RawQuery(raw): RawQuery) -> Response {
    if let Err(e) = no_params(&raw) {
        return e.into_response();
    }
    // The page loads its assets and API relative to its `<base>`: the console's mount point,
    // whether the page was asked for as `/console` or `/console/`.
    let path = uri.path();
    let base = if path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    };
    let page = INDEX_HTML.replacen(
        "<!--BASE-->",
        &format!("<base href=\"{}\">", escape_attr(&base)),
        1,
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'self'; frame-ancestors 'none'",
            ),
        ],
        page,
    )
        .into_response()
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CONSOLE_JS,
    )
}

async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CONSOLE_CSS,
    )
}

/// An event as the console shows it in lists.
pub(crate) fn summary(e: &SequencedEvent) -> Value {
    json!({
        "position": e.position,
        "type": e.event.event_type,
        "tags": e.event.tags,
        "recorded_at_ms": recorded_at(e),
        "id": e.event.id,
        "size": e.event.data.len(),
    })
}

fn recorded_at(e: &SequencedEvent) -> Option<u64> {
    e.event
        .metadata
        .value(RECORDED_AT_KEY)
        .and_then(|v| v.parse::<u64>().ok())
}

/// An event with everything: metadata and data (JSON when it is JSON, else text, else hex), its
/// sensitive fields (`sensitive`) shown as `"[redacted]"`.
fn detail(e: &SequencedEvent, sensitive: &BTreeMap<String, BTreeSet<String>>) -> Value {
    let mut v = summary(e);
    v["metadata"] = json!(e.event.metadata);
    let data = &e.event.data;
    let (encoding, value) = match serde_json::from_slice::<Value>(data) {
        Ok(mut j) => {
            if let Some(fields) = sensitive.get(e.event.event_type.as_str()) {
                let n = fairway_runtime::redact(&mut j, fields);
                if n > 0 {
                    v["redacted"] = json!(n);
                }
            }
            ("json", j)
        }
        Err(_) => match std::str::from_utf8(data) {
            Ok(s) => ("text", Value::String(s.to_owned())),
            Err(_) => (
                "hex",
                Value::String(data.iter().map(|b| format!("{b:02x}")).collect()),
            ),
        },
    };
    v["data_encoding"] = json!(encoding);
    v["data"] = value;
    v
}

/// `GET /api/events?type=&tag=&from=&to=&before=&limit=`: newest first. `type` (repeatable)
/// matches any of the types, `tag` (repeatable) requires all the tags; `from` and `to` bound
/// the positions (inclusive); `before` (exclusive) pages on from a previous page's
/// `next_before`.
async fn list_events(
    State(st): State<ConsoleState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let p = Params::parse(
        raw.as_deref(),
        &["type", "tag", "from", "to", "before", "limit"],
    )?;
    let query = p.query()?;
    let limit = p.limit("limit")?;
    let from = p.position("from")?;
    let to = p.position("to")?;
    let before = p.position("before")?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::bad_field("from", "must not be above `to`"));
    }
    // The exclusive upper bound: the smaller of `before` and just above `to`.
    let upper = match (to.map(|t| t.next()), before) {
        (None, b) => b,
        (Some(None), b) => b, // `to` is the largest position: no bound from it.
        (Some(Some(t)), None) => Some(t),
        (Some(Some(t)), Some(b)) => Some(t.min(b)),
    };
    let mut options = ReadOptions::new().backwards().limit(limit + 1);
    if let Some(f) = from {
        options = options.from(f);
    }
    if let Some(u) = upper {
        options = options.before(u);
    }
    let read = st.rt().store().read(query, options).await?;
    let head = read.head();
    let mut events = read.collect_all().await?;
    let more = events.len() as u64 > limit;
    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_before = if more {
        events.last().map(|e| e.position)
    } else {
        None
    };
    Ok(axum::Json(json!({
        "head": head,
        "events": events.iter().map(summary).collect::<Vec<_>>(),
        "next_before": next_before,
    })))
}

/// `GET /api/events/{position}`.
async fn event_detail(
    State(st): State<ConsoleState>,
    Segments(position): Segments<String>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    no_params(&raw)?;
    let position = parse_position("position", &position)?;
    let read = st
        .rt()
        .store()
        .read(Query::All, ReadOptions::new().from(position).limit(1))
        .await?;
    let found = read
        .collect_all()
        .await?
        .into_iter()
        .find(|e| e.position == position)
        .ok_or_else(|| ApiError::not_found(format!("no event at position {position}")))?;
    Ok(axum::Json(detail(&found, &st.0.sensitive)))
}

/// `GET /api/modules`: the catalog, the views and the automations.
async fn modules(
    State(st): State<ConsoleState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    no_params(&raw)?;
    let catalog = st.0.host.catalog();
    let names = |k: ModuleKind| {
        catalog
            .iter()
            .filter(|m| m.kind == k)
            .map(|m| m.name.clone())
            .collect::<Vec<_>>()
    };
    Ok(axum::Json(json!({
        "commands": names(ModuleKind::Command),
        "views": names(ModuleKind::View),
        "automations": names(ModuleKind::Automation),
        "modules": catalog,
    })))
}

/// `GET /api/board.svg`: the Event Modeling board.
async fn board(
    State(st): State<ConsoleState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    no_params(&raw)?;
    let svg = crate::board_svg(&st.0.host.catalog());
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        svg,
    )
        .into_response())
}

/// Each consumer of `kind`'s checkpoint and lag, by name, from [`Host::lags`] (the one
/// definition `/metrics` and `fairway status` use too).
async fn lags_of(
    st: &ConsoleState,
    kind: ConsumerKind,
) -> Result<HashMap<String, ConsumerLag>, ApiError> {
    Ok(st
        .0
        .host
        .lags()
        .await?
        .into_iter()
        .filter(|l| l.kind == kind)
        .map(|l| (l.name.clone(), l))
        .collect())
}

/// A consumer's lag as the console shows it (a decimal string, like positions).
fn lag(lags: &HashMap<String, ConsumerLag>, name: &str) -> String {
    lags.get(name).map_or(0, |l| l.lag).to_string()
}

/// `GET /api/automations`: per automation its cursor, lag behind the head, in-flight and retry
/// figures, and its dead letters (the first [`DEAD_LETTERS_SHOWN`]).
async fn automations(
    State(st): State<ConsoleState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    no_params(&raw)?;
    let rt = st.rt();
    let head = rt.store().head().await?;
    let lags = lags_of(&st, ConsumerKind::Automation).await?;
    let mut out = Vec::new();
    for (name, max_attempts) in st.automations() {
        let checkpoint = rt.store().checkpoint(&automation_consumer(&name)).await?;
        let m = rt.metrics().automation(&name);
        let letters = rt.dead_letters(&name, None, DEAD_LETTERS_SHOWN + 1).await?;
        let retry_queue = rt.retry_queue(&name, 1000).await?;
        out.push(json!({
            "name": name,
            "max_attempts": max_attempts,
            "checkpoint": checkpoint,
            "head": head,
            "lag": lag(&lags, &name),
            "in_flight": m.in_flight.load(Relaxed),
            "processed": m.processed.load(Relaxed),
            "retries": m.retries.load(Relaxed),
            "retry_queue": retry_queue.len(),
            "retrying": retry_queue,
            "dead_lettered": m.dead_lettered.load(Relaxed),
            "dead_letter_count": m.dlq_size.load(Relaxed).max(i64::try_from(letters.len()).unwrap_or(i64::MAX)),
            "dead_letters": letters.iter().take(DEAD_LETTERS_SHOWN).collect::<Vec<_>>(),
            "more_dead_letters": letters.len() > DEAD_LETTERS_SHOWN,
            "lease_held": m.lease_held.load(Relaxed) == 1,
        }));
    }
    Ok(axum::Json(json!({ "head": head, "automations": out })))
}

/// `GET /api/automations/{name}/dead-letters?after=&limit=`: a page of dead letters, oldest
/// trigger first.
async fn dead_letters(
    State(st): State<ConsoleState>,
    Segments(name): Segments<String>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    let p = Params::parse(raw.as_deref(), &["after", "limit"])?;
    let after = p.position("after")?;
    let limit = usize::try_from(p.limit("limit")?).unwrap_or(usize::MAX);
    st.known_automation(&name)?;
    let mut letters = st.rt().dead_letters(&name, after, limit + 1).await?;
    let more = letters.len() > limit;
    letters.truncate(limit);
    let next_after = if more {
        letters.last().map(|l| l.position)
    } else {
        None
    };
    Ok(axum::Json(json!({
        "automation": name,
        "dead_letters": letters,
        "next_after": next_after,
    })))
}

/// `POST /api/automations/{name}/dead-letters/{position}/replay` (admin): back to the retry
/// queue, due now, with a fresh attempt budget.
async fn replay(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Segments((name, position)): Segments<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    st.authorize(&headers)?;
    no_params(&raw)?;
    let position = parse_position("position", &position)?;
    st.known_automation(&name)?;
    if !st.rt().replay_dead_letter(&name, position).await? {
        return Err(ApiError::not_found(format!(
            "automation {name:?} has no dead letter at position {position}"
        )));
    }
    tracing::info!(automation = %name, %position, "console: dead letter replayed");
    Ok(axum::Json(
        json!({ "automation": name, "position": position, "replayed": true }),
    ))
}

/// `DELETE /api/automations/{name}/dead-letters/{position}` (admin): drops one dead letter.
async fn purge_one(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Segments((name, position)): Segments<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    st.authorize(&headers)?;
    no_params(&raw)?;
    let position = parse_position("position", &position)?;
    st.known_automation(&name)?;
    let n = st.rt().purge_dead_letters(&name, Some(position)).await?;
    if n == 0 {
        return Err(ApiError::not_found(format!(
            "automation {name:?} has no dead letter at position {position}"
        )));
    }
    tracing::info!(automation = %name, %position, "console: dead letter purged");
    Ok(axum::Json(json!({ "automation": name, "purged": n })))
}

/// `DELETE /api/automations/{name}/dead-letters` (admin): drops them all.
async fn purge_all(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Segments(name): Segments<String>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    st.authorize(&headers)?;
    no_params(&raw)?;
    st.known_automation(&name)?;
    let n = st.rt().purge_dead_letters(&name, None).await?;
    tracing::info!(automation = %name, purged = n, "console: dead letters purged");
    Ok(axum::Json(json!({ "automation": name, "purged": n })))
}

/// `GET /api/views`: per materialized view its position, lag, counters and the last rebuild
/// started from this console (with progress while it runs).
async fn views(
    State(st): State<ConsoleState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    use std::sync::atomic::Ordering::Relaxed;
    no_params(&raw)?;
    let rt = st.rt();
    let head = rt.store().head().await?;
    let rebuilds =
        st.0.rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
    let lags = lags_of(&st, ConsumerKind::View).await?;
    let mut out = Vec::new();
    for name in st.0.host.views() {
        let checkpoint = rt.store().checkpoint(&view_consumer(&name)).await?;
        let m = rt.metrics().view(&name);
        let rebuild = rebuilds.get(&name).map(|r| {
            let mut v = json!(r);
            v["progress"] = json!(progress(r, checkpoint));
            v
        });
        out.push(json!({
            "name": name,
            "checkpoint": checkpoint,
            "head": head,
            "lag": lag(&lags, &name),
            "processed": m.processed.load(Relaxed),
            "rebuilds": m.rebuilds.load(Relaxed),
            "lease_held": m.lease_held.load(Relaxed) == 1,
            "rebuild": rebuild,
        }));
    }
    Ok(axum::Json(json!({ "head": head, "views": out })))
}

/// How far a rebuild is, from 0 to 1, measured in positions between the first event and the
/// head the rebuild started at.
fn progress(r: &RebuildStatus, checkpoint: Option<Position>) -> f64 {
    if r.state != "running" {
        return if r.state == "done" { 1.0 } else { 0.0 };
    }
    let (Some(target), Some(first)) = (r.target, r.first) else {
        return 0.0;
    };
    let Some(cp) = checkpoint else {
        return 0.0;
    };
    let span = target.get().saturating_sub(first.get()) as f64;
    if span <= 0.0 {
        return if cp >= target { 1.0 } else { 0.0 };
    }
    (cp.get().saturating_sub(first.get()) as f64 / span).clamp(0.0, 1.0)
}

/// `POST /api/views/{name}/rebuild` (admin): deletes the view's read model and rebuilds it from
/// the first event in the background; `GET /api/views` shows the progress. 409 while a rebuild
/// of that view runs.
async fn rebuild(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Segments(name): Segments<String>,
    RawQuery(raw): RawQuery,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    st.authorize(&headers)?;
    no_params(&raw)?;
    if !st.0.host.views().contains(&name) {
        return Err(ApiError::not_found(format!("no view called {name:?}")));
    }
    let store = st.rt().store();
    let target = store.head().await?;
    let first = store
        .read(Query::All, ReadOptions::new().limit(1))
        .await?
        .collect_all()
        .await?
        .first()
        .map(|e| e.position);
    let status = RebuildStatus {
        state: "running",
        started_at_ms: st.now_ms(),
        finished_at_ms: None,
        first,
        target,
        reached: None,
        error: None,
    };
    {
        let mut map = st.0.rebuilds.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&name).is_some_and(|r| r.state == "running") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "rebuild_running",
                format!("view {name:?} is being rebuilt already"),
            ));
        }
        map.insert(name.clone(), status.clone());
    }
    tracing::info!(view = %name, "console: view rebuild started");
    let task_state = st.clone();
    let task_name = name.clone();
    tokio::spawn(async move {
        let result = task_state.0.host.rebuild_view(&task_name).await;
        let finished = task_state.now_ms();
        let mut map = task_state
            .0
            .rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(r) = map.get_mut(&task_name) {
            r.finished_at_ms = Some(finished);
            match result {
                Some(Ok(reached)) => {
                    r.state = "done";
                    r.reached = reached;
                }
                Some(Err(e)) => {
                    tracing::warn!(view = %task_name, error = %e, "console: view rebuild failed");
                    r.state = "failed";
                    r.error = Some(e.to_string());
                }
                None => {
                    r.state = "failed";
                    r.error = Some("the view disappeared".to_owned());
                }
            }
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "view": name, "rebuild": status })),
    ))
}

/// `GET /api/store`: head, event count and the sampled history with rates per second.
async fn store(
    State(st): State<ConsoleState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<Value>, ApiError> {
    no_params(&raw)?;
    st.start_sampler();
    let stats = st.rt().store().stats().await?;
    let samples = st.0.sampler.samples();
    let rates = rates(&samples);
    let counted = samples.last().is_some_and(|s| s.counters.is_some());
    Ok(axum::Json(json!({
        "head": stats.head,
        "events": stats.events,
        "sample_every_ms": u64::try_from(st.0.sampler.every().as_millis()).unwrap_or(u64::MAX),
        "counters_available": counted,
        "samples": samples,
        "rates": rates,
        "live_tails": st.0.tails.stats(),
    })))
}
