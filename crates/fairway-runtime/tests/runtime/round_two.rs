//! Issue 15, "writing modules, round two": the harness's single clock and JSON output, view
//! scans, races, decision outputs, decision models and the retry budget.

use std::time::Duration;

use dcb_core::Query;
use fairway_runtime::testing::{given, nothing};
use fairway_runtime::{
    Command, CommandError, Ctx, Decide, Decision, DomainError, DomainEvent, Environment, NewEvent,
    Projection, RECORDED_AT_KEY, RetryPolicy, Sequenced, TestEnv, tag,
};
use serde::{Deserialize, Serialize};

// ---- a username that stays blocked for three days after its release ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameReleased {
    pub name: String,
}

impl DomainEvent for NameReleased {
    const TYPE: &'static str = "NameReleased";
    fn tags(&self) -> Vec<String> {
        vec![tag("name", &self.name)]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameClaimed {
    pub name: String,
    pub owner: String,
}

impl DomainEvent for NameClaimed {
    const TYPE: &'static str = "NameClaimed";
    fn tags(&self) -> Vec<String> {
        vec![tag("name", &self.name)]
    }
}

fairway_runtime::event_set! { pub enum NameEvents { NameReleased(NameReleased), NameClaimed(NameClaimed) } }

const GRACE: Duration = Duration::from_secs(3 * 24 * 3600);

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ClaimError {
    #[error("taken")]
    Taken,
    #[error("released too recently")]
    InGracePeriod,
}

impl DomainError for ClaimError {
    fn code(&self) -> &'static str {
        match self {
            ClaimError::Taken => "taken",
            ClaimError::InGracePeriod => "in_grace_period",
        }
    }
}

pub struct Claim {
    pub name: String,
    pub owner: String,
}

#[derive(Debug, Default)]
pub enum NameState {
    #[default]
    Free,
    Taken,
    Released(std::time::SystemTime),
}

impl Command for Claim {
    type Events = NameEvents;
    type State = NameState;
    type Error = ClaimError;
    type Deps = ();
    fn query(&self) -> Query {
        Query::tagged(tag("name", &self.name))
    }
    fn evolve(state: &mut NameState, e: &Sequenced<NameEvents>) {
        *state = match &e.event {
            NameEvents::NameClaimed(_) => NameState::Taken,
            NameEvents::NameReleased(_) => {
                NameState::Released(e.metadata.recorded_at.unwrap_or(std::time::UNIX_EPOCH))
            }
        };
    }
    fn decide(&self, state: &NameState, ctx: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, ClaimError> {
        match state {
            NameState::Taken => Err(ClaimError::Taken),
            NameState::Released(at) if ctx.now() < *at + GRACE => Err(ClaimError::InGracePeriod),
            _ => Ok(vec![
                NameClaimed {
                    name: self.name.clone(),
                    owner: self.owner.clone(),
                }
                .into(),
            ]),
        }
    }
}

fn claim(owner: &str) -> Claim {
    Claim {
        name: "ada".into(),
        owner: owner.into(),
    }
}

fn released() -> NameReleased {
    NameReleased { name: "ada".into() }
}

/// Issue 15 #3: given events were stamped at 1970 while decisions ran at 2024.
#[test]
fn given_events_are_recorded_at_the_test_clock() {
    let g = given([released()]);
    let stamped = g.events()[0].metadata.get(RECORDED_AT_KEY).cloned();
    assert_eq!(
        stamped,
        Some(fairway_runtime::millis(TestEnv::new().now()).to_string())
    );
    given([released()])
        .when(claim("bob"))
        .then_err(ClaimError::InGracePeriod);
}

/// The clock moves for the decision after the history was recorded.
#[test]
fn given_env_advance_moves_only_the_decision() {
    let g = given([released()]);
    g.env().advance(GRACE);
    g.when(claim("bob")).then([NameClaimed {
        name: "ada".into(),
        owner: "bob".into(),
    }]);
}

/// `Given::advance` between events: the release is recorded two days after the start.
#[test]
fn given_advance_between_events_stamps_later_events_later() {
    let g = nothing()
        .advance(Duration::from_secs(2 * 24 * 3600))
        .and(released());
    g.env().advance(GRACE - Duration::from_secs(1));
    g.when(claim("bob")).then_err(ClaimError::InGracePeriod);
}

fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(f).expect_err("the assertion must fail");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Issue 15 #7: `then_err` on an unexpected success printed event data as byte arrays.
#[test]
fn then_err_on_success_prints_the_events_as_json() {
    let msg = panic_message(|| nothing().when(claim("bob")).then_err(ClaimError::Taken));
    assert!(msg.contains("\"owner\": \"bob\""), "{msg}");
    assert!(msg.contains("NameClaimed"), "{msg}");
    assert!(!msg.contains("data: ["), "{msg}");
}

/// `then` with different events prints both lists as JSON.
#[test]
fn then_mismatch_prints_the_events_as_json() {
    let msg = panic_message(|| {
        nothing().when(claim("bob")).then([NameClaimed {
            name: "ada".into(),
            owner: "eve".into(),
        }])
    });
    assert!(msg.contains("\"owner\": \"eve\""), "{msg}");
    assert!(msg.contains("\"owner\": \"bob\""), "{msg}");
    assert!(!msg.contains("String(\""), "{msg}");
}

// ---- a course with a fixed number of seats: races and view scans ----

/// Issue 15 #7: a helper to race N commands; 8 claims of one name, exactly one wins.
#[test]
fn race_of_eight_claims_has_one_winner() {
    let race = nothing()
        .race(8, |i| claim(&format!("user{i}")))
        .then_successes(1);
    assert_eq!(race.rejections(), vec![&ClaimError::Taken; 7]);
    assert_eq!(race.appended.len(), 1);
}

/// Issue 15 #7: list reads of a materialized view in the harness (not only one key).
#[test]
fn view_scan_lists_the_entries_in_key_order() {
    use crate::example::{Directory, Entry, UserRegistered};
    let reg = |id: &str, name: &str| UserRegistered {
        user_id: id.into(),
        email: format!("{name}@example.com"),
        username: name.into(),
    };
    let entry = |name: &str| Entry {
        username: name.into(),
        email: format!("{name}@example.com"),
        welcomed: false,
    };
    given([reg("u2", "bob"), reg("u1", "ada"), reg("x9", "eve")])
        .view_scan(Directory, "u")
        .then(vec![
            ("u1".into(), entry("ada")),
            ("u2".into(), entry("bob")),
        ]);
}

// ---- gapless invoice numbers: decision outputs and the retry budget ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceNumbered {
    pub number: u64,
}

impl DomainEvent for InvoiceNumbered {
    const TYPE: &'static str = "InvoiceNumbered";
    fn tags(&self) -> Vec<String> {
        vec!["invoices".into()]
    }
}

fairway_runtime::event_set! { pub enum InvoiceEvents { InvoiceNumbered(InvoiceNumbered) } }

fn last_number() -> Projection<InvoiceEvents, u64> {
    Projection::new(Query::tagged("invoices"), 0, |n, e| match &e.event {
        InvoiceEvents::InvoiceNumbered(x) => *n = x.number,
    })
    .last(1)
}

fn invoices_counted() -> Projection<InvoiceEvents, u64> {
    Projection::new(Query::tagged("invoices"), 0, |n, _| *n += 1)
}

#[derive(Default)]
pub struct NextInvoice {
    pub retry: RetryPolicy,
}

impl Decide for NextInvoice {
    type Events = InvoiceEvents;
    type Model = Projection<InvoiceEvents, u64>;
    type Output = u64;
    type Error = std::convert::Infallible;
    type Deps = ();
    fn model(&self) -> Self::Model {
        last_number()
    }
    fn decide(&self, last: &u64, _: &Ctx<'_, ()>) -> Result<Decision<u64>, Self::Error> {
        let number = last + 1;
        Ok(Decision::new(
            vec![InvoiceNumbered { number }.into()],
            number,
        ))
    }
    fn retry(&self) -> RetryPolicy {
        self.retry
    }
}

fn numbered(n: u64) -> InvoiceNumbered {
    InvoiceNumbered { number: n }
}

/// Issue 15 #4: `execute` hands back what `decide` computed, with the positions.
#[test]
fn decision_output_is_handed_back_with_the_positions() {
    given([numbered(1), numbered(2)])
        .when(NextInvoice::default())
        .then_output([numbered(3)], 3);
    let when = nothing().when(NextInvoice::default());
    let done = when.result.as_ref().expect("numbered");
    assert_eq!((done.output, done.positions.len()), (1, 1));
}

/// A `last(1)` projection and a full one over the same events: each folds only its own read.
#[test]
fn projections_fold_only_their_own_reads() {
    struct Peek;
    impl Decide for Peek {
        type Events = InvoiceEvents;
        type Model = (
            Projection<InvoiceEvents, u64>,
            Projection<InvoiceEvents, u64>,
        );
        type Output = (u64, u64);
        type Error = std::convert::Infallible;
        type Deps = ();
        fn model(&self) -> Self::Model {
            (
                invoices_counted(),
                Projection::new(Query::tagged("invoices"), 0, |n, _| *n += 1).last(1),
            )
        }
        fn decide(
            &self,
            (all, last): &(u64, u64),
            _: &Ctx<'_, ()>,
        ) -> Result<Decision<(u64, u64)>, Self::Error> {
            Ok(Decision::new(Vec::new(), (*all, *last)))
        }
    }
    given([numbered(1), numbered(2), numbered(3)])
        .when(Peek)
        .then_output(Vec::<NewEvent>::new(), (3, 1));
}

/// Issue 15 #6: 50 concurrent gapless-invoice commands on one hot boundary. With the old fixed
/// 5 attempts most of them gave up; within the 2 s budget all succeed, numbers 1..=50, no gap,
/// no duplicate.
#[test]
fn fifty_concurrent_invoice_numbers_all_succeed_without_gap_or_duplicate() {
    let race = nothing()
        .race(50, |_| NextInvoice::default())
        .then_successes(50);
    let mut numbers: Vec<u64> = race
        .outcomes
        .iter()
        .map(|o| o.as_ref().map(|d| d.output).unwrap_or(0))
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=50).collect::<Vec<u64>>());
    assert!(race.max_attempts() > 1, "they did not race");
}

