//! Given/when/then for email changes, including the 72-hour release window.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fairway_runtime::NewEvent;
use fairway_runtime::testing::{given, nothing};
use users_change_email::{ChangeEmail, ChangeEmailError};
use users_events::{
    Email, RELEASE_WINDOW, UserEmailChanged, UserId, UserPasswordChanged, UserRegistered, Username,
};

const T0: u64 = 1_704_067_200_000;

fn registered(id: &str, email: &str) -> NewEvent {
    UserRegistered {
        user_id: UserId::parse(id).unwrap(),
        username: Username::parse(id).unwrap(),
        email: Email::parse(email).unwrap(),
        password_hash: "h".into(),
        registered_at_ms: T0,
    }
    .into()
}

fn changed(id: &str, from: &str, to: &str, at_ms: u64) -> NewEvent {
    UserEmailChanged {
        user_id: UserId::parse(id).unwrap(),
        previous_email: Email::parse(from).unwrap(),
        email: Email::parse(to).unwrap(),
        changed_at_ms: at_ms,
    }
    .into()
}

fn change(id: &str, to: &str) -> ChangeEmail {
    ChangeEmail {
        user_id: UserId::parse(id).unwrap(),
        email: Email::parse(to).unwrap(),
    }
}

#[test]
fn a_user_changes_their_email() {
    given([registered("u1", "a@x.io")])
        .when(change("u1", "b@x.io"))
        .then([changed("u1", "a@x.io", "b@x.io", T0)]);
}

#[test]
fn the_last_change_is_the_current_email() {
    given([
        registered("u1", "a@x.io"),
        changed("u1", "a@x.io", "b@x.io", T0),
    ])
    .and(UserPasswordChanged {
        user_id: UserId::parse("u1").unwrap(),
        password_hash: "h2".into(),
        changed_at_ms: T0,
    })
    .when(change("u1", "c@x.io"))
    .then([changed("u1", "b@x.io", "c@x.io", T0)]);
}

#[test]
fn the_same_email_again_changes_nothing() {
    given([registered("u1", "a@x.io")])
        .when(change("u1", "A@x.io"))
        .then_nothing();
}

#[test]
fn an_unknown_user_cannot_change_an_email() {
    nothing()
        .when(change("u1", "a@x.io"))
        .then_err(ChangeEmailError::UnknownUser);
}

#[test]
fn an_email_held_by_another_user_is_refused() {
    given([registered("u1", "a@x.io"), registered("u2", "b@x.io")])
        .when(change("u1", "b@x.io"))
        .then_err(ChangeEmailError::EmailTaken);
}

#[test]
fn an_email_another_user_released_less_than_72_hours_ago_is_refused() {
    let g = given([
        registered("u1", "a@x.io"),
        registered("u2", "b@x.io"),
        changed("u2", "b@x.io", "c@x.io", T0),
    ]);
    g.env().advance(RELEASE_WINDOW - Duration::from_secs(1));
    g.when(change("u1", "b@x.io"))
        .then_err(ChangeEmailError::EmailRecentlyReleased);
}

#[test]
fn an_email_another_user_released_72_hours_ago_is_free() {
    let g = given([
        registered("u1", "a@x.io"),
        registered("u2", "b@x.io"),
        changed("u2", "b@x.io", "c@x.io", T0),
    ]);
    g.env().advance(RELEASE_WINDOW);
    let now = T0 + u64::try_from(RELEASE_WINDOW.as_millis()).unwrap();
    g.when(change("u1", "b@x.io"))
        .then([changed("u1", "a@x.io", "b@x.io", now)]);
}

#[test]
fn a_user_may_take_back_their_own_released_email_at_once() {
    given([
        registered("u1", "a@x.io"),
        changed("u1", "a@x.io", "b@x.io", T0),
    ])
    .when(change("u1", "a@x.io"))
    .then([changed("u1", "b@x.io", "a@x.io", T0)]);
}
