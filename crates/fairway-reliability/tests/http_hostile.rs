//! Hostile HTTP input through the host's router (`Host::router` + tower `oneshot`, no sockets),
//! with every module of the three apps: malformed, oversized and deeply nested JSON, non-UTF-8,
//! control characters, path traversal and overlong ids, negative and overflowing positions in
//! URLs, plus random bodies and paths (proptest). Every answer must be below 500, a 4xx must
//! carry the JSON error shape `{"error":{"code","message"}}`, and nothing may be written.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use dcb_core::MemoryStore;
use fairway_runtime::{Host, Mailer, MemoryMailer, Runtime, Secrets, shutdown_channel};
use proptest::prelude::*;
use tower::ServiceExt as _;

fn modules() -> Vec<fairway_runtime::Module> {
    vec![
        library_borrow_book::module(),
        library_borrowed_books::module(),
        library_return_book::module(),
        todo_add_item::module(),
        todo_complete_item::module(),
        todo_create_list::module(),
        todo_list_view::module(),
        users_change_details::module(),
        users_change_email::module(),
        users_change_password::module(),
        users_current_user::module(),
        users_login::module(),
        users_register_user::module(),
        users_welcome_email::module(),
    ]
}

struct App {
    router: Router,
    store: MemoryStore,
    rt: tokio::runtime::Runtime,
}

/// One host (with its workers) shared by the tests of this file, on its own tokio runtime.
fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(new_app)
}

/// A host of its own (for a test that breaks it).
fn new_app() -> App {
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let store = MemoryStore::new();
        let runtime = Runtime::new(Arc::new(store.clone()))
            .with_service(Arc::new(MemoryMailer::new()) as Arc<dyn Mailer>)
            .with_service(Secrets::ephemeral());
        let host = Host::new(runtime, modules());
        let router = host.router();
        let _guard = rt.enter();
        let (trigger, shutdown) = shutdown_channel();
        let workers = host.spawn_workers(shutdown);
        std::mem::forget((trigger, workers));
        App { router, store, rt }
    }
}