/// The old behaviour, still available: a fixed number of attempts gives up on a hot boundary.
#[test]
fn a_small_attempt_ceiling_still_gives_up_under_contention() {
    let race = nothing().race(20, |_| NextInvoice {
        retry: RetryPolicy::attempts(2),
    });
    let gave_up = race
        .outcomes
        .iter()
        .filter(|o| matches!(o, Err(CommandError::Contention { attempts: 2 })))
        .count();
    assert!(gave_up > 0, "{:?}", race.outcomes);
    assert_eq!(race.successes() + gave_up, 20);
}

/// Issue 15 #6 on the durable embedded store (fsync per group commit) with real threads: 50
/// concurrent gapless-invoice commands all succeed within the default budget, numbers 1..=50.
/// Prints the wall time and the attempts it took (figures for docs/guide.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_invoice_numbers_on_the_embedded_store() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = dcb_embedded::EmbeddedStore::open(dir.path()).unwrap();
    let rt = fairway_runtime::Runtime::new(Arc::new(store));
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.execute(&NextInvoice::default(), &()).await })
        })
        .collect();
    let mut numbers = Vec::new();
    let mut attempts = Vec::new();
    for t in tasks {
        let done = t
            .await
            .unwrap()
            .expect("every creation succeeds within the budget");
        numbers.push(done.output);
        attempts.push(done.attempts);
    }
    let elapsed = started.elapsed();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=50).collect::<Vec<u64>>());
    attempts.sort_unstable();
    println!(
        "50 concurrent invoice numbers on the embedded store: {elapsed:?}, attempts median {} max {}",
        attempts[25], attempts[49]
    );
}

