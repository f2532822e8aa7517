//! Login against a runtime holding real argon2 hashes: right and wrong credentials, changed
//! email and password, and the token's key and expiry.

#![allow(clippy::unwrap_used)]

use dcb_core::Position;
use fairway_runtime::testing::given;
use fairway_runtime::{NewEvent, Secrets};
use users_events::password::hash_blocking;
use users_events::token::{TOKEN_SECRET, TOKEN_TTL, TokenError, Verified, verify};
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

fn pw(s: &str) -> Password {
    Password::candidate(s).unwrap()
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
    let token = login(&rt, None, email("ANN@x.io"), pw("password-1"))
        .await
        .unwrap();
    let key = secrets.get(TOKEN_SECRET).unwrap();
    let now = fairway_runtime::Environment::now(&*env);
    // The registration is the first event: its position is the credential version.
    assert_eq!(
        verify(&key, &token, now),
        Ok(Verified {
            user: uid("u1"),
            version: Position::from_u64(1)
        })
    );
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
    let e = login(&rt, None, email("ann@x.io"), pw("password-2"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.status.as_u16(), e.code.as_str()),
        (401, "invalid_credentials")
    );
    let e = login(&rt, None, email("bob@x.io"), pw("password-1"))
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
    for (mail, password) in [
        ("ann@x.io", "password-1"),
        ("ann@x.io", "password-2"),
        ("new@x.io", "password-1"),
    ] {
        let e = login(&rt, None, email(mail), pw(password))
            .await
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 401, "{mail} / {password}");
    }
    let secrets = rt.service::<Secrets>().unwrap();
    let token = login(&rt, None, email("new@x.io"), pw("password-2"))
        .await
        .unwrap();
    // The token carries the password change's position (the third event).
    let claims = verify(
        &secrets.get(TOKEN_SECRET).unwrap(),
        &token,
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_704_067_200),
    )
    .unwrap();
    assert_eq!(claims.version, Position::from_u64(3));
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
        version: Position::from_u64(2),
    }));
}

#[tokio::test]
async fn too_many_attempts_for_one_account_are_429_before_any_hashing() {
    use std::sync::Arc;
    use users_events::throttle::{Limit, LoginThrottle, ThrottleLimits};
    let limit = |burst| Limit {
        burst: std::num::NonZeroU32::new(burst).unwrap(),
        replenish: std::time::Duration::from_secs(3600),
    };
    let throttle = Arc::new(LoginThrottle::new(ThrottleLimits {
        per_address: limit(4),
        per_account: limit(2),
    }));
    let (rt, _, _) = given([registered("u1", "ann@x.io", "password-1")])
        .setup()
        .await;
    let rt = rt
        .with_service(Secrets::ephemeral())
        .with_service(throttle.clone());
    let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let b: std::net::IpAddr = "10.0.0.2".parse().unwrap();
    for _ in 0..2 {
        let e = login(&rt, Some(a), email("ann@x.io"), pw("wrong-one"))
            .await
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 401);
    }
    // The account is out of attempts, even with the right password from another address;
    // a lookalike of the email shares the bucket.
    for (from, mail) in [(b, "ann@x.io"), (b, "\u{FF41}nn@x.io"), (a, "ANN@x.io")] {
        let e = login(&rt, Some(from), email(mail), pw("password-1"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code.as_str()),
            (429, "too_many_requests")
        );
        assert!(e.retry_after.is_some_and(|s| s >= 1));
    }
    // The first address has one attempt left for another account; then it is out too.
    let e = login(&rt, Some(a), email("bob@x.io"), pw("password-1"))
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 401);
    let e = login(&rt, Some(a), email("cid@x.io"), pw("password-1"))
        .await
        .unwrap_err();
    assert_eq!(e.status.as_u16(), 429);
    assert!(e.message.contains("address"), "{}", e.message);
}
