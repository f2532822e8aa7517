//! `POST /console/api/backup`: the admin token, the request's shape, the host's service, one
//! backup at a time.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dcb_core::MemoryStore;
use fairway_console::{AdminToken, BackupRefused, BackupService, Console};
use fairway_runtime::{Host, Runtime};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "test-admin-token-0123456789";

fn app(service: Option<BackupService>) -> axum::Router {
    let mut runtime = Runtime::new(Arc::new(MemoryStore::new()));
    if let Some(s) = service {
        runtime = runtime.with_service(s);
    }
    let host = Arc::new(Host::new(runtime.clone(), Vec::new()));
    Console::new(runtime, host, AdminToken::new(TOKEN).unwrap())
        .mount(axum::Router::new(), "/console")
}

async fn post(app: &axum::Router, token: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut req = Request::post("/console/api/backup").header(header::HOST, "127.0.0.1");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn backup_route_needs_the_token_a_destination_and_a_service() {
    let asked: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    let service = {
        let asked = asked.clone();
        BackupService::new(move |dest: PathBuf| {
            let asked = asked.clone();
            Box::pin(async move {
                asked.lock().unwrap().push(dest.clone());
                if dest.ends_with("taken") {
                    return Err(BackupRefused::Destination("exists".into()));
                }
                Ok(json!({ "dest": dest.display().to_string(), "events": 3 }))
            })
        })
    };
    let with = app(Some(service));
    let ok = r#"{"dest":"/backups/b1"}"#;
    let (s, body) = post(&with, None, ok).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let (s, _) = post(&with, Some("wrong-token-0123456789"), ok).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for bad in [
        "",
        "{}",
        r#"{"dest":1}"#,
        r#"{"dest":"rel/path"}"#,
        r#"{"dest":"/a","x":1}"#,
    ] {
        let (s, body) = post(&with, Some(TOKEN), bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_field", "{body}");
    }
    assert!(
        asked.lock().unwrap().is_empty(),
        "refused requests reached the service"
    );
    let (s, body) = post(&with, Some(TOKEN), ok).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"dest": "/backups/b1", "events": 3}));
    let (s, body) = post(&with, Some(TOKEN), r#"{"dest":"/backups/taken"}"#).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "backup_destination");
    assert_eq!(asked.lock().unwrap().len(), 2);

    let (s, body) = post(&app(None), Some(TOKEN), ok).await;
    assert_eq!(s, StatusCode::NOT_IMPLEMENTED, "{body}");
    assert_eq!(body["error"]["code"], "backup_unsupported");
}

#[tokio::test]
async fn one_backup_runs_at_a_time() {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(Mutex::new(Some(started_tx)));
    let release = Arc::new(tokio::sync::Notify::new());
    let service = {
        let release = release.clone();
        BackupService::new(move |_dest: PathBuf| {
            let release = release.clone();
            let started = started_tx.lock().unwrap().take();
            Box::pin(async move {
                if let Some(tx) = started {
                    let _ = tx.send(());
                }
                release.notified().await;
                Ok(json!({}))
            })
        })
    };
    let app = app(Some(service));
    let first = {
        let app = app.clone();
        tokio::spawn(async move { post(&app, Some(TOKEN), r#"{"dest":"/b/1"}"#).await })
    };
    started_rx.await.unwrap();
    let (s, body) = post(&app, Some(TOKEN), r#"{"dest":"/b/2"}"#).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "backup_running");
    release.notify_one();
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    // Done: the next one runs (and finishes, released at once).
    release.notify_one();
    let (s, _) = post(&app, Some(TOKEN), r#"{"dest":"/b/3"}"#).await;
    assert_eq!(s, StatusCode::OK);
}
