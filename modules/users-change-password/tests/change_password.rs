//! Given/when/then for password changes.

#![allow(clippy::unwrap_used)]

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

fn change(id: &str, hash: &str) -> ChangePassword {
    ChangePassword {
        user_id: UserId::parse(id).unwrap(),
        password_hash: hash.into(),
    }
}

#[test]
fn a_user_changes_their_password() {
    given([registered("u1")])
        .when(change("u1", "new"))
        .then([UserPasswordChanged {
            user_id: UserId::parse("u1").unwrap(),
            password_hash: "new".into(),
            changed_at_ms: T0,
        }]);
}

#[test]
fn an_unknown_user_cannot_change_a_password() {
    nothing()
        .when(change("u1", "new"))
        .then_err(ChangePasswordError::UnknownUser);
    given([registered("u2")])
        .when(change("u1", "new"))
        .then_err(ChangePasswordError::UnknownUser);
}
