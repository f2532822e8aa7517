//! Given/when/then for `optin-confirm`: the 60-minute expiry is tested by moving the one test
//! clock that stamps the given events and the decision.

use std::time::Duration;

use fairway_runtime::testing::{given, nothing};

use super::*;

const ADA: &str = "ada@example.com";
const MINUTE: Duration = Duration::from_secs(60);

fn requested(token: &str) -> OptInTokenRequested {
    OptInTokenRequested {
        email: ADA.into(),
        token: token.into(),
    }
}

fn confirm(token: &str) -> ConfirmOptIn {
    ConfirmOptIn {
        email: ADA.into(),
        token: token.into(),
    }
}

fn confirmed() -> OptInConfirmed {
    OptInConfirmed { email: ADA.into() }
}

#[test]
fn the_token_confirms_the_address_within_the_hour() {
    given([requested("t1")])
        .advance(59 * MINUTE)
        .when(confirm("t1"))
        .then([confirmed()]);
}

#[test]
fn exactly_sixty_minutes_is_still_in_time() {
    given([requested("t1")])
        .advance(TOKEN_VALIDITY)
        .when(confirm("t1"))
        .then([confirmed()]);
}

#[test]
fn after_sixty_minutes_the_token_expired() {
    given([requested("t1")])
        .advance(61 * MINUTE)
        .when(confirm("t1"))
        .then_err(ConfirmOptInError::TokenExpired);
}

#[test]
fn a_new_request_restarts_the_hour_and_voids_the_old_token() {
    let scenario = || {
        given([requested("t1")])
            .advance(50 * MINUTE)
            .and(requested("t2"))
            .advance(50 * MINUTE)
    };
    scenario()
        .when(confirm("t1"))
        .then_err(ConfirmOptInError::WrongToken);
    scenario().when(confirm("t2")).then([confirmed()]);
}

#[test]
fn a_wrong_token_is_rejected() {
    given([requested("t1")])
        .when(confirm("nope"))
        .then_err(ConfirmOptInError::WrongToken);
}

#[test]
fn without_a_request_there_is_no_token() {
    nothing()
        .when(confirm("t1"))
        .then_err(ConfirmOptInError::NoToken);
}

#[test]
fn an_address_is_confirmed_once() {
    given([requested("t1")])
        .and(confirmed())
        .when(confirm("t1"))
        .then_err(ConfirmOptInError::AlreadyConfirmed);
}

#[test]
fn the_module_declares_its_route_and_events() {
    let module = module();
    let info = module.info();
    assert_eq!(info.name, "optin-confirm");
    assert_eq!(info.routes[0].path, "/api/optin/{email}/confirm");
    assert_eq!(info.reads, ["OptInTokenRequested", "OptInConfirmed"]);
    assert_eq!(info.appends, ["OptInConfirmed"]);
    assert_eq!(
        info.sensitive_fields.get("OptInTokenRequested"),
        Some(&vec!["token".to_owned()])
    );
}
