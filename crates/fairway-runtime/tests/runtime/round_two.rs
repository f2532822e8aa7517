//! Issue 15, "writing modules, round two": the harness's single clock and JSON output, view
//! scans, races, decision outputs, decision models and the retry budget.

use std::time::Duration;

use dcb_core::Query;
use fairway_runtime::testing::{given, nothing};
use fairway_runtime::{
    Command, Ctx, DomainError, DomainEvent, Environment, NewEvent, RECORDED_AT_KEY, Sequenced,
    TestEnv, tag,
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
