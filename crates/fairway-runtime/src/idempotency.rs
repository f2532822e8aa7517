//! Idempotency keys (after the IETF httpapi `Idempotency-Key` draft): an `Idempotency-Key`
//! header on `POST`, `PUT` or `PATCH` makes the request safe to retry. The first successful
//! response is stored durably in the store's consumer state and replayed for the same key and
//! the same request; the same key with a different request is 422 `idempotency_key_reused`;
//! the same key while its first request still runs (on this host) is 409
//! `idempotency_in_progress`.
//!
//! **Scope.** Keys belong to a principal: the SHA-256 of the `Authorization` header, or the
//! anonymous scope when there is none. The runtime does not know users; a principal is "whoever
//! presents these credentials", so user A's key never replays to B, to another token or to an
//! anonymous client, and a new token starts a new scope.
//!
//! **Fingerprint.** SHA-256 of the method, the matched route (`/api/lists/{listId}`), the
//! request target (path and query), the `Content-Type`, the principal and the body.
//!
//! **What is stored.** Only `2xx` responses of a route that matched (the middleware sees the
//! route through axum's `MatchedPath`, so an unknown route, which has none, is never looked up
//! nor stored), with a UTF-8 body of at most [`MAX_RECORDED_BODY`] bytes. Nothing else is:
//! not `4xx` (an extractor's 400/401/413/415 or a command's rejection: in Fairway a refused
//! request appends nothing, so running it again is safe, and the client can fix its token,
//! content type or body and retry with the same key), not `5xx` (a retry may succeed), not the
//! 400/413 this middleware itself answers for a bad key or a body over the limit.
//!
//! **Expiry.** A record is honoured for its TTL ([`DEFAULT_TTL`], 24 h, see
//! [`Idempotency::ttl`]) and then deleted: each record has an expiry index entry
//! (`x/{expiry}/...`), and a sweep (at most every [`SWEEP_INTERVAL`], started by a keyed
//! request) deletes every expired record, oldest first. Storage is bounded by the keyed
//! successful responses of the last TTL.
//!
//! Storage: consumer [`IDEMPOTENCY_CONSUMER`] (`http.idempotency`), keys
//! `r/{principal}/{key}` → the JSON [`IdempotencyRecord`] and
//! `x/{expires_at_ms as 16 hex digits}/{principal}/{key}` → empty. Records of earlier versions
//! (`k/{key}`, not scoped) are deleted by the first sweep.
//!
//! ```no_run
//! # fn f(rt: fairway_runtime::Runtime, router: axum::Router) -> axum::Router {
//! use fairway_runtime::idempotency::{Idempotency, middleware};
//! router.layer(axum::middleware::from_fn_with_state(Idempotency::new(rt, 64 * 1024), middleware))
//! # }
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dcb_core::{StateCommit, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
/// The largest response body that is recorded (a bigger one is passed on, not recorded).
pub const MAX_RECORDED_BODY: usize = 32 * 1024;
/// How long a record is honoured by default before it is deleted.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often at most a sweep deletes expired records.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// The principal of requests without `Authorization`.
pub const ANONYMOUS: &str = "anonymous";

/// Expiry index entries examined per sweep commit.
const SWEEP_BATCH: usize = 512;

/// A recorded response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Fingerprint of the first request ([`fingerprint`]).
    pub fingerprint: String,
    /// The response status.
    pub status: u16,
    /// The response content type, if any.
    pub content_type: Option<String>,
    /// The response body.
    pub body: String,
    /// When it was recorded (ms since the epoch).
    pub recorded_at_ms: u64,
    /// When it expires and may be deleted (ms since the epoch).
    pub expires_at_ms: u64,
}

/// The middleware's state: the runtime, the body limit, the TTL and the keys in flight.
#[derive(Debug, Clone)]
pub struct Idempotency {
    runtime: Runtime,
    body_limit: usize,
    ttl: Duration,
    in_flight: Arc<Mutex<HashSet<String>>>,
    next_sweep_ms: Arc<AtomicU64>,
}

impl Idempotency {
    /// Records in `runtime`'s store for [`DEFAULT_TTL`]; request bodies over `body_limit` get
    /// 413.
    pub fn new(runtime: Runtime, body_limit: usize) -> Idempotency {
        Idempotency {
            runtime,
            body_limit,
            ttl: DEFAULT_TTL,
            in_flight: Arc::default(),
            next_sweep_ms: Arc::default(),
        }
    }

