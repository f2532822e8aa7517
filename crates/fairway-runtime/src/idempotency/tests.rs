//! The idempotency middleware against a small router on the reference store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::routing::{patch, post};
use tower::ServiceExt as _;

use super::*;
use crate::TestEnv;
use crate::http::JsonBody;

fn parts<'a>(
    route: &'a str,
    ct: Option<&'a [u8]>,
    who: &'a str,
    body: &'a [u8],
) -> RequestParts<'a> {
    RequestParts {
        method: &Method::POST,
        route,
        target: "/a",
        content_type: ct,
        principal: who,
        body,
    }
}

#[test]
fn fingerprints_cover_method_route_target_content_type_principal_and_body() {
    let json = Some(&b"application/json"[..]);
    let a = fingerprint(&parts("/a", json, ANONYMOUS, b"{}"));
    assert_eq!(a, fingerprint(&parts("/a", json, ANONYMOUS, b"{}")));
    let mut put = parts("/a", json, ANONYMOUS, b"{}");
    put.method = &Method::PUT;
    assert_ne!(a, fingerprint(&put));
    assert_ne!(a, fingerprint(&parts("/{x}", json, ANONYMOUS, b"{}")));
    let mut other_target = parts("/a", json, ANONYMOUS, b"{}");
    other_target.target = "/a?x=1";
    assert_ne!(a, fingerprint(&other_target));
    assert_ne!(a, fingerprint(&parts("/a", None, ANONYMOUS, b"{}")));
    assert_ne!(
        a,
        fingerprint(&parts("/a", Some(b"text/plain"), ANONYMOUS, b"{}"))
    );
    assert_ne!(a, fingerprint(&parts("/a", json, "abc", b"{}")));
    assert_ne!(a, fingerprint(&parts("/a", json, ANONYMOUS, b"{ }")));
    // Length prefixes: moving bytes between fields changes the fingerprint.
    assert_ne!(
        fingerprint(&parts("/ab", json, ANONYMOUS, b"")),
        fingerprint(&parts("/a", json, ANONYMOUS, b"b"))
    );
}

#[test]
fn principals_hash_the_authorization_header() {
    let mut h = HeaderMap::new();
    assert_eq!(principal(&h), ANONYMOUS);
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
    let a = principal(&h);
    assert_eq!(a.len(), 64);
    assert!(!a.contains("Bearer"));
    h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
    assert_ne!(principal(&h), a);
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

#[test]
fn index_keys_round_trip() {
    let k = index_key(0x1234, "anonymous", "k/1");
    assert_eq!(
        parse_index_key(&k),
        Some((0x1234, b"r/anonymous/k/1".to_vec()))
    );
    assert_eq!(parse_index_key(b"x/zz"), None);
}

#[derive(Debug, serde::Deserialize)]
struct Thing {
    name: String,
}

/// A router whose handlers count their calls: `POST /things` answers 201 (or 503 while `fail`
/// is set); `POST /json` takes a JSON body (415 without the JSON content type); `PATCH /me`
/// answers 401 unless `Authorization: Bearer good`, else 204. Unknown routes get 404.
fn app(idem: Idempotency, calls: Arc<AtomicU32>, fail: Arc<AtomicU32>) -> Router {
    let (c1, c2, c3) = (calls.clone(), calls.clone(), calls);
    Router::new()
        .route(
            "/things",
            post(move |body: String| async move {
                let n = c1.fetch_add(1, Ordering::SeqCst) + 1;
                if fail.load(Ordering::SeqCst) > 0 {
                    return (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned());
                }
                (StatusCode::CREATED, format!("call {n}: {body}"))
            }),
        )
        .route(
            "/json",
            post(move |JsonBody(t): JsonBody<Thing>| async move {
                let n = c2.fetch_add(1, Ordering::SeqCst) + 1;
                (StatusCode::CREATED, format!("call {n}: {}", t.name))
            }),
        )
        .route(
            "/me",
            patch(move |headers: HeaderMap| async move {
                let n = c3.fetch_add(1, Ordering::SeqCst) + 1;
                let ok = headers
                    .get(header::AUTHORIZATION)
                    .is_some_and(|v| v.as_bytes().starts_with(b"Bearer good"));
                if ok {
                    (StatusCode::NO_CONTENT, String::new())
                } else {
                    (StatusCode::UNAUTHORIZED, format!("call {n}: who?"))
                }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(idem, middleware))
}

fn rt() -> (Runtime, Arc<TestEnv>) {
    let env = Arc::new(TestEnv::new());
    (
        Runtime::with_env(Arc::new(dcb_core::MemoryStore::new()), env.clone()),
        env,
    )
}

struct Req<'a> {
    method: &'a str,
    path: &'a str,
    key: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a str,
}

fn req<'a>(path: &'a str, key: Option<&'a str>, body: &'a str) -> Req<'a> {
    Req {
        method: "POST",
        path,
        key,
        headers: Vec::new(),
        body,
    }
}

