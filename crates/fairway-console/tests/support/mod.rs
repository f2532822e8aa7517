//! A small host for the console tests: a greeting command (`POST /greetings/{name}`), a
//! materialized view counting greetings, and an automation that answers each greeting with a
//! `GreetingAnswered` event — and fails while the shared `outage` switch is on, so that its
//! trigger lands in the dead-letter queue.

#![allow(dead_code, clippy::unwrap_used)]

pub mod webdriver;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dcb_core::{AppendRequest, Appended, EventStore, MemoryStore, Query, StoreError};
use fairway_console::{AdminToken, Console};
use fairway_runtime::http::ApiError;
use fairway_runtime::{
    Automation, AutomationSettings, Command, Ctx, DomainError, DomainEvent, ExtraMetrics, Host,
    MaterializedView, Module, ModuleKind, NewEvent, Runtime, Sequenced, Shutdown, ShutdownTrigger,
    shutdown_channel, tag,
};
use serde::{Deserialize, Serialize};

pub const TOKEN: &str = "test-admin-token-0123456789";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Greeted {
    pub name: String,
    pub message: String,
    /// Declared sensitive: the console shows it as "[redacted]".
    #[serde(default)]
    pub secret: String,
}
impl DomainEvent for Greeted {
    const TYPE: &'static str = "Greeted";
    const SENSITIVE_FIELDS: &'static [&'static str] = &["secret"];
    fn tags(&self) -> Vec<String> {
        vec![tag("person", &self.name)]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GreetingAnswered {
    pub name: String,
}
impl DomainEvent for GreetingAnswered {
    const TYPE: &'static str = "GreetingAnswered";
    fn tags(&self) -> Vec<String> {
        vec![tag("person", &self.name)]
    }
}

fairway_runtime::event_set! { pub enum GreetEvents { Greeted(Greeted) } }
fairway_runtime::event_set! { pub enum AnswerEvents { GreetingAnswered(GreetingAnswered) } }

pub struct Greet {
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;
impl DomainError for Never {
    fn code(&self) -> &'static str {
        "never"
    }
}

impl Command for Greet {
    type Events = GreetEvents;
    type State = ();
    type Error = Never;
    type Deps = ();
    fn query(&self) -> Query {
        Query::tagged(tag("person", &self.name))
    }
    fn evolve(_: &mut (), _: &Sequenced<GreetEvents>) {}
    fn decide(&self, _: &(), _: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, Never> {
        Ok(vec![
            Greeted {
                name: self.name.clone(),
                message: format!("hello {}", self.name),
                secret: format!("s3cret-{}", self.name),
            }
            .into(),
        ])
    }
}

async fn greet(
    State(rt): State<Runtime>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let done = rt.execute(&Greet { name }, &()).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "position": done.last() })),
    ))
}

/// Answers a greeting; fails while the switch is on.
pub struct Answer {
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the answering service is down")]
pub struct Down;
impl DomainError for Down {
    fn code(&self) -> &'static str {
        "down"
    }
}

impl Command for Answer {
    type Events = AnswerEvents;
    type State = bool;
    type Error = Down;
    type Deps = Arc<AtomicBool>;
    fn query(&self) -> Query {
        Query::tagged(tag("person", &self.name))
    }
    fn evolve(answered: &mut bool, _: &Sequenced<AnswerEvents>) {
        *answered = true;
    }
    fn decide(
        &self,
        answered: &bool,
        ctx: &Ctx<'_, Arc<AtomicBool>>,
    ) -> Result<Vec<NewEvent>, Down> {
        if ctx.deps().load(Ordering::SeqCst) {
            return Err(Down);
        }
        if *answered {
            return Ok(Vec::new());
        }
        Ok(vec![
            GreetingAnswered {
                name: self.name.clone(),
            }
            .into(),
        ])
    }
}

pub struct Answering;