    /// How long records are honoured before they are deleted.
    pub fn ttl(mut self, ttl: Duration) -> Idempotency {
        self.ttl = ttl;
        self
    }

    /// Deletes every record whose expiry has passed (and records of earlier versions); returns
    /// how many records it deleted.
    pub async fn sweep(&self) -> Result<usize, StoreError> {
        let store = self.runtime.store();
        let now_ms = millis(self.runtime.env().now());
        let mut deleted = 0;
        // Unscoped records of earlier versions.
        loop {
            let rows = store
                .scan_state(IDEMPOTENCY_CONSUMER, b"k/", None, SWEEP_BATCH)
                .await?;
            if rows.is_empty() {
                break;
            }
            deleted += rows.len();
            commit(store, rows.into_iter().map(|(k, _)| (k, None)).collect()).await?;
        }
        loop {
            let rows = store
                .scan_state(IDEMPOTENCY_CONSUMER, b"x/", None, SWEEP_BATCH)
                .await?;
            let full = rows.len() == SWEEP_BATCH;
            let mut writes = Vec::new();
            let mut reached_unexpired = false;
            for (index_key, _) in rows {
                let Some((expires_at_ms, record_key)) = parse_index_key(&index_key) else {
                    writes.push((index_key, None));
                    continue;
                };
                if expires_at_ms > now_ms {
                    reached_unexpired = true;
                    break;
                }
                // The record may have been written again since (a later request reusing the
                // key after this one expired): delete it only if it is expired too.
                let current = store.get_state(IDEMPOTENCY_CONSUMER, &record_key).await?;
                let expired = current.is_some_and(|raw| {
                    IdempotencyRecord::decode(&raw).map_or(true, |r| r.expires_at_ms <= now_ms)
                });
                if expired {
                    deleted += 1;
                    writes.push((record_key, None));
                }
                writes.push((index_key, None));
            }
            if writes.is_empty() {
                break;
            }
            commit(store, writes).await?;
            if reached_unexpired || !full {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "expired idempotency records deleted");
        }
        Ok(deleted)
    }

    /// Starts a sweep in the background when the last one is [`SWEEP_INTERVAL`] old.
    fn maybe_sweep(&self, now_ms: u64) {
        let next = self.next_sweep_ms.load(Ordering::Relaxed);
        if now_ms < next {
            return;
        }
        let interval = u64::try_from(SWEEP_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if self
            .next_sweep_ms
            .compare_exchange(
                next,
                now_ms.saturating_add(interval),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.sweep().await {
                tracing::warn!(error = %e, "sweeping idempotency records failed");
            }
        });
    }
}

async fn commit(
    store: &dyn dcb_core::EventStore,
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
) -> Result<(), StoreError> {
    store
        .commit_state(StateCommit {
            consumer: IDEMPOTENCY_CONSUMER.to_owned(),
            writes,
            checkpoint: None,
            ..StateCommit::default()
        })
        .await
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

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The principal of a request: the hex SHA-256 of its `Authorization` header value(s), or
/// [`ANONYMOUS`].
pub fn principal(headers: &HeaderMap) -> String {
    let mut values = headers.get_all(header::AUTHORIZATION).iter().peekable();
    if values.peek().is_none() {
        return ANONYMOUS.to_owned();
    }
    let mut hash = Sha256::new();
    for v in values {
        hash.update(v.as_bytes());
        hash.update(b"\n");
    }
    hex(&hash.finalize())
}

/// The parts of a request its fingerprint covers.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The method.
    pub method: &'a Method,
    /// The matched route, e.g. `/api/lists/{listId}`.
    pub route: &'a str,
    /// The request target: path and query.
    pub target: &'a str,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a [u8]>,
    /// The principal ([`principal`]).
    pub principal: &'a str,
    /// The body.
    pub body: &'a [u8],
}

/// The fingerprint of a request: hex SHA-256 over its parts, each length-prefixed.
pub fn fingerprint(parts: &RequestParts<'_>) -> String {
    let mut hash = Sha256::new();
    let content_type = parts.content_type.map(|c| {
        let mut v = vec![1u8];
        v.extend_from_slice(c);
        v
    });
    for field in [
        parts.method.as_str().as_bytes(),
        parts.route.as_bytes(),
        parts.target.as_bytes(),
        content_type.as_deref().unwrap_or(&[0]),
        parts.principal.as_bytes(),
        parts.body,
    ] {
        hash.update((field.len() as u64).to_be_bytes());
        hash.update(field);
    }
    hex(&hash.finalize())
}