async fn send(app: &Router, r: Req<'_>) -> (StatusCode, String, bool) {
    let mut b = Request::builder().method(r.method).uri(r.path);
    if let Some(k) = r.key {
        b = b.header(IDEMPOTENCY_HEADER, k);
    }
    for (n, v) in r.headers {
        b = b.header(n, v);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::from(r.body.to_owned())).unwrap())
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

async fn stored(rt: &Runtime) -> usize {
    rt.store()
        .scan_state(IDEMPOTENCY_CONSUMER, b"", None, 1_000_000)
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn the_first_response_is_replayed_and_a_different_request_refused() {
    let (rt, _) = rt();
    let calls = Arc::new(AtomicU32::new(0));
    let fail = Arc::new(AtomicU32::new(0));
    let app = app(
        Idempotency::new(rt.clone(), 1024),
        calls.clone(),
        fail.clone(),
    );

    let first = send(&app, req("/things", Some("k1"), "a")).await;
    assert_eq!(first, (StatusCode::CREATED, "call 1: a".into(), false));
    let again = send(&app, req("/things", Some("k1"), "a")).await;
    assert_eq!(again, (StatusCode::CREATED, "call 1: a".into(), true));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (status, body, _) = send(&app, req("/things", Some("k1"), "b")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("idempotency_key_reused"), "{body}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Without a key, or with another one, the handler runs.
    assert_eq!(send(&app, req("/things", None, "a")).await.1, "call 2: a");
    assert_eq!(
        send(&app, req("/things", Some("k2"), "a")).await.1,
        "call 3: a"
    );

    // A record lives in the store: a fresh middleware on the same store replays it.
    let other = super::tests::app(Idempotency::new(rt, 1024), Arc::default(), fail);
    assert_eq!(
        send(&other, req("/things", Some("k1"), "a")).await,
        (StatusCode::CREATED, "call 1: a".into(), true)
    );
}

#[tokio::test]
async fn server_errors_are_not_recorded() {
    let (rt, _) = rt();
    let calls = Arc::new(AtomicU32::new(0));
    let fail = Arc::new(AtomicU32::new(1));
    let app = app(Idempotency::new(rt, 1024), calls.clone(), fail.clone());
    assert_eq!(
        send(&app, req("/things", Some("k"), "x")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    fail.store(0, Ordering::SeqCst);
    assert_eq!(
        send(&app, req("/things", Some("k"), "x")).await,
        (StatusCode::CREATED, "call 2: x".into(), false)
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let (rt, _) = rt();
    let app = app(Idempotency::new(rt, 1024), Arc::default(), Arc::default());
    let big = "x".repeat(2048);
    let (status, body, _) = send(&app, req("/things", Some("k"), &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains("body_too_large"), "{body}");
}

/// The bug it pins: every response was recorded, 404s of unknown routes included, and nothing
/// was ever deleted (100 000 keys grew the store from 184 kB to 49.9 MB).
#[tokio::test]
async fn regression_unknown_routes_and_refusals_store_no_idempotency_record() {
    let (rt, _) = rt();
    let app = app(
        Idempotency::new(rt.clone(), 1024),
        Arc::default(),
        Arc::default(),
    );
    for i in 0..500 {
        let key = format!("k{i}");
        let (status, _, _) = send(&app, req(&format!("/nope/{i}"), Some(&key), "x")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = send(&app, req("/json", Some(&key), "{}")).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    assert_eq!(stored(&rt).await, 0, "records of 404s and 415s were stored");
}

/// The bug it pins: a 401 from a bad token was replayed after retrying with a valid one, and a
/// 415 after fixing the content type.
#[tokio::test]
async fn regression_a_refused_request_is_not_replayed_after_the_client_fixes_it() {
    let (rt, _) = rt();
    let calls = Arc::new(AtomicU32::new(0));
    let app = app(Idempotency::new(rt, 1024), calls.clone(), Arc::default());

    let mut bad = req("/me", Some("p1"), "{}");
    bad.method = "PATCH";
    bad.headers = vec![("authorization", "Bearer bad")];
    assert_eq!(send(&app, bad).await.0, StatusCode::UNAUTHORIZED);
    let mut good = req("/me", Some("p1"), "{}");
    good.method = "PATCH";
    good.headers = vec![("authorization", "Bearer good")];
    assert_eq!(
        send(&app, good).await,
        (StatusCode::NO_CONTENT, String::new(), false),
        "the 401 was replayed to the valid token"
    );

    let body = r#"{"name":"n"}"#;
    let plain = req("/json", Some("j1"), body);
    assert_eq!(
        send(&app, plain).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let mut json = req("/json", Some("j1"), body);
    json.headers = vec![("content-type", "application/json")];
    let (status, text, replayed) = send(&app, json).await;
    assert_eq!(status, StatusCode::CREATED, "the 415 was replayed: {text}");
    assert!(!replayed);
}

/// The bug it pins: keys were global, so user A's `PATCH` 204 was replayed to an anonymous
/// request (and to anyone else) presenting the same key and body.
#[tokio::test]
async fn regression_keys_are_scoped_per_principal() {
    let (rt, _) = rt();
    let calls = Arc::new(AtomicU32::new(0));
    let app = app(Idempotency::new(rt, 1024), calls.clone(), Arc::default());
    let patch_as = |auth: Option<&'static str>| {
        let mut r = req("/me", Some("details-1"), r#"{"bio":"x"}"#);
        r.method = "PATCH";
        if let Some(a) = auth {
            r.headers = vec![("authorization", a)];
        }
        r
    };
    assert_eq!(
        send(&app, patch_as(Some("Bearer good-a"))).await,
        (StatusCode::NO_CONTENT, String::new(), false)
    );
    assert_eq!(
        send(&app, patch_as(Some("Bearer good-a"))).await,
        (StatusCode::NO_CONTENT, String::new(), true),
        "same principal: replayed"
    );
    let (status, _, replayed) = send(&app, patch_as(None)).await;
    assert_eq!(
        (status, replayed),
        (StatusCode::UNAUTHORIZED, false),
        "A's 204 was replayed to an anonymous request"
    );
    let (status, _, replayed) = send(&app, patch_as(Some("Bearer good-b"))).await;
    assert_eq!((status, replayed), (StatusCode::NO_CONTENT, false));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// Records are honoured for their TTL and then deleted by the sweep, so storage is bounded.
#[tokio::test]
async fn records_expire_and_the_sweep_deletes_them() {
    const N: usize = 2_000;
    let (rt, env) = rt();
    let idem = Idempotency::new(rt.clone(), 1024).ttl(Duration::from_secs(3600));
    let calls = Arc::new(AtomicU32::new(0));
    let app = app(idem.clone(), calls.clone(), Arc::default());
    for i in 0..N {
        let key = format!("key-{i}");
        let (status, _, _) = send(&app, req("/things", Some(&key), "a")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // A record and an expiry entry per key.
    assert_eq!(stored(&rt).await, 2 * N);
    env.advance(Duration::from_secs(1800));
    assert_eq!(idem.sweep().await.unwrap(), 0);
    assert!(send(&app, req("/things", Some("key-7"), "a")).await.2);

    env.advance(Duration::from_secs(1801));
    // Expired: the key runs again (and records anew), the rest is deleted by the sweep.
    let (status, body, replayed) = send(&app, req("/things", Some("key-7"), "a")).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false), "{body}");
    assert_eq!(idem.sweep().await.unwrap(), N - 1);
    assert_eq!(
        stored(&rt).await,
        2,
        "only key-7's new record and its expiry entry remain"
    );
    assert!(send(&app, req("/things", Some("key-7"), "a")).await.2);
    assert_eq!(calls.load(Ordering::SeqCst), (N + 1) as u32);
}

/// Records of earlier versions (`k/{key}`, not scoped) are deleted by the first sweep.
#[tokio::test]
async fn the_sweep_deletes_unscoped_records_of_earlier_versions() {
    let (rt, _) = rt();
    let writes = (0..1200)
        .map(|i| (format!("k/old-{i}").into_bytes(), Some(b"{}".to_vec())))
        .collect();
    commit(rt.store(), writes).await.unwrap();
    let idem = Idempotency::new(rt.clone(), 1024);
    assert_eq!(idem.sweep().await.unwrap(), 1200);
    assert_eq!(stored(&rt).await, 0);
}

/// A second request with the key while the first runs is 409; afterwards it is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_duplicate_is_409() {
    let (rt, _) = rt();
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let app = Router::new()
        .route(
            "/slow",
            post(move || {
                let (e, r) = (e.clone(), r.clone());
                async move {
                    e.notify_one();
                    r.notified().await;
                    (StatusCode::CREATED, "done")
                }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            Idempotency::new(rt, 1024),
            middleware,
        ));
    let first = tokio::spawn({
        let app = app.clone();
        async move { send(&app, req("/slow", Some("s"), "")).await }
    });
    entered.notified().await;
    let (status, body, _) = send(&app, req("/slow", Some("s"), "")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("idempotency_in_progress"), "{body}");
    release.notify_one();
    assert_eq!(first.await.unwrap().0, StatusCode::CREATED);
    assert!(send(&app, req("/slow", Some("s"), "")).await.2);
}