impl Automation for Answering {
    type Trigger = GreetEvents;
    type Command = Answer;
    fn name(&self) -> &str {
        "answering"
    }
    fn command(&self, trigger: &Sequenced<GreetEvents>) -> Option<Answer> {
        let GreetEvents::Greeted(g) = &trigger.event;
        Some(Answer {
            name: g.name.clone(),
        })
    }
    fn settings(&self) -> AutomationSettings {
        AutomationSettings {
            max_attempts: 1,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            poll_interval: Duration::from_millis(50),
            ..AutomationSettings::default()
        }
    }
}

pub struct GreetingCount;

impl MaterializedView for GreetingCount {
    type Events = GreetEvents;
    type State = u64;
    fn name(&self) -> &str {
        "greeting-count"
    }
    fn keys(&self, _: &Sequenced<GreetEvents>) -> Vec<String> {
        vec!["all".to_owned()]
    }
    fn evolve(&self, _: &str, state: &mut Option<u64>, _: &Sequenced<GreetEvents>) {
        *state = Some(state.unwrap_or(0) + 1);
    }
}

pub fn modules(outage: Arc<AtomicBool>) -> Vec<Module> {
    vec![
        Module::new(ModuleKind::Command, "greet")
            .describe("Greets someone")
            .post("/greetings/{name}", greet)
            .command::<Greet>()
            .appends::<Greeted>(),
        Module::new(ModuleKind::View, "greeting-count")
            .describe("Counts greetings")
            .materialized(GreetingCount),
        Module::new(ModuleKind::Automation, "answering")
            .describe("Answers each greeting")
            .automation(Answering, outage)
            .appends::<GreetingAnswered>(),
    ]
}

/// A host with the console mounted at `/console`.
pub struct Fixture {
    pub runtime: Runtime,
    pub host: Arc<Host>,
    pub outage: Arc<AtomicBool>,
    pub app: axum::Router,
    pub stop: ShutdownTrigger,
    pub shutdown: Shutdown,
}

/// A store that counts appends and condition failures, the way the host does, and renders them
/// as the host's `ExtraMetrics` would.
pub struct CountingStore {
    inner: MemoryStore,
    appends: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl dcb_core::Delegating for CountingStore {
    fn inner(&self) -> &dyn EventStore {
        &self.inner
    }

    async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
        let r = self.inner.append_request(request).await;
        match &r {
            Ok(_) => self.appends.fetch_add(1, Ordering::Relaxed),
            Err(StoreError::ConditionFailed { .. }) => {
                self.failures.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => 0,
        };
        r
    }
}

pub fn fixture(sample_every: Duration) -> Fixture {
    fixture_with(sample_every, |c| c)
}

/// [`fixture`] with more console settings (e.g. `|c| c.max_live_tails(3)`).
pub fn fixture_with(sample_every: Duration, configure: impl FnOnce(Console) -> Console) -> Fixture {
    let appends = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let store = Arc::new(CountingStore {
        inner: MemoryStore::new(),
        appends: appends.clone(),
        failures: failures.clone(),
    });
    let metrics = ExtraMetrics::new(move || {
        format!(
            "fairway_store_appends_total {}\nfairway_store_condition_failures_total {}\n",
            appends.load(Ordering::Relaxed),
            failures.load(Ordering::Relaxed)
        )
    });
    let runtime = Runtime::new(store).with_service(metrics);
    let outage = Arc::new(AtomicBool::new(false));
    let host = Arc::new(Host::new(runtime.clone(), modules(outage.clone())));
    let (stop, shutdown) = shutdown_channel();
    let console = Console::new(
        runtime.clone(),
        host.clone(),
        AdminToken::new(TOKEN).unwrap(),
    )
    .with_shutdown(shutdown.clone())
    .sample_every(sample_every);
    let app = configure(console).mount(host.router(), "/console");
    Fixture {
        runtime,
        host,
        outage,
        app,
        stop,
        shutdown,
    }
}
