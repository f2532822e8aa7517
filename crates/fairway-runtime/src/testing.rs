//! Given/when/then harnesses for commands, views and automations, on the in-memory reference
//! store with a deterministic [`TestEnv`]. Pure and fast; call them from plain `#[test]`
//! functions (they run their own single-threaded executor, so not from inside an async test).
//!
//! ```
//! # use fairway_runtime::{DomainEvent, tag};
//! # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct Opened { id: u64 }
//! # impl DomainEvent for Opened { const TYPE: &'static str = "Opened"; fn tags(&self) -> Vec<String> { vec![tag("account", self.id)] } }
//! use fairway_runtime::testing::given;
//! let events = given([Opened { id: 1 }, Opened { id: 2 }]).events();
//! assert_eq!(events.len(), 2);
//! ```

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dcb_core::{Event, EventStore, MemoryStore, Position, ReadOptions};

use crate::automation::{Automation, AutomationWorker, DeadLetter};
use crate::command::{Command, CommandError};
use crate::decision::{Decide, Outcome};
use crate::env::{Environment, TestEnv};
use crate::event::{NewEvent, Sequenced, restrict_set};
use crate::runtime::Runtime;
use crate::view::{LiveView, MaterializedView};

/// The history a scenario starts from, and the one clock it runs on.
///
/// Every given event is recorded at the scenario's test clock ([`TestEnv`], starting at
/// 2024-01-01T00:00:00Z) as it was when the event was added; [`Given::advance`] moves that clock
/// between events, and `given.env().advance(..)` moves it after the history, before the
/// decision. So a rule on `recorded_at` ("blocked for three days after its release") is tested
/// with the same clock the decision's `ctx.now()` reads.
#[derive(Debug)]
pub struct Given {
    events: Vec<(NewEvent, SystemTime)>,
    env: Arc<TestEnv>,
}

/// A scenario starting from `events` (appended one per position, oldest first, all recorded at
/// the test clock's start).
pub fn given<I, T>(events: I) -> Given
where
    I: IntoIterator<Item = T>,
    T: Into<NewEvent>,
{
    let env = Arc::new(TestEnv::new());
    let now = env.now();
    Given {
        events: events.into_iter().map(|e| (e.into(), now)).collect(),
        env,
    }
}

/// A scenario starting from an empty store.
pub fn nothing() -> Given {
    Given {
        events: Vec::new(),
        env: Arc::new(TestEnv::new()),
    }
}

/// One comparable event: type, tags, JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct Plain {
    /// The type.
    pub event_type: String,
    /// The tags.
    pub tags: Vec<String>,
    /// The data.
    pub data: serde_json::Value,
}

impl Plain {
    fn of_new(e: &NewEvent) -> Plain {
        let data = e
            .json()
            .unwrap_or_else(|err| panic!("expected event does not encode: {err}"));
        Plain {
            event_type: e.event_type().to_owned(),
            tags: e.tags(),
            data,
        }
    }

    fn of_stored(e: &Event) -> Plain {
        let data = serde_json::from_slice(&e.data).unwrap_or(serde_json::Value::Null);
        Plain {
            event_type: e.event_type.to_string(),
            tags: e.tags.iter().map(|t| t.to_string()).collect(),
            data,
        }
    }
}

mod race {
    //! A store that yields to the scheduler before each read and append, so that commands run
    //! together interleave between their read and their append.

    use async_trait::async_trait;
    use dcb_core::{
        AppendRequest, Appended, EventStore, MemoryStore, Query, ReadOptions, ReadStream,
        StoreError,
    };

    pub(super) struct Yielding(pub(super) MemoryStore);

    #[async_trait]
    impl dcb_core::Delegating for Yielding {
        fn inner(&self) -> &dyn EventStore {
            &self.0
        }

        async fn append_request(&self, request: AppendRequest) -> Result<Appended, StoreError> {
            tokio::task::yield_now().await;
            self.0.append_request(request).await
        }

        async fn read(&self, query: Query, options: ReadOptions) -> Result<ReadStream, StoreError> {
            tokio::task::yield_now().await;
            self.0.read(query, options).await
        }
    }
}

fn executor() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the test executor: {e}"))
}

fn expected_list<I, T>(expected: I) -> Vec<Plain>
where
    I: IntoIterator<Item = T>,
    T: Into<NewEvent>,
{
    expected
        .into_iter()
        .map(|e| Plain::of_new(&e.into()))
        .collect()
}

impl std::fmt::Display for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let json = serde_json::json!({
            "type": self.event_type,
            "tags": self.tags,
            "data": self.data,
        });
        match serde_json::to_string_pretty(&json) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{json}"),
        }
    }
}

