//! Through the real binary: authentication on the users app (forged, expired and malformed
//! tokens are refused with 401 and the JSON error shape; a valid one works), tokens and
//! passwords never appear in the host's logs (stderr captured at `RUST_LOG=trace`), and the
//! rejections axum produces before a handler runs (bad query string, undecodable path) reach
//! the client in the JSON error shape.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, SystemTime};

use fairway_reliability::client::Client;
use fairway_reliability::server::{Server, ServerOptions, fairway_bin};
use fairway_runtime::Secrets;
use serde_json::json;
use users_events::UserId;
use users_events::token::{TOKEN_SECRET, sign, verify};

#[track_caller]
fn assert_error(r: &fairway_reliability::client::Reply, status: u16) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
        "not the JSON error shape: {}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_never_logged() {
    let bin = tokio::task::spawn_blocking(fairway_bin)
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut options = ServerOptions::new(&bin, &data, &log);
    options.rust_log = "trace".into();
    let server = Server::start(&options).unwrap();
    let client = Client::new(server.addr, 2);
    let password = "correct horse battery staple";
    let r = client
        .json(
            "POST",
            "/api/users",
            &json!({"id": "u1", "username": "ann", "email": "ann@example.com", "password": password}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = client
        .json(
            "POST",
            "/api/users/login",
            &json!({"email": "ann@example.com", "password": password}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let me = |t: String| {
        let client = client.clone();
        async move {
            let auth = format!("Token {t}");
            client
                .send(
                    "GET",
                    "/api/user",
                    &[("authorization", auth.as_str())],
                    None,
                )
                .await
                .unwrap()
        }
    };
    let ok = me(token.clone()).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["username"], "ann");

    // Wrong password: 401, and the login is not told which part was wrong.
    let r = client
        .json(
            "POST",
            "/api/users/login",
            &json!({"email": "ann@example.com", "password": "wrong password!"}),
        )
        .await
        .unwrap();
    assert_error(&r, 401);

    // Forged: same payload, signature from another key; or payload changed under the
    // original signature; or signed with the right key but expired.
    let secret = Secrets::load_or_create(data.join("secrets.json"))
        .unwrap()
        .get(TOKEN_SECRET)
        .unwrap();
    let u1 = UserId::parse("u1").unwrap();
    let now = SystemTime::now();
    // The credential version the login put in the token (a JWT: `header.claims.signature`).
    let version = verify(&secret, &token, now).unwrap().version;
    let forged = sign(b"some other key, thirty-two bytes", &u1, version, now).unwrap();
    let (_, sig) = token.rsplit_once('.').unwrap();
    let admin_payload = {
        let other = sign(&secret, &UserId::parse("admin").unwrap(), version, now).unwrap();
        other.rsplit_once('.').unwrap().0.to_owned()
    };
    let swapped = format!("{admin_payload}.{sig}");
    let expired = sign(&secret, &u1, version, now - Duration::from_secs(2 * 86_400)).unwrap();
    let valid_again = sign(&secret, &u1, version, now).unwrap();
    assert_eq!(
        me(valid_again).await.status,
        200,
        "a token signed with the host's key works"
    );
    let mut refused = 0;
    for bad in [
        forged,
        swapped,
        expired,
        String::new(),
        "garbage".into(),
        ".".into(),
        "a.b.c".into(),
        format!("{token}x"),
        token.replace('.', ""),
        "x".repeat(100_000),
        "%%%%.%%%%".into(),
    ] {
        let r = me(bad.clone()).await;
        if r.status == 431 || r.status == 400 {
            // A header over hyper's limit never reaches the app.
            assert!(bad.len() > 8192, "{}", r.status);
            refused += 1;
            continue;
        }
        assert_error(&r, 401);
        refused += 1;
    }
    for header in ["", "Bearer", "Token", "Basic dXNlcjpwYXNz", "token   "] {
        let r = client
            .send("GET", "/api/user", &[("authorization", header)], None)
            .await
            .unwrap();
        assert_error(&r, 401);
        refused += 1;
    }
    let r = client.get("/api/user").await.unwrap();
    assert_error(&r, 401);

    // Rejections made before a handler runs get the JSON error shape from the host too.
    for path in [
        "/api/lists/l1?after=-1",
        "/api/lists/l1?after=",
        "/api/borrowers/p1/books?after=99999999999999999999999999999999999",
        "/api/lists/%FF%FE",
        "/api/nope",
    ] {
        let r = client.get(path).await.unwrap();
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
        assert_error(&r, r.status);
    }

    let status = server.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success());
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.lines().count() > 10,
        "trace logging produced almost nothing"
    );
    let (_, token_sig) = token.rsplit_once('.').unwrap();
    for secret_text in [token.as_str(), token_sig, password, "wrong password!"] {
        assert!(
            !logs.contains(secret_text),
            "a credential appears in the host's logs: {secret_text}"
        );
    }
    eprintln!(
        "auth: {refused} forged, expired or malformed credentials refused; {} log lines at \
         trace level, no token or password in them",
        logs.lines().count()
    );
}
