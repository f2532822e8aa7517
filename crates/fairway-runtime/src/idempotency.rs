//! Idempotency keys: an `Idempotency-Key` header on `POST`, `PUT` or `PATCH` makes the request
//! safe to retry. The first response (status, content type, body) is stored durably in the
//! store's consumer state and replayed for the same key and the same request; the same key with
//! a different request (method, path or body) is rejected with 422 `idempotency_key_reused`.
//!
//! Storage: consumer [`IDEMPOTENCY_CONSUMER`] (`http.idempotency`), key `k/{header}`, value the
//! JSON [`IdempotencyRecord`]: a fingerprint of the request (a UUID v5, i.e. SHA-1, of method,
//! path and body) and the response. Records are written after the handler ran, so a replay works
//! after a restart. Responses with a 5xx status are not recorded (a retry may succeed), nor are
//! bodies over [`MAX_RECORDED_BODY`] or that are not UTF-8. Records older than [`RECORD_TTL`]
//! are ignored and overwritten; nothing deletes them otherwise.
//!
//! While a request with a key is running, another request with the same key on this host gets
//! 409 `idempotency_in_progress`.
//!
//! ```no_run
//! # fn f(rt: fairway_runtime::Runtime, router: axum::Router) -> axum::Router {
//! use fairway_runtime::idempotency::{Idempotency, middleware};
//! router.layer(axum::middleware::from_fn_with_state(Idempotency::new(rt, 64 * 1024), middleware))
//! # }
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dcb_core::StateCommit;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::env::millis;
use crate::http::ApiError;
use crate::runtime::Runtime;

/// The consumer whose state holds the records.
pub const IDEMPOTENCY_CONSUMER: &str = "http.idempotency";
/// The request header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The response header set on a replayed response (`true`).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 255;
/// The largest response body that is recorded.
pub const MAX_RECORDED_BODY: usize = 64 * 1024;
/// How long a record is honoured.
pub const RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

const FINGERPRINT_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_8f1e_2c57_4b7e_9d0a_51c3_e2b4_7f90);

/// A recorded response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Fingerprint of method, path and body of the first request.
    pub fingerprint: String,
    /// The response status.
    pub status: u16,
    /// The response content type, if any.
    pub content_type: Option<String>,
    /// The response body.
    pub body: String,
    /// When it was recorded (ms since the epoch).
    pub recorded_at_ms: u64,
}

