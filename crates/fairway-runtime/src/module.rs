//! Modules and the host: each module crate exports one `module()` value describing itself; a
//! host builds one axum router and the background workers from a list of them.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::header::CONTENT_TYPE;
use axum::routing::{MethodRouter, get};
use dcb_core::{Query, QueryItem};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::automation::{Automation, AutomationWorker};
use crate::command::Command;
use crate::event::{DomainEvent, EventSet};
use crate::http::ApiError;
use crate::lag::{Consumer, ConsumerKind, ConsumerLag};
use crate::openapi::{OperationInput, OperationOutput};
use crate::runtime::Runtime;
use crate::shutdown::{Shutdown, shutdown_channel};
use crate::view::{MaterializedView, ViewError};
use aide::operation::OperationHandler;

/// Default request body limit of a host: 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Which pattern a module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModuleKind {
    /// Changes state: decides and appends events.
    Command,
    /// Answers queries from events (live or materialized).
    View,
    /// Reacts to events by running commands.
    Automation,
}

/// One HTTP route of a module, for the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    /// `GET`, `POST`, ...
    pub method: &'static str,
    /// The path, e.g. `/users/{id}`.
    pub path: String,
}

/// What a module says about itself (for a generated catalog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    /// The module name.
    pub name: String,
    /// Its pattern.
    pub kind: ModuleKind,
    /// One line about it.
    pub description: String,
    /// Its routes.
    pub routes: Vec<RouteInfo>,
    /// Event types it reads.
    pub reads: Vec<String>,
    /// Event types it appends.
    pub appends: Vec<String>,
    /// Background workers it runs (views, automations).
    pub workers: Vec<String>,
    /// Max attempts per trigger, for automations.
    pub max_attempts: Option<u32>,
    /// Per event type it reads or appends, the data fields that hold secrets
    /// ([`DomainEvent::SENSITIVE_FIELDS`]); types without any are absent.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sensitive_fields: BTreeMap<String, Vec<String>>,
}

impl ModuleInfo {
    fn add_sensitive(&mut self, event_type: &str, fields: &[&str]) {
        if fields.is_empty() {
            return;
        }
        push_unique(
            self.sensitive_fields
                .entry(event_type.to_owned())
                .or_default(),
            fields.iter().map(|f| (*f).to_owned()),
        );
    }
}

type WorkerFn = Arc<dyn Fn(Runtime, Shutdown, String) -> BoxFuture<'static, ()> + Send + Sync>;

type RebuildFn = Arc<
    dyn Fn(Runtime) -> BoxFuture<'static, Result<Option<dcb_core::Position>, ViewError>>
        + Send
        + Sync,
>;

/// Extra Prometheus text a host appends to `GET /metrics` (e.g. HTTP request and store
/// counters). Register it as a service: `runtime.with_service(ExtraMetrics::new(|| ...))`.
#[derive(Clone)]
pub struct ExtraMetrics(Arc<dyn Fn() -> String + Send + Sync>);

impl ExtraMetrics {
    /// Metrics rendered by `render` on each scrape.
    pub fn new(render: impl Fn() -> String + Send + Sync + 'static) -> ExtraMetrics {
        ExtraMetrics(Arc::new(render))
    }

    /// The text.
    pub fn render(&self) -> String {
        (self.0)()
    }
}

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraMetrics").finish_non_exhaustive()
    }
}

