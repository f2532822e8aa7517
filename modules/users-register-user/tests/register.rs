//! Given/when/then for registration, including the 72-hour release window.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fairway_runtime::NewEvent;
use fairway_runtime::testing::{given, nothing};
use users_events::{
    Email, RELEASE_WINDOW, UserDetailsChanged, UserEmailChanged, UserId, UserRegistered, Username,
};
use users_register_user::{RegisterError, RegisterUser};

/// 2024-01-01T00:00:00Z, the harness clock's start, in ms.
const T0: u64 = 1_704_067_200_000;

fn registered(id: &str, name: &str, email: &str) -> UserRegistered {
    UserRegistered {
        user_id: UserId::parse(id).unwrap(),
        username: Username::parse(name).unwrap(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$hash".into(),
        registered_at_ms: T0,
    }
}

fn register(id: &str, name: &str, email: &str) -> RegisterUser {
    RegisterUser {
        user_id: UserId::parse(id).unwrap(),
        username: Username::parse(name).unwrap(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$hash".into(),
    }
}

fn email_changed(id: &str, from: &str, to: &str, at_ms: u64) -> NewEvent {
    UserEmailChanged {
        user_id: UserId::parse(id).unwrap(),
        previous_email: Email::parse(from).unwrap(),
        email: Email::parse(to).unwrap(),
        changed_at_ms: at_ms,
    }
    .into()
}

#[test]
fn a_new_user_registers() {
    nothing()
        .when(register("u1", "ann", "ann@x.io"))
        .then([registered("u1", "ann", "ann@x.io")]);
}

#[test]
fn an_id_registers_once() {
    given([registered("u1", "ann", "ann@x.io")])
        .when(register("u1", "other", "other@x.io"))
        .then_err(RegisterError::UserExists);
}

#[test]
fn a_username_held_by_another_user_is_refused() {
    given([registered("u1", "ann", "ann@x.io")])
        .when(register("u2", "ann", "bob@x.io"))
        .then_err(RegisterError::UsernameTaken);
}

#[test]
fn a_username_given_up_is_free_again() {
    given([registered("u1", "ann", "ann@x.io")])
        .and(UserDetailsChanged {
            user_id: UserId::parse("u1").unwrap(),
            username: Some(Username::parse("anna").unwrap()),
            previous_username: Some(Username::parse("ann").unwrap()),
            bio: None,
            image: None,
        })
        .when(register("u2", "ann", "bob@x.io"))
        .then([registered("u2", "ann", "bob@x.io")]);
}

#[test]
fn a_username_taken_by_a_rename_is_refused() {
    given([registered("u1", "ann", "ann@x.io")])
        .and(UserDetailsChanged {
            user_id: UserId::parse("u1").unwrap(),
            username: Some(Username::parse("bob").unwrap()),
            previous_username: Some(Username::parse("ann").unwrap()),
            bio: None,
            image: None,
        })
        .when(register("u2", "bob", "bob@x.io"))
        .then_err(RegisterError::UsernameTaken);
}

#[test]
fn an_email_held_by_another_user_is_refused_whatever_its_case() {
    given([registered("u1", "ann", "ann@x.io")])
        .when(register("u2", "bob", "ANN@X.IO"))
        .then_err(RegisterError::EmailTaken);
}

#[test]
fn an_email_taken_by_a_change_is_refused() {
    given([registered("u1", "ann", "ann@x.io")])
        .and(email_changed("u1", "ann@x.io", "new@x.io", T0))
        .when(register("u2", "bob", "new@x.io"))
        .then_err(RegisterError::EmailTaken);
}

#[test]
fn an_email_released_less_than_72_hours_ago_is_refused() {
    let g = given([registered("u1", "ann", "ann@x.io")])
        .and(email_changed("u1", "ann@x.io", "new@x.io", T0));
    g.env().advance(RELEASE_WINDOW - Duration::from_millis(1));
    g.when(register("u2", "bob", "ann@x.io"))
        .then_err(RegisterError::EmailRecentlyReleased);
}

#[test]
fn an_email_released_72_hours_ago_is_free() {
    let g = given([registered("u1", "ann", "ann@x.io")])
        .and(email_changed("u1", "ann@x.io", "new@x.io", T0));
    g.env().advance(RELEASE_WINDOW);
    let mut expected = registered("u2", "bob", "ann@x.io");
    expected.registered_at_ms = T0 + u64::try_from(RELEASE_WINDOW.as_millis()).unwrap();
    g.when(register("u2", "bob", "ann@x.io")).then([expected]);
}

#[test]
fn an_email_released_then_taken_back_is_held_again() {
    let g = given([registered("u1", "ann", "ann@x.io")])
        .and(email_changed("u1", "ann@x.io", "new@x.io", T0))
        .and(email_changed("u1", "new@x.io", "ann@x.io", T0));
    g.env().advance(RELEASE_WINDOW * 2);
    g.when(register("u2", "bob", "ann@x.io"))
        .then_err(RegisterError::EmailTaken);
}

#[test]
fn other_users_do_not_matter() {
    given([registered("u1", "ann", "ann@x.io")])
        .when(register("u2", "bob", "bob@x.io"))
        .then([registered("u2", "bob", "bob@x.io")]);
}