/// Events as a pretty JSON list, one object per event (type, tags, data): how the harness
/// prints them in failures.
pub fn events_json(events: &[Plain]) -> String {
    if events.is_empty() {
        return "[]".to_owned();
    }
    let items: Vec<String> = events
        .iter()
        .map(|e| e.to_string().replace('\n', "\n  "))
        .collect();
    format!("[\n  {}\n]", items.join(",\n  "))
}

/// Stored events as the harness compares and prints them.
pub fn plain(events: &[Event]) -> Vec<Plain> {
    events.iter().map(Plain::of_stored).collect()
}

#[track_caller]
fn assert_events(what: &str, expected: &[Plain], actual: &[Plain]) {
    if expected != actual {
        panic!(
            "{what}: events differ\n expected: {}\n   actual: {}",
            events_json(expected),
            events_json(actual)
        );
    }
}

impl Given {
    /// One more event of the history, recorded at the test clock's current time.
    pub fn and(mut self, event: impl Into<NewEvent>) -> Given {
        let now = self.env.now();
        self.events.push((event.into(), now));
        self
    }

    /// Moves the test clock forward: events added after this are recorded later, and the
    /// decision (or view, or automation) runs later.
    pub fn advance(self, by: Duration) -> Given {
        self.env.advance(by);
        self
    }

    /// The environment the scenario runs with (its clock can be moved).
    pub fn env(&self) -> Arc<TestEnv> {
        self.env.clone()
    }

