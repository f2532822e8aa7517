//! The profile view, and `GET /api/user` through a host on an ephemeral port: 200, 401 for
//! missing, malformed, forged and expired tokens, 404 for an unknown user.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use dcb_core::Position;
use fairway_runtime::testing::given;
use fairway_runtime::{Environment, Host, NewEvent, Secrets, TestEnv};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use users_current_user::{Profile, UserProfile};
use users_events::token::{TOKEN_SECRET, TOKEN_TTL, sign};
use users_events::{Email, UserDetailsChanged, UserEmailChanged, UserId, UserRegistered, Username};

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn registered(id: &str) -> NewEvent {
    UserRegistered {
        user_id: uid(id),
        username: Username::parse(id).unwrap(),
        email: Email::parse(&format!("{id}@x.io")).unwrap(),
        password_hash: "h".into(),
        registered_at_ms: 0,
    }
    .into()
}

#[test]
fn the_profile_follows_every_change() {
    given([registered("u1"), registered("u2")])
        .and(UserEmailChanged {
            user_id: uid("u1"),
            previous_email: Email::parse("u1@x.io").unwrap(),
            email: Email::parse("new@x.io").unwrap(),
            changed_at_ms: 0,
        })
        .and(UserDetailsChanged {
            user_id: uid("u1"),
            username: Some(Username::parse("ann").unwrap()),
            previous_username: Some(Username::parse("u1").unwrap()),
            bio: Some(Some("hi".into())),
            image: Some(Some("https://x.io/a.png".into())),
        })
        .and(UserDetailsChanged {
            user_id: uid("u1"),
            username: None,
            previous_username: None,
            bio: Some(None),
            image: None,
        })
        .live(UserProfile { user_id: uid("u1") })
        .then(Some(Profile {
            email: Email::parse("new@x.io").unwrap(),
            username: Username::parse("ann").unwrap(),
            bio: None,
            image: Some("https://x.io/a.png".into()),
        }));
}

#[test]
fn an_unknown_user_has_no_profile() {
    given([registered("u2")])
        .live(UserProfile { user_id: uid("u1") })
        .then(None);
}

/// One HTTP/1.1 request; returns the status and the body.
async fn get(addr: std::net::SocketAddr, auth: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let req = format!("GET /api/user HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.get(9..12).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_checks_the_token() {
    let g = given([registered("u1")]);
    let env: Arc<TestEnv> = g.env();
    let (rt, _, _) = g.setup().await;
    let secrets = Secrets::ephemeral();
    let rt = rt.with_service(secrets.clone());
    let key = secrets.get(TOKEN_SECRET).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let host = Host::new(rt, vec![users_current_user::module()]);
    let server = tokio::spawn(host.serve(listener, async move {
        let _ = stop_rx.await;
    }));

    let now = env.now();
    // The registration (position 1) is u1's credential version.
    let good = sign(&key, &uid("u1"), Position::from_u64(1), now).unwrap();
    let (status, body) = get(addr, Some(&format!("Token {good}"))).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"email":"u1@x.io","username":"u1","bio":null,"image":null})
    );

    // The scheme is case-insensitive (RFC 9110); other schemes and a bare token are not accepted.
    assert_eq!(get(addr, Some(&format!("token {good}"))).await.0, 200);
    assert_eq!(get(addr, Some(&format!("TOKEN {good}"))).await.0, 200);
    assert_eq!(get(addr, Some(&good)).await.0, 401);
    assert_eq!(get(addr, None).await.0, 401);
    assert_eq!(get(addr, Some(&format!("Bearer {good}"))).await.0, 401);
    assert_eq!(get(addr, Some("Token garbage")).await.0, 401);
    let forged = sign(
        b"some other key of thirty-two bytes",
        &uid("u1"),
        Position::from_u64(1),
        now,
    )
    .unwrap();
    let (status, body) = get(addr, Some(&format!("Token {forged}"))).await;
    assert_eq!(status, 401);
    assert!(!body.contains(&forged), "the token must not be echoed");
    // A correctly signed token of a user that does not exist, or at another credential
    // version than the user's current one: revoked.
    for token in [
        sign(&key, &uid("nobody"), Position::from_u64(1), now).unwrap(),
        sign(&key, &uid("u1"), Position::from_u64(2), now).unwrap(),
    ] {
        let (status, body) = get(addr, Some(&format!("Token {token}"))).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("revoked"), "{body}");
    }

    env.advance(TOKEN_TTL + Duration::from_secs(1));
    let (status, body) = get(addr, Some(&format!("Token {good}"))).await;
    assert_eq!(status, 401);
    assert!(body.contains("expired"));

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
