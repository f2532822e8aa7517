//! Fuzz target bodies for what the host decodes from clients: session tokens and JSON bodies
//! through every module's route. Like `targets.rs`, this file is also compiled by
//! `crates/fairway-reliability`'s tests (with `#[path]`) and run on stable there.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use dcb_core::{EventStore, MemoryStore, Position};
use fairway_runtime::idempotency::{IdempotencyRecord, REPLAYED_HEADER};
use fairway_runtime::{Host, Mailer, MemoryMailer, Module, Runtime, Secrets};
use tower::ServiceExt as _;
use users_events::UserId;
use users_events::token::{TokenError, sign, verify};

/// The signing key of the token target.
pub const TOKEN_KEY: [u8; 32] = [7; 32];

/// "Now" for the token target.
pub fn token_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A valid token of the token target (a seed).
pub fn valid_token() -> String {
    let user = UserId::parse("u1").expect("a valid user id");
    let version = Position::new(42).expect("a position");
    sign(
        &TOKEN_KEY,
        &user,
        version,
        token_now() - Duration::from_secs(60),
    )
    .expect("signing with a 32-byte key")
}

/// Session tokens: any text is refused with a typed error or verifies; what verifies was signed
/// with our key, so re-signing its claims verifies to the same user and version; nothing
/// verifies with another key or with a key shorter than 32 bytes.
pub fn token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match verify(&TOKEN_KEY, &text, token_now()) {
        Ok(v) => {
            let again = sign(&TOKEN_KEY, &v.user, v.version, token_now())
                .expect("signing with a 32-byte key");
            assert_eq!(verify(&TOKEN_KEY, &again, token_now()), Ok(v.clone()));
            assert!(
                verify(&[8; 32], &text, token_now()).is_err(),
                "a token verified under two keys"
            );
        }
        Err(
            TokenError::Malformed
            | TokenError::BadSignature
            | TokenError::Expired
            | TokenError::Revoked,
        ) => {}
        Err(TokenError::WeakKey) => panic!("a 32-byte key is not weak"),
    }
    assert_eq!(
        verify(b"", &text, token_now()),
        Err(TokenError::WeakKey),
        "an empty key must never verify"
    );
}