/// A module: routes, workers and its self-description. Build with [`Module::new`] and the
/// builder methods; a host lists them as `vec![todo_create::module(), ...]`.
pub struct Module {
    info: ModuleInfo,
    router: Router<Runtime>,
    docs: Vec<crate::openapi::RouteDoc>,
    workers: Vec<(String, WorkerFn)>,
    views: Vec<(String, RebuildFn)>,
    consumers: Vec<Consumer>,
    decoders: Vec<crate::check::Decoder>,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What a consumer's worker reads: `query` restricted to its event set. A query naming a type
/// outside the set stops the worker with an error; its lag then counts every event of the set.
fn consumer_query<E: EventSet>(query: &Query) -> Query {
    crate::event::restrict_set::<E>(query).unwrap_or_else(|_| {
        Query::item(QueryItem::new().types(E::stored_types().into_iter().map(str::to_owned)))
    })
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for i in items {
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

impl Module {
    /// An empty module of `kind` named `name`.
    pub fn new(kind: ModuleKind, name: impl Into<String>) -> Module {
        Module {
            info: ModuleInfo {
                name: name.into(),
                kind,
                description: String::new(),
                routes: Vec::new(),
                reads: Vec::new(),
                appends: Vec::new(),
                workers: Vec::new(),
                max_attempts: None,
                sensitive_fields: BTreeMap::new(),
            },
            router: Router::new(),
            docs: Vec::new(),
            workers: Vec::new(),
            views: Vec::new(),
            consumers: Vec::new(),
            decoders: Vec::new(),
        }
    }

    /// One line about the module.
    pub fn describe(mut self, description: impl Into<String>) -> Module {
        self.info.description = description.into();
        self
    }

    fn route<I: OperationInput, O: OperationOutput>(
        mut self,
        method: &'static str,
        path: &str,
        route: MethodRouter<Runtime>,
    ) -> Module {
        self.info.routes.push(RouteInfo {
            method,
            path: path.to_owned(),
        });
        self.docs
            .push(crate::openapi::RouteDoc::of::<I, O>(method, path));
        self.router = self.router.route(path, route);
        self
    }

    /// A `GET` route (the handler's state is the [`Runtime`]). Every route is documented in
    /// the API contract from its handler's signature ([`crate::openapi`]): each argument must
    /// implement [`OperationInput`] and the return type [`OperationOutput`], so request and
    /// response types derive `schemars::JsonSchema`.
    pub fn get<H, T, I, O>(self, path: &str, handler: H) -> Module
    where
        H: Handler<T, Runtime> + OperationHandler<I, O>,
        T: 'static,
        I: OperationInput,
        O: OperationOutput,
    {
        self.route::<I, O>("GET", path, axum::routing::get(handler))
    }

    /// A `POST` route.
    pub fn post<H, T, I, O>(self, path: &str, handler: H) -> Module
    where
        H: Handler<T, Runtime> + OperationHandler<I, O>,
        T: 'static,
        I: OperationInput,
        O: OperationOutput,
    {
        self.route::<I, O>("POST", path, axum::routing::post(handler))
    }

    /// A `PUT` route.
    pub fn put<H, T, I, O>(self, path: &str, handler: H) -> Module
    where
        H: Handler<T, Runtime> + OperationHandler<I, O>,
        T: 'static,
        I: OperationInput,
        O: OperationOutput,
    {
        self.route::<I, O>("PUT", path, axum::routing::put(handler))
    }

    /// A `PATCH` route.
    pub fn patch<H, T, I, O>(self, path: &str, handler: H) -> Module
    where
        H: Handler<T, Runtime> + OperationHandler<I, O>,
        T: 'static,
        I: OperationInput,
        O: OperationOutput,
    {
        self.route::<I, O>("PATCH", path, axum::routing::patch(handler))
    }

    /// A `DELETE` route.
    pub fn delete<H, T, I, O>(self, path: &str, handler: H) -> Module
    where
        H: Handler<T, Runtime> + OperationHandler<I, O>,
        T: 'static,
        I: OperationInput,
        O: OperationOutput,
    {
        self.route::<I, O>("DELETE", path, axum::routing::delete(handler))
    }

    /// Declares the event types of a set as read.
    pub fn reads<E: EventSet>(mut self) -> Module {
        push_unique(
            &mut self.info.reads,
            E::TYPES.iter().map(|t| (*t).to_owned()),
        );
        for (event_type, fields) in E::SENSITIVE_FIELDS {
            self.info.add_sensitive(event_type, fields);
        }
        let decoder = crate::check::Decoder::of::<E>(&self.info.name);
        if !self.decoders.contains(&decoder) {
            self.decoders.push(decoder);
        }
        self
    }

    /// Declares the events a command reads as read.
    pub fn command<C: crate::decision::Decide>(self) -> Module {
        self.reads::<C::Events>()
    }

    /// Declares one event type as appended.
    pub fn appends<E: DomainEvent>(mut self) -> Module {
        push_unique(&mut self.info.appends, [E::TYPE.to_owned()]);
        self.info.add_sensitive(E::TYPE, E::SENSITIVE_FIELDS);
        self
    }

    /// Adds a background worker.
    pub fn worker<F, Fut>(mut self, name: impl Into<String>, run: F) -> Module
    where
        F: Fn(Runtime, Shutdown, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        self.info.workers.push(name.clone());
        let f: WorkerFn = Arc::new(move |rt, sd, replica| Box::pin(run(rt, sd, replica)));
        self.workers.push((name, f));
        self
    }

    /// Keeps a materialized view current in the background.
    pub fn materialized<V: MaterializedView>(mut self, view: V) -> Module {
        let view = Arc::new(view);
        let name = format!("view:{}", view.name());
        let for_rebuild = view.clone();
        let rebuild: RebuildFn = Arc::new(move |rt: Runtime| {
            let view = for_rebuild.clone();
            Box::pin(async move { rt.rebuild(&*view).await })
        });
        self.views.push((view.name().to_owned(), rebuild));
        self.consumers.push(Consumer {
            kind: ConsumerKind::View,
            name: view.name().to_owned(),
            query: consumer_query::<V::Events>(&view.query()),
        });
        self.reads::<V::Events>()
            .worker(name, move |rt: Runtime, sd, replica: String| {
                let view = view.clone();
                async move { rt.run_view(view, sd, replica).await }
            })
    }

    /// Runs an automation in the background; its commands get `deps`.
    pub fn automation<A: Automation>(
        mut self,
        automation: A,
        deps: <A::Command as Command>::Deps,
    ) -> Module {
        let automation = Arc::new(automation);
        let deps = Arc::new(deps);
        self.info.max_attempts = Some(automation.settings().max_attempts);
        self.consumers.push(Consumer {
            kind: ConsumerKind::Automation,
            name: automation.name().to_owned(),
            query: consumer_query::<A::Trigger>(&automation.query()),
        });
        let name = format!("automation:{}", automation.name());
        self.reads::<A::Trigger>().command::<A::Command>().worker(
            name,
            move |rt: Runtime, sd, replica: String| {
                let worker = AutomationWorker::new(rt, automation.clone(), deps.clone(), replica);
                worker.run(sd)
            },
        )
    }

    /// Runs an automation whose commands' services come from the runtime when the worker
    /// starts (a module's `module()` takes no arguments), e.g.
    /// `.automation_with(Welcome, |rt| rt.service::<Arc<dyn Mailer>>())`. When `deps` returns
    /// `None` the host lacks a service: the worker logs an error and does not run.
    pub fn automation_with<A, F>(mut self, automation: A, deps: F) -> Module
    where
        A: Automation,
        F: Fn(&Runtime) -> Option<<A::Command as Command>::Deps> + Send + Sync + 'static,
    {
        let automation = Arc::new(automation);
        self.info.max_attempts = Some(automation.settings().max_attempts);
        self.consumers.push(Consumer {
            kind: ConsumerKind::Automation,
            name: automation.name().to_owned(),
            query: consumer_query::<A::Trigger>(&automation.query()),
        });
        let name = format!("automation:{}", automation.name());
        self.reads::<A::Trigger>().command::<A::Command>().worker(
            name,
            move |rt: Runtime, sd, replica: String| {
                let automation = automation.clone();
                let deps = deps(&rt);
                async move {
                    match deps {
                        Some(deps) => {
                            AutomationWorker::new(rt, automation, Arc::new(deps), replica)
                                .run(sd)
                                .await
                        }
                        None => tracing::error!(
                            automation = automation.name(),
                            "the host provides none of the services this automation needs: it does not run"
                        ),
                    }
                }
            },
        )
    }

    /// The module's self-description.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }
}

/// `GET /openapi.json`'s body: the document, serialized once.
fn openapi_body(api: &aide::openapi::OpenApi) -> Result<Bytes, ApiError> {
    serde_json::to_vec(api)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("the API contract does not serialize: {e}")))
}

/// Serves a list of modules: one router, their workers, `/health` and `/metrics`.
pub struct Host {
    runtime: Runtime,
    modules: Vec<Module>,
    body_limit: usize,
    replica: String,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("modules", &self.modules)
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

impl Host {
    /// A host running `modules` on `runtime`, as a replica with a random id.
    pub fn new(runtime: Runtime, modules: Vec<Module>) -> Host {
        let replica = runtime.env().new_id().to_string();
        Host {
            runtime,
            modules,
            body_limit: DEFAULT_BODY_LIMIT,
            replica,
        }
    }

