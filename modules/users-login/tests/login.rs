//! Login against a runtime holding real argon2 hashes: right and wrong credentials, changed
//! email and password, and the token's key and expiry.

#![allow(clippy::unwrap_used)]

use fairway_runtime::testing::given;
use fairway_runtime::{NewEvent, Secrets};
use users_events::password::hash_blocking;
use users_events::token::{TOKEN_SECRET, TOKEN_TTL, TokenError, verify};
use users_events::{
    Email, Password, UserEmailChanged, UserId, UserPasswordChanged, UserRegistered, Username,
};
use users_login::{Credentials, Current, login};

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

fn phc(pw: &str) -> String {
    hash_blocking(&Password::parse(pw).unwrap(), [3; 16]).unwrap()
}

fn registered(id: &str, mail: &str, pw: &str) -> NewEvent {
    UserRegistered {
        user_id: uid(id),
        username: Username::parse(id).unwrap(),
        email: email(mail),
        password_hash: phc(pw),
        registered_at_ms: 0,
    }
    .into()
}

#[tokio::test]
async fn the_right_password_gets_a_token_for_the_user_valid_for_a_day() {
    let g = given([registered("u1", "ann@x.io", "password-1")]);
    let env = g.env();
    let (rt, _, _) = g.setup().await;
    let secrets = Secrets::ephemeral();
    let rt = rt.with_service(secrets.clone());
    let token = login(&rt, email("ANN@x.io"), "password-1".into())
        .await
        .unwrap();
    let key = secrets.get(TOKEN_SECRET).unwrap();
    let now = fairway_runtime::Environment::now(&*env);
    assert_eq!(verify(&key, &token, now), Ok(uid("u1")));
    assert_eq!(
        verify(&key, &token, now + TOKEN_TTL),
        Err(TokenError::Expired)
    );
}

#[tokio::test]
async fn a_wrong_password_or_unknown_email_is_401() {
    let (rt, _, _) = given([registered("u1", "ann@x.io", "password-1")])
        .setup()
        .await;
    let rt = rt.with_service(Secrets::ephemeral());
    let e = login(&rt, email("ann@x.io"), "password-2".into())
        .await
        .unwrap_err();
    assert_eq!(
        (e.status.as_u16(), e.code.as_str()),
        (401, "invalid_credentials")
    );
    let e = login(&rt, email("bob@x.io"), "password-1".into())
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 401);
}

#[tokio::test]
async fn login_uses_the_current_email_and_password() {
    let (rt, _, _) = given([registered("u1", "ann@x.io", "password-1")])
        .and(UserEmailChanged {
            user_id: uid("u1"),
            previous_email: email("ann@x.io"),
            email: email("new@x.io"),
            changed_at_ms: 0,
        })
        .and(UserPasswordChanged {
            user_id: uid("u1"),
            password_hash: phc("password-2"),
            changed_at_ms: 0,
        })
        .setup()
        .await;
    let rt = rt.with_service(Secrets::ephemeral());
    for (mail, pw) in [
        ("ann@x.io", "password-1"),
        ("ann@x.io", "password-2"),
        ("new@x.io", "password-1"),
    ] {
        let e = login(&rt, email(mail), pw.into()).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 401, "{mail} / {pw}");
    }
    assert!(
        login(&rt, email("new@x.io"), "password-2".into())
            .await
            .is_ok()
    );
}

#[test]
fn credentials_follow_changes() {
    given([UserRegistered {
        user_id: uid("u1"),
        username: Username::parse("ann").unwrap(),
        email: email("a@x.io"),
        password_hash: "h1".into(),
        registered_at_ms: 0,
    }])
    .and(UserPasswordChanged {
        user_id: uid("u1"),
        password_hash: "h2".into(),
        changed_at_ms: 0,
    })
    .live(Credentials { user_id: uid("u1") })
    .then(Some(Current {
        email: email("a@x.io"),
        password_hash: "h2".into(),
    }));
}