/// Stored idempotency records (bytes from the store): any bytes decode to a record or an error;
/// a decoded record replays as a response with its status (200 when the stored one is not a
/// status), its body unchanged and the replayed marker; never a panic.
pub fn idempotency_record(data: &[u8]) {
    let Ok(record) = IdempotencyRecord::decode(data) else {
        return;
    };
    let status = record.status;
    let body = record.body.clone();
    let res = record.into_response();
    match axum::http::StatusCode::from_u16(status) {
        Ok(s) => assert_eq!(res.status(), s),
        Err(_) => assert_eq!(res.status(), axum::http::StatusCode::OK),
    }
    assert_eq!(
        res.headers()
            .get(REPLAYED_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let bytes = futures::executor::block_on(axum::body::to_bytes(res.into_body(), usize::MAX))
        .expect("an in-memory body");
    assert_eq!(bytes, body.as_bytes(), "the replayed body differs");
}

/// The modules the `module_json` target drives: the example apps' modules (the host's list in
/// `crates/fairway/src/modules.rs` when this was written). A new module is fuzzed once it is
/// added here and to `fuzz/Cargo.toml` (and, for the stable run, to `fairway-reliability`'s
/// dev-dependencies); the list is not generated so that `cargo xtask new-module` never has to
/// touch the test crates.
pub fn modules() -> Vec<Module> {
    vec![
        courses_change_capacity::module(),
        courses_define_course::module(),
        courses_subscribe_student::module(),
        invoices_create_invoice::module(),
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

/// Sends `req` through `router`; the status and the body (at most `limit` bytes). Every answer
/// must be below 500.
async fn send(
    router: &Router,
    req: Request<Body>,
    limit: usize,
    what: &str,
) -> (u16, axum::body::Bytes) {
    let res = router
        .clone()
        .oneshot(req)
        .await
        .expect("the router is infallible");
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), limit)
        .await
        .expect("a bounded body");
    assert!(
        status < 500,
        "{what}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    (status, bytes)
}

struct App {
    router: Router,
    store: MemoryStore,
    routes: Vec<(String, String)>,
    rt: tokio::runtime::Runtime,
    /// The workers' stop trigger and handles, kept for the life of the process.
    _workers: (
        fairway_runtime::ShutdownTrigger,
        Vec<tokio::task::JoinHandle<()>>,
    ),
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let store = MemoryStore::new();
        let runtime = Runtime::new(Arc::new(store.clone()))
            .with_service(Arc::new(MemoryMailer::new()) as Arc<dyn Mailer>)
            .with_service(Secrets::ephemeral());
        let host = Host::new(runtime, modules());
        let mut routes = Vec::new();
        for m in host.catalog() {
            // The routes that take a body; views' GETs have none.
            for r in m
                .routes
                .iter()
                .filter(|r| matches!(r.method, "POST" | "PUT" | "PATCH"))
            {
                // Every path parameter becomes the same valid id.
                let path = r
                    .path
                    .split('/')
                    .map(|seg| if seg.starts_with('{') { "fz" } else { seg })
                    .collect::<Vec<_>>()
                    .join("/");
                routes.push((r.method.to_owned(), path));
            }
        }
        routes.sort();
        let router = host.router();
        // The views and automations run on this runtime whenever a request is driven.
        let workers = {
            let _guard = rt.enter();
            let (trigger, shutdown) = fairway_runtime::shutdown_channel();
            (trigger, host.spawn_workers(shutdown))
        };
        App {
            router,
            store,
            routes,
            rt,
            _workers: workers,
        }
    })
}

/// JSON bodies through every module route that takes one (the host's router, no sockets): the first byte picks
/// the route and whether a (bogus or valid-looking) bearer token goes along; the rest is the
/// body. Every answer is below 500, every refusal carries the JSON error shape
/// `{"error":{"code","message"}}`, and a refusal writes nothing.
pub fn module_json(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    // "A refusal writes nothing" holds per request: requests of this target run one at a time
    // even when several test threads call it (the fuzzer itself runs one input at a time).
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let app = app();
    if app.routes.is_empty() {
        return;
    }
    let (method, path) = &app.routes[usize::from(pick) % app.routes.len()];
    let auth = match pick / 64 {
        0 => None,
        1 => Some("Bearer not-a-token".to_owned()),
        2 => Some(format!("Bearer {}", valid_token())),
        _ => Some(format!("Basic {}", String::from_utf8_lossy(body))),
    };
    app.rt.block_on(async {
        let before = app.store.head().await.expect("the memory store's head");
        let mut req = Request::builder()
            .method(method.as_str())
            .uri(path.as_str())
            .header("content-type", "application/json");
        if let Some(a) = &auth
            && let Ok(v) = axum::http::HeaderValue::from_str(a)
        {
            req = req.header("authorization", v);
        }
        let req = req.body(Body::from(body.to_vec())).expect("a request");
        let what = format!("{method} {path}");
        let (status, bytes) = send(&app.router, req, 1 << 20, &what).await;
        if status >= 400 {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            // axum's own rejections before a handler (e.g. a missing content type) are plain
            // text here; the binary's json_errors layer reshapes them.
            if !v.is_null() {
                assert!(
                    v["error"]["code"].as_str().is_some_and(|c| !c.is_empty())
                        && v["error"]["message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty()),
                    "{method} {path}: {status} without the error shape: {v}"
                );
            }
            // The automations run beside the requests and append their own output (the welcome
            // email's record) at any moment: a refusal must write nothing else.
            let mut options = dcb_core::ReadOptions::new();
            if let Some(b) = before {
                options = options.after(b);
            }
            let written = app
                .store
                .read(dcb_core::Query::All, options)
                .await
                .expect("a memory read")
                .collect_all()
                .await
                .expect("a memory read");
            let foreign: Vec<&str> = written
                .iter()
                .map(|e| e.event.event_type.as_str())
                .filter(|t| !AUTOMATION_OUTPUT.contains(t))
                .collect();
            assert!(
                foreign.is_empty(),
                "{method} {path}: a refusal ({status}) wrote {foreign:?}"
            );
        }
    });
}

/// Event types the example apps' automations append by themselves (not in answer to the request
/// being checked).
const AUTOMATION_OUTPUT: &[&str] = &["WelcomeEmailSent"];

struct ConsoleApp {
    router: Router,
    rt: tokio::runtime::Runtime,
}

/// Events the console target's store holds: more than the console's largest page.
pub const CONSOLE_EVENTS: u64 = 600;

fn console_app() -> &'static ConsoleApp {
    static APP: OnceLock<ConsoleApp> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let store = MemoryStore::new();
        rt.block_on(async {
            for i in 0..CONSOLE_EVENTS {
                let e = dcb_core::Event::new(if i % 2 == 0 { "A" } else { "B" }, b"{}".to_vec())
                    .tag(format!("t:{}", i % 7));
                store.append(vec![e], Vec::new()).await.expect("an append");
            }
        });
        let runtime = Runtime::new(Arc::new(store))
            .with_service(Arc::new(MemoryMailer::new()) as Arc<dyn Mailer>)
            .with_service(Secrets::ephemeral());
        let host = Arc::new(Host::new(runtime.clone(), modules()));
        let token = fairway_console::AdminToken::new("fuzz-admin-token-0123456789abcdef")
            .expect("a valid admin token");
        let router = fairway_console::Console::new(runtime, host, token).router();
        ConsoleApp { router, rt }
    })
}

/// The console's query parameters and path segments (its read API, no sockets): the first byte
/// picks the route, the rest is the query string or the path segment. Every answer is below
/// 500, a refusal carries the JSON error shape, and no page holds more than 500 events. Returns
/// the status (`None` when the input is not a request).
pub fn console_params(data: &[u8]) -> Option<u16> {
    let (&pick, rest) = data.split_first()?;
    let text = String::from_utf8_lossy(rest);
    let uri = match pick % 6 {
        0 | 1 => format!("/api/events?{text}"),
        2 => format!("/api/events/{text}"),
        3 => format!("/api/automations/{text}/dead-letters"),
        4 => format!("/api/views?{text}"),
        _ => format!("/api/store?{text}"),
    };
    // What a client cannot send is not a request: the URI must parse.
    let uri = uri.parse::<axum::http::Uri>().ok()?;
    // The live tail is a stream that never ends by design; its parameters are the list's.
    if uri.path().trim_end_matches('/') == "/api/events/live" {
        return None;
    }
    let app = console_app();
    app.rt.block_on(async {
        let req = Request::builder()
            .method("GET")
            .uri(uri.clone())
            .header("host", "127.0.0.1")
            .body(Body::empty())
            .expect("a request");
        let (status, bytes) = send(&app.router, req, 16 << 20, &uri.to_string()).await;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if status >= 400 {
            assert!(
                v["error"]["code"].as_str().is_some_and(|c| !c.is_empty())
                    && v["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                "{uri}: {status} without the error shape: {}",
                String::from_utf8_lossy(&bytes)
            );
        } else if let Some(events) = v["events"].as_array() {
            assert!(
                events.len() <= 500,
                "{uri}: a page of {} events",
                events.len()
            );
        }
        Some(status)
    })
}
