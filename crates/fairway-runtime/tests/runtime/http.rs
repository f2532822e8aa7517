//! The example module behind a host: status codes, the JSON error shape, body limits,
//! `/metrics`, and a real server with graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dcb_core::{MemoryStore, StoreError};
use fairway_runtime::http::ApiError;
use fairway_runtime::{CommandError, Host, ModuleKind, Runtime, TestEnv};
use tower::ServiceExt;

use crate::example::*;

fn host() -> Host {
    let rt = Runtime::with_env(Arc::new(MemoryStore::new()), Arc::new(TestEnv::new()));
    Host::new(rt, vec![module(Arc::new(FakeMailer::default()))]).body_limit(1024)
}

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::String(
        String::from_utf8_lossy(&bytes).into(),
    ));
    (status, json)
}

fn assert_error(body: &serde_json::Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "one top-level key: {body}"
    );
}

const ADA: &str = r#"{"user_id":"1","email":"ada@example.com","username":"ada"}"#;

#[tokio::test]
async fn commands_and_views_over_http() {
    let host = host();
    let router = host.router();
    let (status, body) = call(&router, "POST", "/users", Some(ADA)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let position = body["position"].as_str().unwrap().to_owned();

    let (status, body) = call(&router, "POST", "/users", Some(ADA)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "email_taken");

    let (status, body) = call(&router, "GET", "/users/1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["username"], "ada");

    let (status, body) = call(
        &router,
        "POST",
        "/users/9/username",
        Some(r#"{"username":"x"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_user");

    // Read-your-writes on the materialized view needs its worker running.
    let (trigger, shutdown) = fairway_runtime::shutdown_channel();
    let workers = host.spawn_workers(shutdown);
    let (status, body) = call(
        &router,
        "GET",
        &format!("/directory/1?after={position}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], "ada@example.com");
    trigger.trigger();
    for w in workers {
        w.await.unwrap();
    }
}

#[tokio::test]
async fn bad_input_is_400_naming_the_field() {
    let router = host().router();
    let (status, body) = call(
        &router,
        "POST",
        "/users",
        Some(r#"{"user_id":"1","email":"a@b"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "missing_field");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("username"),
        "{body}"
    );

    let (status, body) = call(
        &router,
        "POST",
        "/users",
        Some(r#"{"user_id":"1","email":5,"username":"x"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "invalid_field");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("email"),
        "{body}"
    );

    let (status, body) = call(
        &router,
        "POST",
        "/users",
        Some(r#"{"user_id":"1","email":"nope","username":"x"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("email"),
        "{body}"
    );

    let (status, body) = call(&router, "POST", "/users", Some("{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "malformed_json");

    // A tag over the store's limit is the caller's input, not a server fault.
    let long = "x".repeat(300);
    let req = format!(r#"{{"user_id":"{long}","email":"a@example.com","username":"x"}}"#);
    let (status, body) = call(&router, "POST", "/users", Some(&req)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "invalid_input");
}

#[tokio::test]
async fn oversized_body_is_413_and_unknown_route_404() {
    let router = host().router();
    let big = format!(
        r#"{{"user_id":"1","email":"a@example.com","username":"{}"}}"#,
        "x".repeat(4096)
    );
    let (status, body) = call(&router, "POST", "/users", Some(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&body, "body_too_large");

    let (status, body) = call(&router, "GET", "/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found");
}

#[tokio::test]
async fn health_metrics_and_catalog() {
    let host = host();
    let router = host.router();
    let (status, body) = call(&router, "GET", "/health", None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = call(&router, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str()
            .unwrap()
            .contains("# TYPE fairway_automation_lag gauge"),
        "{body}"
    );

    let catalog = host.catalog();
    assert_eq!(catalog.len(), 1);
    let info = &catalog[0];
    assert_eq!(
        (info.name.as_str(), info.kind),
        ("registration", ModuleKind::Command)
    );
    assert!(
        info.routes
            .iter()
            .any(|r| r.method == "POST" && r.path == "/users")
    );
    assert_eq!(
        info.appends,
        vec!["UserRegistered", "UsernameChanged", "WelcomeEmailSent"]
    );
    assert!(
        info.reads.contains(&"UserRegistered".to_owned())
            && info.reads.contains(&"WelcomeEmailSent".to_owned())
    );
    assert_eq!(info.workers, vec!["view:directory", "automation:welcome"]);
    assert_eq!(info.max_attempts, Some(3));
    let json = serde_json::to_value(info).unwrap();
    assert_eq!(json["kind"], "command");
}

#[test]
fn infrastructure_errors_are_503() {
    let e: ApiError =
        CommandError::<RegisterError>::Store(StoreError::Unavailable("busy".into())).into();
    assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    let e: ApiError = CommandError::<RegisterError>::Store(StoreError::Closed).into();
    assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    let e: ApiError = CommandError::<RegisterError>::Contention { attempts: 5 }.into();
    assert_eq!(
        (e.status, e.code.as_str(), e.retry_after),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "contention",
            Some(fairway_runtime::CONTENTION_RETRY_AFTER_SECS)
        )
    );
    let response = axum::response::IntoResponse::into_response(e);
    assert_eq!(
        response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
}

#[tokio::test]
async fn serve_on_an_ephemeral_port_and_shut_down_gracefully() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = MemoryStore::new();
    let mailer = Arc::new(FakeMailer::default());
    let rt = Runtime::new(Arc::new(store.clone()));
    let host = Host::new(rt, vec![module(mailer.clone())]).replica("r1");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(host.serve(listener, async move {
        let _ = rx.await;
    }));
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST /users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ADA}",
        ADA.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    // The automation worker sends the welcome email in the background.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while mailer.sent().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "welcome email not sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Graceful shutdown released the lease.
    let lease = dcb_core::EventStore::get_state(&store, "lease:automation:welcome", b"holder")
        .await
        .unwrap()
        .unwrap();
    let lease: fairway_runtime::Lease = serde_json::from_slice(&lease).unwrap();
    assert_eq!((lease.holder.as_str(), lease.expires_at_ms), ("r1", 0));
}