    /// The request body limit (bigger bodies get 413).
    pub fn body_limit(mut self, bytes: usize) -> Host {
        self.body_limit = bytes;
        self
    }

    /// This replica's id (used for automation leases).
    pub fn replica(mut self, id: impl Into<String>) -> Host {
        self.replica = id.into();
        self
    }

    /// The API contract: an OpenAPI 3.1 document of every module's routes and the host's own
    /// (`/health`, `/metrics`, `/openapi.json`), see [`crate::openapi`].
    pub fn openapi(&self) -> aide::openapi::OpenApi {
        let host_routes = crate::openapi::host_routes();
        let mut parts = vec![crate::openapi::ModuleRoutes {
            name: "host",
            description: "The host's own routes",
            routes: &host_routes,
        }];
        parts.extend(self.modules.iter().map(|m| crate::openapi::ModuleRoutes {
            name: &m.info.name,
            description: &m.info.description,
            routes: &m.docs,
        }));
        crate::openapi::document("Fairway", env!("CARGO_PKG_VERSION"), &parts)
    }

    /// Every module's self-description.
    pub fn catalog(&self) -> Vec<ModuleInfo> {
        self.modules.iter().map(|m| m.info.clone()).collect()
    }

    /// Per event type, the data fields any module declares sensitive
    /// ([`DomainEvent::SENSITIVE_FIELDS`]): what the console and `fairway events` redact.
    pub fn sensitive_fields(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &self.modules {
            for (event_type, fields) in &m.info.sensitive_fields {
                out.entry(event_type.clone())
                    .or_default()
                    .extend(fields.iter().cloned());
            }
        }
        out
    }