/// The middleware's state: the runtime, the body limit and the keys in flight.
#[derive(Debug, Clone)]
pub struct Idempotency {
    runtime: Runtime,
    body_limit: usize,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl Idempotency {
    /// Records in `runtime`'s store; request bodies over `body_limit` get 413.
    pub fn new(runtime: Runtime, body_limit: usize) -> Idempotency {
        Idempotency {
            runtime,
            body_limit,
            in_flight: Arc::default(),
        }
    }
}

/// Removes a key from the in-flight set when the request ends (also on panic or cancel).
struct InFlight {
    set: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

fn record_key(key: &str) -> Vec<u8> {
    let mut k = b"k/".to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}

/// The fingerprint of a request: UUID v5 (SHA-1) of method, path with query, and body.
pub fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let mut input = Vec::with_capacity(body.len() + path.len() + 16);
    input.extend_from_slice(method.as_str().as_bytes());
    input.push(b' ');
    input.extend_from_slice(path.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(body);
    Uuid::new_v5(&FINGERPRINT_NAMESPACE, &input)
        .simple()
        .to_string()
}

fn check_key(value: &HeaderValue) -> Result<String, ApiError> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN {
        return Err(ApiError::bad_field(
            "Idempotency-Key",
            format_args!("must be 1 to {MAX_KEY_LEN} characters"),
        ));
    }
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(ApiError::bad_field(
            "Idempotency-Key",
            "may contain only visible ASCII characters",
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

fn replay(record: IdempotencyRecord) -> Response {
    let status = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
    let mut response = (status, record.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    if let Some(ct) = record
        .content_type
        .and_then(|ct| HeaderValue::from_str(&ct).ok())
    {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// The middleware (use with `axum::middleware::from_fn_with_state`).
pub async fn middleware(
    State(state): State<Idempotency>,
    request: Request,
    next: Next,
) -> Response {
    let unsafe_method = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    let Some(value) = request.headers().get(IDEMPOTENCY_HEADER) else {
        return next.run(request).await;
    };
    if !unsafe_method {
        return next.run(request).await;
    }
    match with_key(state, value.clone(), request, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn with_key(
    state: Idempotency,
    value: HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = check_key(&value)?;
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, state.body_limit)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request body could not be read within {} bytes: {e}",
                    state.body_limit
                ),
            )
        })?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let print = fingerprint(&parts.method, &path, &bytes);
    let store = state.runtime.store();
    let now_ms = millis(state.runtime.env().now());
    let ttl_ms = u64::try_from(RECORD_TTL.as_millis()).unwrap_or(u64::MAX);

    let stored = store
        .get_state(IDEMPOTENCY_CONSUMER, &record_key(&key))
        .await?;
    if let Some(raw) = stored {
        match serde_json::from_slice::<IdempotencyRecord>(&raw) {
            Ok(record) if now_ms.saturating_sub(record.recorded_at_ms) < ttl_ms => {
                if record.fingerprint == print {
                    return Ok(replay(record));
                }
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                ));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable idempotency record ignored"),
        }
    }

    let _guard = {
        let mut set = state.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(key.clone()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is in progress",
            ));
        }
        InFlight {
            set: state.in_flight.clone(),
            key: key.clone(),
        }
    };

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (mut parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the response body: {e}")))?;
    if parts.status.is_server_error() {
        return Ok(Response::from_parts(parts, Body::from(body)));
    }
    let text = match std::str::from_utf8(&body) {
        Ok(t) if body.len() <= MAX_RECORDED_BODY => t.to_owned(),
        _ => {
            tracing::warn!(
                key,
                "response not recorded for idempotency: too large or not UTF-8"
            );
            return Ok(Response::from_parts(parts, Body::from(body)));
        }
    };
    let record = IdempotencyRecord {
        fingerprint: print,
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: text,
        recorded_at_ms: now_ms,
    };
    match serde_json::to_vec(&record) {
        Ok(value) => {
            let commit = StateCommit {
                consumer: IDEMPOTENCY_CONSUMER.to_owned(),
                writes: vec![(record_key(&key), Some(value))],
                checkpoint: None,
                ..StateCommit::default()
            };
            if let Err(e) = store.commit_state(commit).await {
                // The request did take effect; a retry with this key will run it again.
                tracing::error!(error = %e, key, "cannot record the idempotent response");
                parts
                    .headers
                    .insert("idempotency-not-recorded", HeaderValue::from_static("true"));
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode the idempotency record"),
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_cover_method_path_and_body() {
        let a = fingerprint(&Method::POST, "/a", b"{}");
        assert_eq!(a, fingerprint(&Method::POST, "/a", b"{}"));
        assert_ne!(a, fingerprint(&Method::PUT, "/a", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/b", b"{}"));
        assert_ne!(a, fingerprint(&Method::POST, "/a", b"{ }"));
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(
            check_key(&HeaderValue::from_static("abc-1")).unwrap(),
            "abc-1"
        );
        assert!(check_key(&HeaderValue::from_static("")).is_err());
        assert!(check_key(&HeaderValue::from_static("a b")).is_err());
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(check_key(&HeaderValue::from_str(&long).unwrap()).is_err());
    }

    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::routing::post;
    use tower::ServiceExt as _;

    /// A router whose handler counts its calls and answers 201, or 503 while `fail` is set.
    fn app(rt: Runtime, calls: Arc<AtomicU32>, fail: Arc<AtomicU32>) -> Router {
        Router::new()
            .route(
                "/things",
                post(move |body: String| async move {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    if fail.load(Ordering::SeqCst) > 0 {
                        return (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned());
                    }
                    (StatusCode::CREATED, format!("call {n}: {body}"))
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Idempotency::new(rt, 1024),
                middleware,
            ))
    }

    async fn send(app: &Router, key: Option<&str>, body: &str) -> (StatusCode, String, bool) {
        let mut req = Request::builder().method("POST").uri("/things");
        if let Some(k) = key {
            req = req.header(IDEMPOTENCY_HEADER, k);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let replayed = resp.headers().contains_key(REPLAYED_HEADER);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            String::from_utf8_lossy(&bytes).into_owned(),
            replayed,
        )
    }

    #[tokio::test]
    async fn the_first_response_is_replayed_and_a_different_request_refused() {
        let rt = Runtime::new(Arc::new(dcb_core::MemoryStore::new()));
        let calls = Arc::new(AtomicU32::new(0));
        let fail = Arc::new(AtomicU32::new(0));
        let app = app(rt.clone(), calls.clone(), fail.clone());

        let first = send(&app, Some("k1"), "a").await;
        assert_eq!(first, (StatusCode::CREATED, "call 1: a".into(), false));
        let again = send(&app, Some("k1"), "a").await;
        assert_eq!(again, (StatusCode::CREATED, "call 1: a".into(), true));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let (status, body, _) = send(&app, Some("k1"), "b").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body.contains("idempotency_key_reused"), "{body}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Without a key, or with another one, the handler runs.
        assert_eq!(send(&app, None, "a").await.1, "call 2: a");
        assert_eq!(send(&app, Some("k2"), "a").await.1, "call 3: a");

        // A record lives in the store: a fresh middleware on the same store replays it.
        let other = super::tests::app(rt, Arc::new(AtomicU32::new(0)), fail);
        assert_eq!(
            send(&other, Some("k1"), "a").await,
            (StatusCode::CREATED, "call 1: a".into(), true)
        );
    }

    #[tokio::test]
    async fn server_errors_are_not_recorded() {
        let rt = Runtime::new(Arc::new(dcb_core::MemoryStore::new()));
        let calls = Arc::new(AtomicU32::new(0));
        let fail = Arc::new(AtomicU32::new(1));
        let app = app(rt, calls.clone(), fail.clone());
        assert_eq!(
            send(&app, Some("k"), "x").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        fail.store(0, Ordering::SeqCst);
        assert_eq!(
            send(&app, Some("k"), "x").await,
            (StatusCode::CREATED, "call 2: x".into(), false)
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let rt = Runtime::new(Arc::new(dcb_core::MemoryStore::new()));
        let app = app(rt, Arc::default(), Arc::default());
        let (status, body, _) = send(&app, Some("k"), &"x".repeat(2048)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("body_too_large"), "{body}");
    }
}
