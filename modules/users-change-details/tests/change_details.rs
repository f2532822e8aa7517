//! Given/when/then for details changes.

#![allow(clippy::unwrap_used)]

use fairway_runtime::NewEvent;
use fairway_runtime::testing::{given, nothing};
use users_change_details::{ChangeDetails, ChangeDetailsError};
use users_events::{Email, UserDetailsChanged, UserId, UserRegistered, Username};

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn name(s: &str) -> Username {
    Username::parse(s).unwrap()
}

fn registered(id: &str, username: &str) -> NewEvent {
    UserRegistered {
        user_id: uid(id),
        username: name(username),
        email: Email::parse(&format!("{id}@x.io")).unwrap(),
        password_hash: "h".into(),
        registered_at_ms: 0,
    }
    .into()
}

fn renamed(id: &str, from: &str, to: &str) -> NewEvent {
    UserDetailsChanged {
        user_id: uid(id),
        username: Some(name(to)),
        previous_username: Some(name(from)),
        bio: None,
        image: None,
    }
    .into()
}

fn rename(id: &str, to: &str) -> ChangeDetails {
    ChangeDetails {
        user_id: uid(id),
        username: Some(name(to)),
        bio: None,
        image: None,
    }
}

fn set(id: &str, bio: Option<Option<&str>>, image: Option<Option<&str>>) -> ChangeDetails {
    ChangeDetails {
        user_id: uid(id),
        username: None,
        bio: bio.map(|b| b.map(str::to_owned)),
        image: image.map(|i| i.map(str::to_owned)),
    }
}

fn changed(id: &str, bio: Option<Option<&str>>, image: Option<Option<&str>>) -> NewEvent {
    UserDetailsChanged {
        user_id: uid(id),
        username: None,
        previous_username: None,
        bio: bio.map(|b| b.map(str::to_owned)),
        image: image.map(|i| i.map(str::to_owned)),
    }
    .into()
}

#[test]
fn a_user_takes_a_free_username() {
    given([registered("u1", "ann")])
        .when(rename("u1", "anna"))
        .then([renamed("u1", "ann", "anna")]);
}

#[test]
fn a_username_held_by_another_user_is_refused() {
    given([registered("u1", "ann"), registered("u2", "bob")])
        .when(rename("u1", "bob"))
        .then_err(ChangeDetailsError::UsernameTaken);
}

#[test]
fn a_username_taken_by_a_rename_is_refused() {
    given([
        registered("u1", "ann"),
        registered("u2", "bob"),
        renamed("u2", "bob", "zed"),
    ])
    .when(rename("u1", "zed"))
    .then_err(ChangeDetailsError::UsernameTaken);
}

#[test]
fn a_username_given_up_is_free_at_once() {
    given([
        registered("u1", "ann"),
        registered("u2", "bob"),
        renamed("u2", "bob", "zed"),
    ])
    .when(rename("u1", "bob"))
    .then([renamed("u1", "ann", "bob")]);
}

#[test]
fn the_current_username_again_changes_nothing() {
    given([registered("u1", "ann"), renamed("u1", "ann", "anna")])
        .when(rename("u1", "anna"))
        .then_nothing();
}

#[test]
fn bio_and_image_are_set_and_cleared() {
    given([registered("u1", "ann")])
        .when(set(
            "u1",
            Some(Some("hi")),
            Some(Some("https://x.io/a.png")),
        ))
        .then([changed(
            "u1",
            Some(Some("hi")),
            Some(Some("https://x.io/a.png")),
        )]);
    given([
        registered("u1", "ann"),
        changed("u1", Some(Some("hi")), Some(Some("https://x.io/a.png"))),
    ])
    .when(set("u1", Some(None), None))
    .then([changed("u1", Some(None), None)]);
}

#[test]
fn only_fields_that_differ_are_recorded() {
    given([
        registered("u1", "ann"),
        changed("u1", Some(Some("hi")), None),
    ])
    .when(set(
        "u1",
        Some(Some("hi")),
        Some(Some("https://x.io/b.png")),
    ))
    .then([changed("u1", None, Some(Some("https://x.io/b.png")))]);
    given([
        registered("u1", "ann"),
        changed("u1", Some(Some("hi")), None),
    ])
    .when(set("u1", Some(Some("hi")), None))
    .then_nothing();
}

#[test]
fn an_unknown_user_cannot_change_details() {
    nothing()
        .when(set("u1", Some(Some("hi")), None))
        .then_err(ChangeDetailsError::UnknownUser);
}