fn record_key(principal: &str, key: &str) -> Vec<u8> {
    format!("r/{principal}/{key}").into_bytes()
}

fn index_key(expires_at_ms: u64, principal: &str, key: &str) -> Vec<u8> {
    format!("x/{expires_at_ms:016x}/{principal}/{key}").into_bytes()
}

/// `x/{16 hex}/{principal}/{key}` → (expiry, `r/{principal}/{key}`).
fn parse_index_key(k: &[u8]) -> Option<(u64, Vec<u8>)> {
    let rest = k.strip_prefix(b"x/")?;
    let (digits, tail) = (rest.get(..16)?, rest.get(16..)?);
    let tail = tail.strip_prefix(b"/")?;
    let expires = u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
    let mut record = b"r/".to_vec();
    record.extend_from_slice(tail);
    Some((expires, record))
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

impl IdempotencyRecord {
    /// Decodes a stored record (bytes from the store: a damaged one is an error, which the
    /// middleware logs and ignores, never a panic).
    pub fn decode(raw: &[u8]) -> Result<IdempotencyRecord, serde_json::Error> {
        serde_json::from_slice(raw)
    }

    /// The response this record replays: its status (200 if the stored one is not a valid
    /// status), body and content type (dropped if it is not a valid header value), and
    /// `Idempotent-Replayed: true`.
    pub fn into_response(self) -> Response {
        replay(self)
    }
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

/// The middleware (use with `axum::middleware::from_fn_with_state`, as a layer of the router
/// so that it runs after routing and sees the matched route).
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
    let Some(route) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        // No route matched: the fallback answers (404), and nothing is looked up or stored.
        return next.run(request).await;
    };
    match with_key(state, value.clone(), route, request, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn with_key(
    state: Idempotency,
    value: HeaderValue,
    route: String,
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
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let who = principal(&parts.headers);
    let print = fingerprint(&RequestParts {
        method: &parts.method,
        route: &route,
        target: &target,
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
        principal: &who,
        body: &bytes,
    });
    let store = state.runtime.store();
    let now_ms = millis(state.runtime.env().now());
    state.maybe_sweep(now_ms);

    let scoped = format!("{who}/{key}");
    let _guard = {
        let mut set = state.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(scoped.clone()) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_in_progress",
                "a request with this Idempotency-Key is in progress",
            ));
        }
        InFlight {
            set: state.in_flight.clone(),
            key: scoped,
        }
    };

    let rkey = record_key(&who, &key);
    let mut stale_index = None;
    if let Some(raw) = store.get_state(IDEMPOTENCY_CONSUMER, &rkey).await? {
        match IdempotencyRecord::decode(&raw) {
            Ok(record) if now_ms < record.expires_at_ms => {
                if record.fingerprint == print {
                    return Ok(replay(record));
                }
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                ));
            }
            Ok(expired) => stale_index = Some(index_key(expired.expires_at_ms, &who, &key)),
            Err(e) => tracing::warn!(error = %e, "unreadable idempotency record ignored"),
        }
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if !response.status().is_success() {
        return Ok(response);
    }
    let recordable = response
        .body()
        .size_hint()
        .upper()
        .is_some_and(|n| n <= MAX_RECORDED_BODY as u64);
    if !recordable {
        tracing::warn!(
            key,
            "response not recorded for idempotency: its body may exceed {MAX_RECORDED_BODY} bytes"
        );
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_RECORDED_BODY)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the response body: {e}")))?;
    let Ok(text) = std::str::from_utf8(&body) else {
        tracing::warn!(key, "response not recorded for idempotency: not UTF-8");
        return Ok(Response::from_parts(parts, Body::from(body)));
    };
    let ttl_ms = u64::try_from(state.ttl.as_millis()).unwrap_or(u64::MAX);
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    let record = IdempotencyRecord {
        fingerprint: print,
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: text.to_owned(),
        recorded_at_ms: now_ms,
        expires_at_ms,
    };
    let recorded = match serde_json::to_vec(&record) {
        Ok(value) => {
            let mut writes = vec![
                (rkey, Some(value)),
                (index_key(expires_at_ms, &who, &key), Some(Vec::new())),
            ];
            if let Some(old) = stale_index {
                writes.push((old, None));
            }
            commit(store, writes).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = recorded {
        // The request did take effect; a retry with this key will run it again.
        tracing::error!(error = %e, key, "cannot record the idempotent response");
        parts
            .headers
            .insert("idempotency-not-recorded", HeaderValue::from_static("true"));
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
