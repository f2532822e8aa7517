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
use std::time::{Duration, UNIX_EPOCH};

use dcb_core::{Event, EventStore, MemoryStore, Position, ReadOptions};

use crate::automation::{Automation, AutomationWorker, DeadLetter};
use crate::command::{Command, CommandError, Executed};
use crate::env::TestEnv;
use crate::event::{EventSet, NewEvent, Sequenced, restrict};
use crate::runtime::Runtime;
use crate::view::{LiveView, MaterializedView};

/// The history a scenario starts from.
#[derive(Debug)]
pub struct Given {
    events: Vec<NewEvent>,
    env: Arc<TestEnv>,
}

/// A scenario starting from `events` (appended one per position, oldest first).
pub fn given<I, T>(events: I) -> Given
where
    I: IntoIterator<Item = T>,
    T: Into<NewEvent>,
{
    Given {
        events: events.into_iter().map(Into::into).collect(),
        env: Arc::new(TestEnv::new()),
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
            event_type: e.event_type.clone(),
            tags: e.tags.clone(),
            data,
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

#[track_caller]
fn assert_events(what: &str, expected: &[Plain], actual: &[Plain]) {
    if expected != actual {
        panic!("{what}: events differ\n expected: {expected:#?}\n   actual: {actual:#?}");
    }
}

impl Given {
    /// One more event of the history.
    pub fn and(mut self, event: impl Into<NewEvent>) -> Given {
        self.events.push(event.into());
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
            .map(|(i, e)| {
                let id = uuid::Uuid::from_u64_pair(u64::MAX, i as u64);
                e.to_event(id, UNIX_EPOCH)
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
    pub fn when<C: Command<Deps = ()>>(self, command: C) -> When<C> {
        self.when_with(command, ())
    }

    /// Runs a command with its services.
    pub fn when_with<C: Command>(self, command: C, deps: C::Deps) -> When<C> {
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

    /// Maps each trigger of the history to the command the automation would run.
    pub fn automation<A: Automation>(self, automation: A) -> Then<Vec<A::Command>> {
        let query =
            restrict(&automation.query(), A::Trigger::TYPES).unwrap_or_else(|e| panic!("{e}"));
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
                    let now = crate::env::millis(crate::env::Environment::now(&*env));
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
pub struct When<C: Command> {
    /// What the runtime returned.
    pub result: Result<Executed, CommandError<C::Error>>,
    /// The events appended.
    pub appended: Vec<Event>,
}

impl<C: Command> When<C>
where
    C::Error: Debug,
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
                "expected rejection {expected:?}, got success: {x:?} appending {:#?}",
                self.appended
            ),
        }
        assert!(
            self.appended.is_empty(),
            "a rejected command appended {:#?}",
            self.appended
        );
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