    /// How each module decodes the events it reads: what `fairway events check` tries every
    /// stored event against ([`crate::check`]).
    pub fn decoders(&self) -> Vec<crate::check::Decoder> {
        self.modules
            .iter()
            .flat_map(|m| m.decoders.iter().cloned())
            .collect()
    }

    /// The names of every materialized view of the modules.
    pub fn views(&self) -> Vec<String> {
        self.modules
            .iter()
            .flat_map(|m| m.views.iter().map(|(n, _)| n.clone()))
            .collect()
    }

    /// Every view's and automation's checkpoint and lag: the events matching its query after
    /// its checkpoint ([`lag`](crate::lag)), views first. Also stores them in the lag gauges
    /// of [`Runtime::metrics`]; `GET /metrics` calls it on each scrape.
    pub async fn lags(&self) -> Result<Vec<ConsumerLag>, dcb_core::StoreError> {
        crate::lag::lags(&self.runtime, &self.consumers()).await
    }

    fn consumers(&self) -> Vec<Consumer> {
        let mut all: Vec<Consumer> = self
            .modules
            .iter()
            .flat_map(|m| m.consumers.iter().cloned())
            .collect();
        all.sort_by_key(|c| c.kind == ConsumerKind::Automation);
        all
    }

    /// Rebuilds materialized view `name` from the first event ([`Runtime::rebuild`]); `None`
    /// when no module has a view of that name. Run it while no worker maintains the view.
    pub async fn rebuild_view(
        &self,
        name: &str,
    ) -> Option<Result<Option<dcb_core::Position>, ViewError>> {
        let (_, rebuild) = self
            .modules
            .iter()
            .flat_map(|m| m.views.iter())
            .find(|(n, _)| n == name)?;
        Some(rebuild(self.runtime.clone()).await)
    }

    /// The router: every module's routes, `GET /health` (200 while the store answers, else
    /// 503), `GET /metrics` (Prometheus text, plus any registered [`ExtraMetrics`]),
    /// `GET /openapi.json` ([`Host::openapi`], built once here) and a JSON 404 for anything
    /// else.
    pub fn router(&self) -> Router {
        let consumers = Arc::new(self.consumers());
        let contract = openapi_body(&self.openapi());
        let mut router: Router<Runtime> = Router::new()
            .route(
                "/health",
                get(|State(rt): State<Runtime>| async move {
                    rt.store().head().await.map_err(ApiError::from)?;
                    Ok::<_, ApiError>(axum::Json(serde_json::json!({ "status": "ok" })))
                }),
            )
            .route(
                "/metrics",
                get(move |State(rt): State<Runtime>| {
                    let consumers = consumers.clone();
                    async move {
                        if let Err(error) = crate::lag::lags(&rt, &consumers).await {
                            tracing::warn!(%error, "/metrics: the lags could not be computed");
                        }
                        let mut text = rt.metrics().render();
                        if let Some(extra) = rt.service::<ExtraMetrics>() {
                            text.push_str(&extra.render());
                        }
                        text
                    }
                }),
            )
            .route(
                crate::openapi::OPENAPI_PATH,
                get(move || {
                    let contract = contract.clone();
                    async move { contract.map(|json| ([(CONTENT_TYPE, "application/json")], json)) }
                }),
            );
        for m in &self.modules {
            router = router.merge(m.router.clone());
        }
        router
            .fallback(|| async { ApiError::not_found("no such route") })
            .layer(DefaultBodyLimit::max(self.body_limit))
            .with_state(self.runtime.clone())
    }

    /// Starts every module's workers; they stop when `shutdown` fires.
    pub fn spawn_workers(&self, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
        self.modules
            .iter()
            .flat_map(|m| m.workers.iter())
            .map(|(name, run)| {
                tracing::info!(worker = %name, "starting worker");
                tokio::spawn(run(
                    self.runtime.clone(),
                    shutdown.clone(),
                    self.replica.clone(),
                ))
            })
            .collect()
    }

    /// Serves HTTP on `listener` and runs the workers until `signal` resolves, then drains:
    /// in-flight requests finish, workers stop (automations release their leases).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (trigger, shutdown) = shutdown_channel();
        let workers = self.spawn_workers(shutdown.clone());
        let router = self.router();
        let stop = shutdown.clone();
        let signal_task = tokio::spawn(async move {
            signal.await;
            trigger.trigger();
        });
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await;
        signal_task.abort();
        for w in workers {
            if let Err(e) = w.await {
                tracing::error!(error = %e, "worker panicked");
            }
        }
        served
    }
}