/// The tests share one host and check that refused requests write nothing: run them one at a
/// time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error message of a refusal: the JSON error shape, or (for rejections axum produces before
/// a handler runs, e.g. an undecodable query string) plain text, which the `fairway` binary's
/// `json_errors` layer rewrites into the JSON shape (checked in `auth_and_logs.rs`).
fn message(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
    match (
        json["error"]["code"].as_str(),
        json["error"]["message"].as_str(),
    ) {
        (Some(c), Some(m)) if !c.is_empty() && !m.is_empty() => Some(m.to_owned()),
        _ if json.is_null() && !body.is_empty() => Some(String::from_utf8_lossy(body).into_owned()),
        _ => None,
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

fn call(method: &str, uri: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
    call_in(app(), method, uri, content_type, body)
}

fn call_in(
    app: &App,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    app.rt.block_on(async {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = match req.body(Body::from(body)) {
            Ok(r) => r,
            // Not even a valid HTTP request (e.g. a space in the URI): hyper rejects it first.
            Err(_) => {
                return Answer {
                    status: 400,
                    body: br#"{"error":{"code":"bad_request","message":"invalid request"}}"#
                        .to_vec(),
                };
            }
        };
        let resp = app.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec();
        Answer { status, body }
    })
}

/// The last event a request could have written: the welcome automation appends in the
/// background after a registration, so its events do not count.
fn head() -> Option<dcb_core::Position> {
    app()
        .store
        .snapshot()
        .iter()
        .rev()
        .find(|e| e.event.event_type != "WelcomeEmailSent")
        .map(|e| e.position)
}

/// The request must be refused with `status` and the JSON error shape, writing nothing.
#[track_caller]
fn refused(method: &str, uri: &str, body: &[u8], status: u16) -> serde_json::Value {
    let before = head();
    let a = call(method, uri, Some("application/json"), body.to_vec());
    let json = a.json();
    assert_eq!(
        a.status,
        status,
        "{method} {uri}: {}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(
        message(&a.body).is_some(),
        "{method} {uri}: no error message: {}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(head(), before, "{method} {uri} wrote something");
    json
}

#[test]
fn malformed_oversized_and_deep_json_bodies() {
    let _serial = serial();
    let json = refused("POST", "/api/lists/l1", b"{\"name\": ", 400);
    assert_eq!(json["error"]["code"], "malformed_json");
    refused("POST", "/api/lists/l1", b"[]", 400);
    refused("POST", "/api/lists/l1", b"{\"name\": 42}", 400);
    refused("POST", "/api/lists/l1", b"{}", 400);
    // Over the 64 KiB body limit.
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    let json = refused("POST", "/api/lists/l1", big.as_bytes(), 413);
    assert_eq!(json["error"]["code"], "body_too_large");
    // Nesting within the size limit, far beyond serde_json's recursion limit (128).
    let deep = format!("{{\"name\":{}1{}}}", "[".repeat(20_000), "]".repeat(20_000));
    refused("POST", "/api/lists/l1", deep.as_bytes(), 400);
    let deep = format!("{}{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    refused("POST", "/api/users", deep.as_bytes(), 400);
    // Non-UTF-8 inside a JSON string, lone surrogates, NUL bytes.
    refused("POST", "/api/lists/l1", b"{\"name\":\"a\xff\xfe\"}", 400);
    refused("POST", "/api/lists/l1", br#"{"name":"\ud800"}"#, 400);
    refused("POST", "/api/lists/l1", b"{\"name\":\"a\x00b\"}", 400);
    // Wrong content type.
    let before = head();
    let a = call(
        "POST",
        "/api/lists/l1",
        Some("text/plain"),
        b"{\"name\":\"x\"}".to_vec(),
    );
    assert_eq!(a.status, 415);
    let a2 = call("POST", "/api/lists/l1", None, b"{\"name\":\"x\"}".to_vec());
    assert_eq!(a2.status, 415);
    assert_eq!(head(), before);
    // Huge numbers and a huge tag count in a body field the module validates.
    refused(
        "POST",
        "/api/books/b1/borrow",
        br#"{"borrowerId": 1e999}"#,
        400,
    );
    let many = format!("{{\"borrowerId\":[{}]}}", vec!["\"p\""; 10_000].join(","));
    refused("POST", "/api/books/b1/borrow", many.as_bytes(), 400);
}

#[test]
fn control_characters_traversal_and_overlong_ids() {
    let _serial = serial();
    for id in [
        "..%2F..%2Fetc%2Fpasswd",
        "a%2Fb",
        "a%00b",
        "a%0Ab",
        "a%1B%5B31m",
        "%E2%80%AE",
        "%FF%FE",
        "%C0%AF",
    ] {
        refused("POST", &format!("/api/lists/{id}"), br#"{"name":"x"}"#, 400);
        refused(
            "POST",
            &format!("/api/books/{id}/borrow"),
            br#"{"borrowerId":"p1"}"#,
            400,
        );
    }
    // ".." is not traversal here: ids are tags, never file names; it is an ordinary id where
    // the id rules allow dots (library), refused where they do not (todo).
    refused("POST", "/api/lists/..", br#"{"name":"x"}"#, 400);
    let long = "a".repeat(10_000);
    refused(
        "POST",
        &format!("/api/lists/{long}"),
        br#"{"name":"x"}"#,
        400,
    );
    // Control characters in free text (a list name) are data, not keys: stored JSON-escaped
    // and shown back exactly; in ids (which become tags) they are refused.
    let a = call(
        "POST",
        "/api/lists/ok1",
        Some("application/json"),
        b"{\"name\":\"a\\u0000b\\u001b[2J\"}".to_vec(),
    );
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let shown = call("GET", "/api/lists/ok1", None, Vec::new());
    assert_eq!(shown.json()["name"], "a\u{0}b\u{1b}[2J");
    refused(
        "POST",
        "/api/books/b1/borrow",
        b"{\"borrowerId\":\"p\\u001b[2J\"}",
        400,
    );
    refused(
        "POST",
        "/api/users",
        br#"{"id":"u1","username":"ann\u0007","email":"a@x.io","password":"correct horse"}"#,
        400,
    );
    refused(
        "POST",
        "/api/users",
        format!(
            r#"{{"id":"u1","username":"ann","email":"a@x.io","password":"{}"}}"#,
            "p".repeat(10_000)
        )
        .as_bytes(),
        400,
    );
}

#[test]
fn negative_and_overflowing_positions_in_urls() {
    let _serial = serial();
    for after in [
        "-1",
        "1e3",
        "0x10",
        "%20 1",
        "79228162514264337593543950336",
        "99999999999999999999999999999999999999999",
        "1.5",
        "",
    ] {
        for path in ["/api/lists/l1", "/api/borrowers/p1/books"] {
            let a = call("GET", &format!("{path}?after={after}"), None, Vec::new());
            assert_eq!(
                a.status,
                400,
                "{path}?after={after}: {}",
                String::from_utf8_lossy(&a.body)
            );
            assert!(message(&a.body).is_some(), "{path}?after={after}");
        }
    }
}

/// A todo list whose items together exceed 64 KiB of view state stops the `todo-lists` view:
/// every later event waits behind the failing one, so every list (everyone's) answers 503.
/// Either adding such items must be refused with a 4xx, or the view must keep working.
#[test]
fn regression_big_todo_list_wedges_the_list_view() {
    let app = new_app();
    let a = call_in(
        &app,
        "POST",
        "/api/lists/big",
        Some("application/json"),
        br#"{"name":"Big"}"#.to_vec(),
    );
    assert_eq!(a.status, 201);
    let text = "x".repeat(2000);
    let mut refused_items = 0;
    for i in 0..40 {
        let a = call_in(
            &app,
            "POST",
            &format!("/api/lists/big/items/i{i}"),
            Some("application/json"),
            format!("{{\"text\":\"{text}\"}}").into_bytes(),
        );
        assert!(
            a.status == 201 || (400..500).contains(&a.status),
            "{}",
            a.status
        );
        if a.status != 201 {
            refused_items += 1;
        }
    }
    let a = call_in(
        &app,
        "POST",
        "/api/lists/small-after-big",
        Some("application/json"),
        br#"{"name":"Small"}"#.to_vec(),
    );
    assert_eq!(a.status, 201);
    let other = call_in(&app, "GET", "/api/lists/small-after-big", None, Vec::new());
    assert_eq!(
        other.status,
        200,
        "another user's list after a big one ({refused_items} items refused): {}",
        String::from_utf8_lossy(&other.body)
    );
    let big = call_in(&app, "GET", "/api/lists/big", None, Vec::new());
    assert_eq!(big.status, 200, "{}", String::from_utf8_lossy(&big.body));
}

fn assert_sane(method: &str, uri: &str, a: &Answer) -> Result<(), TestCaseError> {
    prop_assert!(
        a.status < 500,
        "{method} {uri}: {} {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    if a.status >= 400 {
        prop_assert!(
            message(&a.body).is_some(),
            "{method} {uri}: {} {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    Ok(())
}

const POSTS: [&str; 6] = [
    "/api/lists/pl",
    "/api/lists/pl/items/pi",
    "/api/lists/pl/items/pi/complete",
    "/api/books/pb/borrow",
    "/api/books/pb/return",
    "/api/users/login",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random bytes as the body of every POST route: never a 5xx, a 4xx has the error shape,
    /// and a refused request writes nothing.
    #[test]
    fn random_bodies_never_5xx(route in 0..POSTS.len(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
        // Cases of the three properties share one store: compare heads only while no other
        // test can append.
        let _serial = serial();
        let uri = POSTS[route];
        let before = head();
        let a = call("POST", uri, Some("application/json"), body);
        assert_sane("POST", uri, &a)?;
        if a.status >= 400 {
            prop_assert_eq!(head(), before);
        }
    }

    /// Random JSON objects with the routes' field names and hostile values.
    #[test]
    fn random_json_fields_never_5xx(
        route in 0..POSTS.len(),
        fields in proptest::collection::btree_map(
            "name|text|borrowerId|email|password|id|username|[a-z]{1,5}",
            prop_oneof![
                "\\PC{0,40}".prop_map(serde_json::Value::from),
                "[\\x00-\\x1f]{1,3}".prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, serde_json::Value::Number)),
                Just(serde_json::Value::Null),
                Just(serde_json::json!([1, {"a": []}])),
            ],
            0..5),
    ) {
        let _serial = serial();
        let uri = POSTS[route];
        let body = serde_json::to_vec(&fields).unwrap();
        let a = call("POST", uri, Some("application/json"), body);
        assert_sane("POST", uri, &a)?;
    }

    /// Random path segments (percent-encoded bytes) in ids and random `after` values.
    #[test]
    fn random_paths_and_positions_never_5xx(
        seg in proptest::collection::vec(any::<u8>(), 1..40),
        after in "\\PC{0,30}|-?[0-9]{1,45}"
            .prop_filter("a valid position waits for the view", |s| s.parse::<dcb_core::Position>().is_err()),
    ) {
        let _serial = serial();
        let enc: String = seg.iter().map(|b| format!("%{b:02X}")).collect();
        let enc_after: String = after.bytes().map(|b| format!("%{b:02X}")).collect();
        for uri in [
            format!("/api/lists/{enc}"),
            format!("/api/lists/{enc}?after={enc_after}"),
            format!("/api/borrowers/{enc}/books?after={enc_after}"),
        ] {
            let a = call("GET", &uri, None, Vec::new());
            assert_sane("GET", &uri, &a)?;
        }
        let before = head();
        let uri = format!("/api/lists/{enc}");
        let a = call("POST", &uri, Some("application/json"), br#"{"name":"x"}"#.to_vec());
        assert_sane("POST", &uri, &a)?;
        if a.status >= 400 {
            prop_assert_eq!(head(), before);
        }
    }
}

#[test]
fn the_host_still_answers_after_all_this() {
    let _serial = serial();
    let a = call("GET", "/health", None, Vec::new());
    assert_eq!(a.status, 200);
    std::thread::sleep(Duration::from_millis(10));
}
