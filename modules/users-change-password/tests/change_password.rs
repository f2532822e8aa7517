//! Given/when/then for password changes: the change needs the credential version the current
//! password was checked at, so a change racing another one is refused.

#![allow(clippy::unwrap_used)]

use dcb_core::Position;
use fairway_runtime::testing::{given, nothing};
use users_change_password::{ChangePassword, ChangePasswordError};
use users_events::{Email, UserId, UserPasswordChanged, UserRegistered, Username};

const T0: u64 = 1_704_067_200_000;

fn registered(id: &str) -> UserRegistered {
    UserRegistered {
        user_id: UserId::parse(id).unwrap(),
        username: Username::parse(id).unwrap(),
        email: Email::parse(&format!("{id}@x.io")).unwrap(),
        password_hash: "old".into(),
        registered_at_ms: T0,
    }
}

fn change(id: &str, version: u64, hash: &str) -> ChangePassword {
    ChangePassword {
        user_id: UserId::parse(id).unwrap(),
        expected_version: Position::from_u64(version),
        password_hash: hash.into(),
    }
}

fn changed(id: &str, hash: &str) -> UserPasswordChanged {
    UserPasswordChanged {
        user_id: UserId::parse(id).unwrap(),
        password_hash: hash.into(),
        changed_at_ms: T0,
    }
}

#[test]
fn a_user_changes_their_password() {
    // The registration is at position 1: the version the current password was checked at.
    given([registered("u1")])
        .when(change("u1", 1, "new"))
        .then([changed("u1", "new")]);
    // After a first change (position 2), the next one proves that one.
    given([registered("u1")])
        .and(changed("u1", "second"))
        .when(change("u1", 2, "third"))
        .then([changed("u1", "third")]);
}

#[test]
fn a_change_checked_against_an_older_password_is_refused() {
    given([registered("u1")])
        .and(changed("u1", "someone else's"))
        .when(change("u1", 1, "mine"))
        .then_err(ChangePasswordError::ChangedMeanwhile);
}

#[test]
fn an_unknown_user_cannot_change_a_password() {
    nothing()
        .when(change("u1", 1, "new"))
        .then_err(ChangePasswordError::UnknownUser);
    given([registered("u2")])
        .when(change("u1", 1, "new"))
        .then_err(ChangePasswordError::UnknownUser);
}