    /// The history as store events.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .iter()
            .enumerate()
            .map(|(i, (e, at))| {
                let id = uuid::Uuid::from_u64_pair(u64::MAX, i as u64);
                e.to_event(id, *at)
                    .unwrap_or_else(|err| panic!("given event does not encode: {err}"))
            })
            .collect()
    }

    /// A runtime over a fresh reference store holding the history, and the history's head.
    pub async fn setup(&self) -> (Runtime, MemoryStore, Option<Position>) {
        let store = MemoryStore::new();
        for e in self.events() {
            store
                .append(vec![e], vec![])
                .await
                .unwrap_or_else(|err| panic!("given event rejected by the store: {err}"));
        }
        let head = store
            .head()
            .await
            .unwrap_or_else(|err| panic!("store head: {err}"));
        let rt = Runtime::with_env(Arc::new(store.clone()), self.env.clone());
        (rt, store, head)
    }

    /// Runs a command without services.
    pub fn when<C: Decide<Deps = ()>>(self, command: C) -> When<C> {
        self.when_with(command, ())
    }

    /// Runs a command with its services.
    pub fn when_with<C: Decide>(self, command: C, deps: C::Deps) -> When<C> {
        let outcome = executor().block_on(async {
            let (rt, store, head) = self.setup().await;
            let result = rt.execute(&command, &deps).await;
            let after = store
                .snapshot()
                .into_iter()
                .filter(|e| Some(e.position) > head)
                .map(|e| e.event)
                .collect();
            (result, after)
        });
        When {
            result: outcome.0,
            appended: outcome.1,
        }
    }

    /// Folds a live view over the history.
    pub fn live<V: LiveView>(self, view: V) -> Then<V::State> {
        let state = executor().block_on(async {
            let (rt, _, _) = self.setup().await;
            rt.live(&view)
                .await
                .unwrap_or_else(|e| panic!("live view failed: {e}"))
                .state
        });
        Then { actual: state }
    }

    /// Builds a materialized view over the history and reads `key`.
    pub fn view<V: MaterializedView>(self, view: V, key: &str) -> Then<Option<V::State>> {
        let state = executor().block_on(async {
            let (rt, _, _) = self.setup().await;
            rt.catch_up(&view)
                .await
                .unwrap_or_else(|e| panic!("view update failed: {e}"));
            rt.view_get(&view, key)
                .await
                .unwrap_or_else(|e| panic!("view read failed: {e}"))
        });
        Then { actual: state }
    }

    /// Builds a materialized view over the history and lists every entry whose key starts with
    /// `prefix` (`""` for all), in key order.
    pub fn view_scan<V: MaterializedView>(
        self,
        view: V,
        prefix: &str,
    ) -> Then<Vec<(String, V::State)>> {
        let rows = executor().block_on(async {
            let (rt, _, _) = self.setup().await;
            rt.catch_up(&view)
                .await
                .unwrap_or_else(|e| panic!("view update failed: {e}"));
            let mut rows = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = rt
                    .view_scan(&view, prefix, after.as_deref(), 256)
                    .await
                    .unwrap_or_else(|e| panic!("view scan failed: {e}"));
                let done = page.len() < 256;
                after = page.last().map(|(k, _)| k.clone());
                rows.extend(page);
                if done || after.is_none() {
                    break rows;
                }
            }
        });
        Then { actual: rows }
    }

    /// Runs `n` commands (`command(0)`, …, `command(n - 1)`) concurrently against the history,
    /// each through the runtime's full read–decide–append cycle with its retries. The store
    /// yields to the others before each read and each append, so on the first attempt every
    /// command reads before any appends: they genuinely race on their append conditions, and the
    /// losers re-run (with the real backoff, so a race of 50 takes a fraction of a second).
    pub fn race<C, F>(self, n: usize, command: F) -> Race<C>
    where
        C: Decide<Deps = ()>,
        F: FnMut(usize) -> C,
    {
        let commands: Vec<C> = (0..n).map(command).collect();
        let (outcomes, appended) = executor().block_on(async {
            let (_, store, head) = self.setup().await;
            let rt = Runtime::with_env(Arc::new(race::Yielding(store.clone())), self.env.clone());
            let runs = commands.iter().map(|c| rt.execute(c, &()));
            let outcomes = futures::future::join_all(runs).await;
            let appended = store
                .snapshot()
                .into_iter()
                .filter(|e| Some(e.position) > head)
                .map(|e| e.event)
                .collect();
            (outcomes, appended)
        });
        Race { outcomes, appended }
    }

    /// Maps each trigger of the history to the command the automation would run.
    pub fn automation<A: Automation>(self, automation: A) -> Then<Vec<A::Command>> {
        let query =
            restrict_set::<A::Trigger>(&automation.query()).unwrap_or_else(|e| panic!("{e}"));
        let commands = self
            .events()
            .into_iter()
            .enumerate()
            .filter(|(_, e)| query.matches(e))
            .filter_map(|(i, event)| {
                let stored = dcb_core::SequencedEvent {
                    position: Position::from_u64(i as u64 + 1),
                    event,
                };
                let trigger = Sequenced::<A::Trigger>::decode(stored)
                    .unwrap_or_else(|e| panic!("trigger: {e}"));
                automation.command(&trigger)
            })
            .collect();
        Then { actual: commands }
    }

    /// Runs the automation's worker over the history until every trigger is handled, moving the
    /// test clock to each due retry (at most `max_steps` steps).
    pub fn run_automation<A: Automation>(
        self,
        automation: A,
        deps: <A::Command as Command>::Deps,
        max_steps: usize,
    ) -> AutomationRun {
        let env = self.env.clone();
        let name = automation.name().to_owned();
        executor().block_on(async {
            let (rt, store, head) = self.setup().await;
            let mut worker =
                AutomationWorker::new(rt.clone(), Arc::new(automation), Arc::new(deps), "test");
            let mut steps = 0;
            loop {
                let report = worker
                    .step()
                    .await
                    .unwrap_or_else(|e| panic!("automation step failed: {e}"));
                steps += 1;
                assert!(report.leased, "the test worker must hold the lease");
                if report.caught_up && report.next_retry_ms.is_none() {
                    break;
                }
                if let Some(due) = report.next_retry_ms {
                    let now = crate::env::millis(env.now());
                    env.advance(Duration::from_millis(due.saturating_sub(now)));
                }
                assert!(
                    steps < max_steps,
                    "automation did not settle within {max_steps} steps"
                );
            }
            let appended: Vec<Event> = store
                .read(dcb_core::Query::All, ReadOptions::new().after_opt(head))
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .collect_all()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|e| e.event)
                .collect();
            let dead_letters = rt
                .dead_letters(&name, None, usize::MAX)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            AutomationRun {
                appended,
                dead_letters,
                steps,
            }
        })
    }
}

/// The outcome of a command scenario.
#[derive(Debug)]
pub struct When<C: Decide> {
    /// What the runtime returned.
    pub result: Outcome<C>,
    /// The events appended.
    pub appended: Vec<Event>,
}