/// A store on which every append meets a conflicting write.
struct AlwaysConflicting(dcb_core::MemoryStore);

#[async_trait::async_trait]
impl dcb_core::Delegating for AlwaysConflicting {
    fn inner(&self) -> &dyn dcb_core::EventStore {
        &self.0
    }

    async fn append_request(
        &self,
        _: dcb_core::AppendRequest,
    ) -> Result<dcb_core::Appended, dcb_core::StoreError> {
        Err(dcb_core::StoreError::ConditionFailed { condition: 0 })
    }
}

/// The time budget, not the attempt ceiling, ends the retries: with a 200 ms budget the command
/// gives up after a few attempts (each pause is at least 1 ms, so 1 000 attempts could not fit),
/// and a zero budget makes exactly one attempt.
#[tokio::test]
async fn the_retry_budget_ends_the_retries() {
    use std::sync::Arc;
    let rt =
        fairway_runtime::Runtime::new(Arc::new(AlwaysConflicting(dcb_core::MemoryStore::new())));
    let within = |budget| NextInvoice {
        retry: RetryPolicy::within(budget),
    };
    match rt.execute(&within(Duration::from_millis(200)), &()).await {
        Err(CommandError::Contention { attempts }) => {
            assert!(attempts >= 2, "it retried ({attempts})");
            assert!(attempts < RetryPolicy::default().max_attempts, "{attempts}");
        }
        other => panic!("expected contention, got {other:?}"),
    }
    match rt.execute(&within(Duration::ZERO), &()).await {
        Err(CommandError::Contention { attempts }) => assert_eq!(attempts, 1),
        other => panic!("expected contention, got {other:?}"),
    }
}