impl<C: Decide> When<C>
where
    C::Error: Debug,
    C::Output: Debug,
{
    /// Asserts the command succeeded and appended exactly `expected` (type, tags, data).
    #[track_caller]
    pub fn then<I, T>(self, expected: I)
    where
        I: IntoIterator<Item = T>,
        T: Into<NewEvent>,
    {
        if let Err(e) = &self.result {
            panic!("expected success, got error: {e:?}");
        }
        let actual: Vec<Plain> = self.appended.iter().map(Plain::of_stored).collect();
        assert_events("appended", &expected_list(expected), &actual);
    }

    /// Asserts the command succeeded, appended exactly `expected` and its decision returned
    /// `output`.
    #[track_caller]
    pub fn then_output<I, T>(self, expected: I, output: C::Output)
    where
        I: IntoIterator<Item = T>,
        T: Into<NewEvent>,
        C::Output: PartialEq,
    {
        match &self.result {
            Ok(done) if done.output != output => panic!(
                "output differs\n expected: {output:#?}\n   actual: {:#?}",
                done.output
            ),
            _ => {}
        }
        self.then(expected);
    }

    /// Asserts the command succeeded and appended nothing.
    #[track_caller]
    pub fn then_nothing(self) {
        self.then(Vec::<NewEvent>::new());
    }

    /// Asserts the command was rejected with `expected` and appended nothing.
    #[track_caller]
    pub fn then_err(self, expected: C::Error)
    where
        C::Error: PartialEq,
    {
        match &self.result {
            Err(CommandError::Rejected(e)) if *e == expected => {}
            Err(e) => panic!("expected rejection {expected:?}, got error: {e:?}"),
            Ok(x) => panic!(
                "expected rejection {expected:?}, got success: {x:?} appending {}",
                events_json(&plain(&self.appended))
            ),
        }
        assert!(
            self.appended.is_empty(),
            "a rejected command appended {}",
            events_json(&plain(&self.appended))
        );
    }
}

/// The outcome of [`Given::race`]: each command's result, in the order they were made, and
/// every event appended.
#[derive(Debug)]
pub struct Race<C: Decide> {
    /// What each command returned, in command order.
    pub outcomes: Vec<Outcome<C>>,
    /// Every event appended by the commands, in position order.
    pub appended: Vec<Event>,
}

impl<C: Decide> Race<C>
where
    C::Error: Debug,
    C::Output: Debug,
{
    /// How many commands succeeded.
    pub fn successes(&self) -> usize {
        self.outcomes.iter().filter(|o| o.is_ok()).count()
    }

    /// The rejections, in command order.
    pub fn rejections(&self) -> Vec<&C::Error> {
        self.outcomes
            .iter()
            .filter_map(|o| o.as_ref().err().and_then(CommandError::rejection))
            .collect()
    }

    /// The most attempts any command took (above 1 when they really conflicted).
    pub fn max_attempts(&self) -> u32 {
        self.outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().map(|e| e.attempts))
            .max()
            .unwrap_or(0)
    }

    /// Asserts that exactly `successes` commands succeeded and every other one was rejected
    /// (none failed for another reason, such as running out of retries).
    #[track_caller]
    pub fn then_successes(self, successes: usize) -> Race<C> {
        let others: Vec<String> = self
            .outcomes
            .iter()
            .filter_map(|o| match o {
                Err(CommandError::Rejected(_)) | Ok(_) => None,
                Err(e) => Some(format!("{e:?}")),
            })
            .collect();
        if self.successes() != successes || !others.is_empty() {
            panic!(
                "expected {successes} successes and only rejections otherwise, got {} successes, \
                 rejections {:?}, other errors {others:?}; appended {}",
                self.successes(),
                self.rejections(),
                events_json(&plain(&self.appended))
            );
        }
        self
    }
}

/// A computed value to compare.
#[derive(Debug)]
pub struct Then<S> {
    /// The value.
    pub actual: S,
}

impl<S: PartialEq + Debug> Then<S> {
    /// Asserts the value.
    #[track_caller]
    pub fn then(self, expected: S) {
        if self.actual != expected {
            panic!(
                "state differs\n expected: {expected:#?}\n   actual: {:#?}",
                self.actual
            );
        }
    }
}

/// The outcome of running an automation over a history.
#[derive(Debug)]
pub struct AutomationRun {
    /// Events its commands appended.
    pub appended: Vec<Event>,
    /// Its dead-letter queue at the end.
    pub dead_letters: Vec<DeadLetter>,
    /// Worker steps taken.
    pub steps: usize,
}

impl AutomationRun {
    /// Asserts the appended events (type, tags, data).
    #[track_caller]
    pub fn then<I, T>(self, expected: I) -> AutomationRun
    where
        I: IntoIterator<Item = T>,
        T: Into<NewEvent>,
    {
        let actual: Vec<Plain> = self.appended.iter().map(Plain::of_stored).collect();
        assert_events(
            "appended by the automation",
            &expected_list(expected),
            &actual,
        );
        self
    }

    /// Asserts how many triggers ended in the dead-letter queue.
    #[track_caller]
    pub fn then_dead_letters(self, expected: usize) -> AutomationRun {
        if self.dead_letters.len() != expected {
            panic!(
                "expected {expected} dead letters, got {:#?}",
                self.dead_letters
            );
        }
        self
    }
}
