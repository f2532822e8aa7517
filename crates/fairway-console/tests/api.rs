//! Router tests of the console API: every endpoint, the admin token check, bad parameters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use serde_json::Value;
use support::{Fixture, TOKEN, fixture};
use tower::ServiceExt;

async fn send(
    f: &Fixture,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let res = f
        .app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn json(f: &Fixture, method: &str, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let (status, _, body) = send(f, method, uri, token).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"));
    (status, v)
}

async fn greet(f: &Fixture, name: &str) -> String {
    let (status, v) = json(f, "POST", &format!("/greetings/{name}"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["position"].as_str().unwrap().to_owned()
}

/// Polls `check` every 20 ms for up to 60 s (a guard against a hang, not a clock).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

fn assert_bad_param(status: StatusCode, v: &Value, name: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(name), "{message:?} should name {name}");
}

#[tokio::test]
async fn serves_the_page_and_its_embedded_assets() {
    let f = fixture(Duration::from_secs(5));
    for page in ["/console", "/console/"] {
        let (status, headers, body) = send(&f, "GET", page, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(body.contains("<title>Fairway console</title>"));
        assert!(
            body.contains(r#"<base href="/console/">"#),
            "{page}: {body}"
        );
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "no external resources"
        );
    }
    let (status, headers, js) = send(&f, "GET", "/console/assets/console.js", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.contains("EventSource"));
    let (status, headers, _) = send(&f, "GET", "/console/assets/console.css", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let (status, v) = json(&f, "GET", "/console/api/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn lists_events_newest_first_with_filters_and_paging() {
    let f = fixture(Duration::from_secs(5));
    let a = greet(&f, "ada").await;
    let b = greet(&f, "bob").await;
    let c = greet(&f, "cy").await;

    let (status, v) = json(&f, "GET", "/console/api/events", None).await;
    assert_eq!(status, StatusCode::OK);
    let positions: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_str().unwrap())
        .collect();
    assert_eq!(positions, vec![c.as_str(), b.as_str(), a.as_str()]);
    assert_eq!(v["head"], c.as_str());
    assert_eq!(v["next_before"], Value::Null);
    assert_eq!(v["events"][0]["type"], "Greeted");
    assert_eq!(v["events"][0]["tags"][0], "person:cy");
    assert!(v["events"][0]["recorded_at_ms"].as_u64().unwrap() > 0);

    // Paging: two per page, then the rest from `next_before`.
    let (_, p1) = json(&f, "GET", "/console/api/events?limit=2", None).await;
    assert_eq!(p1["events"].as_array().unwrap().len(), 2);
    assert_eq!(p1["next_before"], b.as_str());
    let next = p1["next_before"].as_str().unwrap();
    let (_, p2) = json(
        &f,
        "GET",
        &format!("/console/api/events?limit=2&before={next}"),
        None,
    )
    .await;
    assert_eq!(p2["events"].as_array().unwrap().len(), 1);
    assert_eq!(p2["events"][0]["position"], a.as_str());
    assert_eq!(p2["next_before"], Value::Null);

    // Filters: tag, type, position range.
    let (_, t) = json(&f, "GET", "/console/api/events?tag=person:bob", None).await;
    assert_eq!(t["events"].as_array().unwrap().len(), 1);
    assert_eq!(t["events"][0]["position"], b.as_str());
    let (_, t) = json(&f, "GET", "/console/api/events?type=Nope", None).await;
    assert_eq!(t["events"].as_array().unwrap().len(), 0);
    let (_, t) = json(
        &f,
        "GET",
        "/console/api/events?type=Nope&type=Greeted&tag=person:cy",
        None,
    )
    .await;
    assert_eq!(t["events"].as_array().unwrap().len(), 1);
    let (_, r) = json(
        &f,
        "GET",
        &format!("/console/api/events?from={b}&to={b}"),
        None,
    )
    .await;
    assert_eq!(r["events"].as_array().unwrap().len(), 1);
    assert_eq!(r["events"][0]["position"], b.as_str());
    let (_, r) = json(&f, "GET", &format!("/console/api/events?from={b}"), None).await;
    assert_eq!(r["events"].as_array().unwrap().len(), 2);

    // Detail: data as JSON, metadata.
    let (status, d) = json(&f, "GET", &format!("/console/api/events/{b}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["data_encoding"], "json");
    assert_eq!(d["data"]["message"], "hello bob");
    assert!(d["metadata"]["recorded_at_ms"].is_string());
    let (status, d) = json(&f, "GET", "/console/api/events/999999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{d}");
}

#[tokio::test]
async fn bad_parameters_are_400_naming_them() {
    let f = fixture(Duration::from_secs(5));
    greet(&f, "ada").await;
    for (uri, name) in [
        ("/console/api/events?limit=abc", "limit"),
        ("/console/api/events?limit=0", "limit"),
        ("/console/api/events?limit=100000", "limit"),
        ("/console/api/events?before=-1", "before"),
        ("/console/api/events?from=1e3", "from"),
        (
            "/console/api/events?to=99999999999999999999999999999999",
            "to",
        ),
        ("/console/api/events?from=5&to=2", "from"),
        ("/console/api/events?limit=1&limit=2", "limit"),
        ("/console/api/events?colour=red", "colour"),
        ("/console/api/events?%FF=1", "\u{FFFD}"),
        ("/console/api/events/abc", "position"),
        ("/console/api/events/%FF", "path"),
        ("/console/api/automations/%FF/dead-letters", "path"),
        ("/console/api/events/live?after=x", "after"),
        (
            "/console/api/automations/answering/dead-letters?after=x",
            "after",
        ),
        (
            "/console/api/automations/answering/dead-letters?limit=-3",
            "limit",
        ),
        ("/console/api/modules?x=1", "x"),
        ("/console/api/store?x=1", "x"),
    ] {
        let (status, v) = json(&f, "GET", uri, None).await;
        assert_bad_param(status, &v, name);
    }
    let long_tag = "t".repeat(dcb_core::limits::MAX_TAG_LEN + 1);
    let (status, v) = json(
        &f,
        "GET",
        &format!("/console/api/events?tag={long_tag}"),
        None,
    )
    .await;
    assert_bad_param(status, &v, "tag");
    let (status, v) = json(
        &f,
        "POST",
        "/console/api/automations/answering/dead-letters/x/replay",
        Some(TOKEN),
    )
    .await;
    assert_bad_param(status, &v, "position");
}

#[tokio::test]
async fn live_tail_streams_new_events_as_server_sent_events() {
    let f = fixture(Duration::from_secs(5));
    greet(&f, "before").await;
    let res = f
        .app
        .clone()
        .oneshot(
            Request::get("/console/api/events/live?tag=person:ada")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body = res.into_body().into_data_stream();
    greet(&f, "bob").await; // filtered out
    let ada = greet(&f, "ada").await;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !(text.contains("event: event") && text.contains("event: caught_up")) {
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the new event within 10 s");
    assert!(text.contains("event: caught_up"), "{text}");
    assert!(text.contains(&format!("id: {ada}")), "{text}");
    assert!(text.contains("person:ada"), "{text}");
    assert!(
        !text.contains("person:bob") && !text.contains("person:before"),
        "{text}"
    );

    // The stream ends when the console's shutdown fires.
    f.stop.trigger();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = body.next().await {
            chunk.unwrap();
        }
    })
    .await
    .expect("the stream ends after shutdown");
}

#[tokio::test]
async fn modules_and_board_describe_the_host() {
    let f = fixture(Duration::from_secs(5));
    let (status, v) = json(&f, "GET", "/console/api/modules", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["commands"], serde_json::json!(["greet"]));
    assert_eq!(v["views"], serde_json::json!(["greeting-count"]));
    assert_eq!(v["automations"], serde_json::json!(["answering"]));
    let greet = &v["modules"][0];
    assert_eq!(greet["kind"], "command");
    assert_eq!(greet["appends"], serde_json::json!(["Greeted"]));
    assert_eq!(greet["routes"][0]["path"], "/greetings/{name}");
    let (status, headers, svg) = send(&f, "GET", "/console/api/board.svg", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("image/svg+xml")
    );
    for label in [
        "greet",
        "Greeted",
        "greeting-count",
        "answering",
        "GreetingAnswered",
    ] {
        assert!(svg.contains(&format!(">{label}</text>")), "{label} missing");
    }
}

async fn dead_letter_positions(f: &Fixture) -> Vec<String> {
    let (status, v) = json(f, "GET", "/console/api/automations", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["automations"][0]["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["position"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn dead_letters_replay_and_purge_need_the_token() {
    let f = fixture(Duration::from_secs(5));
    let workers = f.host.spawn_workers(f.shutdown.clone());
    f.outage.store(true, Ordering::SeqCst);
    let first = greet(&f, "ada").await;
    let second = greet(&f, "bob").await;
    eventually("two dead letters", || async {
        dead_letter_positions(&f).await == vec![first.clone(), second.clone()]
    })
    .await;
    let (_, v) = json(&f, "GET", "/console/api/automations", None).await;
    let a = &v["automations"][0];
    assert_eq!(a["name"], "answering");
    assert_eq!(a["max_attempts"], 1);
    assert_eq!(a["lag"], "0");
    assert!(
        a["dead_letters"][0]["error"]
            .as_str()
            .unwrap()
            .contains("down"),
        "{a}"
    );
    let (status, page) = json(
        &f,
        "GET",
        "/console/api/automations/answering/dead-letters?limit=1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["dead_letters"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_after"], first.as_str());

    let replay = format!("/console/api/automations/answering/dead-letters/{first}/replay");
    let (status, v) = json(&f, "POST", &replay, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    let (status, _) = json(&f, "POST", &replay, Some("wrong-token-wrong-token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let purge = format!("/console/api/automations/answering/dead-letters/{second}");
    let (status, _) = json(&f, "DELETE", &purge, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = json(
        &f,
        "DELETE",
        "/console/api/automations/answering/dead-letters",
        Some("nope-nope-nope-nope"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        dead_letter_positions(&f).await.len(),
        2,
        "nothing changed without the token"
    );

    // The service is back: replaying the first succeeds, purging the second drops it.
    f.outage.store(false, Ordering::SeqCst);
    let (status, v) = json(&f, "POST", &replay, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["replayed"], true);
    let (status, v) = json(&f, "DELETE", &purge, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["purged"], 1);
    eventually("the replayed trigger answered", || async {
        let (_, v) = json(&f, "GET", "/console/api/events?type=GreetingAnswered", None).await;
        v["events"].as_array().unwrap().len() == 1
    })
    .await;
    assert!(dead_letter_positions(&f).await.is_empty());

    // Unknown letters and automations are 404.
    let (status, _) = json(&f, "POST", &replay, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = json(&f, "DELETE", &purge, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = json(
        &f,
        "POST",
        "/console/api/automations/nobody/dead-letters/1/replay",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = json(
        &f,
        "GET",
        "/console/api/automations/nobody/dead-letters",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = json(
        &f,
        "DELETE",
        "/console/api/automations/answering/dead-letters",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["purged"], 0);

    f.stop.trigger();
    for w in workers {
        w.await.unwrap();
    }
}

#[tokio::test]
async fn views_show_lag_and_rebuild_with_the_token() {
    let f = fixture(Duration::from_secs(5));
    greet(&f, "ada").await;
    let last = greet(&f, "bob").await;
    let (status, v) = json(&f, "GET", "/console/api/views", None).await;
    assert_eq!(status, StatusCode::OK);
    let view = &v["views"][0];
    assert_eq!(view["name"], "greeting-count");
    assert_eq!(
        view["checkpoint"],
        Value::Null,
        "no worker runs: the view is behind"
    );
    assert_eq!(view["lag"], last.as_str());
    assert_eq!(view["rebuild"], Value::Null);

    let (status, _) = json(
        &f,
        "POST",
        "/console/api/views/greeting-count/rebuild",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = json(
        &f,
        "POST",
        "/console/api/views/greeting-count/rebuild",
        Some("x-x-x-x-x-x-x-x-x"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = json(
        &f,
        "POST",
        "/console/api/views/nothing/rebuild",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = json(
        &f,
        "POST",
        "/console/api/views/greeting-count/rebuild",
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["rebuild"]["target"], last.as_str());
    eventually("the rebuild to finish", || async {
        let (_, v) = json(&f, "GET", "/console/api/views", None).await;
        v["views"][0]["rebuild"]["state"] == "done"
    })
    .await;
    let (_, v) = json(&f, "GET", "/console/api/views", None).await;
    let view = &v["views"][0];
    assert_eq!(view["checkpoint"], last.as_str());
    assert_eq!(view["lag"], "0");
    assert_eq!(view["rebuilds"], 1);
    assert_eq!(view["rebuild"]["progress"], 1.0);
    assert_eq!(view["rebuild"]["reached"], last.as_str());
}

#[tokio::test]
async fn store_panel_samples_head_events_and_rates() {
    let mut f = fixture(Duration::from_millis(20));
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = counter.clone();
    // Rebuild the console with counters from a closure.
    let console = fairway_console::Console::new(
        f.runtime.clone(),
        f.host.clone(),
        fairway_console::AdminToken::new(TOKEN).unwrap(),
    )
    .sample_every(Duration::from_millis(20))
    .store_counters(move || {
        Some(fairway_console::StoreCounters {
            appends: c.load(Ordering::SeqCst),
            condition_failures: 0,
        })
    });
    f.app = console.mount(f.host.router(), "/console");
    greet(&f, "ada").await;
    counter.store(50, Ordering::SeqCst);
    eventually("a few samples", || async {
        let (_, v) = json(&f, "GET", "/console/api/store", None).await;
        v["samples"].as_array().unwrap().len() >= 3
    })
    .await;
    let (status, v) = json(&f, "GET", "/console/api/store", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["events"], 1);
    assert!(v["head"].is_string());
    assert_eq!(v["counters_available"], true);
    assert_eq!(v["sample_every_ms"], 20);
    assert!(!v["rates"].as_array().unwrap().is_empty());
    assert!(v["rates"][0]["appends_per_s"].is_number());
}

#[tokio::test]
async fn store_counters_default_to_the_hosts_extra_metrics() {
    let store = std::sync::Arc::new(dcb_core::MemoryStore::new());
    let runtime = fairway_runtime::Runtime::new(store).with_service(
        fairway_runtime::ExtraMetrics::new(|| {
            "fairway_store_appends_total 7\nfairway_store_condition_failures_total 2\n".to_owned()
        }),
    );
    let host = std::sync::Arc::new(fairway_runtime::Host::new(runtime.clone(), Vec::new()));
    let app = fairway_console::Console::new(
        runtime,
        host,
        fairway_console::AdminToken::new(TOKEN).unwrap(),
    )
    .sample_every(Duration::from_millis(10))
    .router();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let res = app
            .clone()
            .oneshot(Request::get("/api/store").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        if let Some(s) = v["samples"].as_array().and_then(|s| s.first()) {
            assert_eq!(s["counters"]["appends"], 7);
            assert_eq!(s["counters"]["condition_failures"], 2);
            assert_eq!(v["counters_available"], true);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no sample in 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn admin_tokens_are_checked_and_never_printed() {
    use fairway_console::AdminToken;
    assert!(AdminToken::new("short").is_err());
    assert!(AdminToken::new("has a space in it ok").is_err());
    let t = AdminToken::new(TOKEN).unwrap();
    assert!(t.matches(TOKEN));
    assert!(!t.matches("test-admin-token-012345678"));
    assert!(!t.matches(""));
    assert!(!format!("{t:?}").contains("test"));
    let secrets = fairway_runtime::Secrets::ephemeral();
    let a = AdminToken::from_secrets(&secrets).unwrap();
    let b = AdminToken::from_secrets(&secrets).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.reveal().len(), 64);
    assert!(a.reveal().bytes().all(|c| c.is_ascii_hexdigit()));
}

/// Opens a live tail; returns the status, headers and (for a 200) the body stream.
async fn open_tail(
    f: &Fixture,
) -> (
    StatusCode,
    axum::http::HeaderMap,
    axum::body::BodyDataStream,
) {
    let res = f
        .app
        .clone()
        .oneshot(
            Request::get("/console/api/events/live")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    (status, headers, res.into_body().into_data_stream())
}

async fn tail_stats(f: &Fixture) -> Value {
    let (status, v) = json(f, "GET", "/console/api/store", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["live_tails"].clone()
}

#[tokio::test]
async fn regression_live_tails_are_capped_and_share_one_store_subscription() {
    let f = support::fixture_with(Duration::from_secs(5), |c| c.max_live_tails(3));
    let mut open = Vec::new();
    for _ in 0..3 {
        let (status, _, body) = open_tail(&f).await;
        assert_eq!(status, StatusCode::OK);
        open.push(body);
    }
    for _ in 0..20 {
        let (status, headers, body) = open_tail(&f).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers[header::RETRY_AFTER], "5");
        let bytes = axum::body::to_bytes(axum::body::Body::from_stream(body), 1 << 16)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "too_many_tails", "{v}");
    }
    let ada = greet(&f, "ada").await;
    // Every open tail gets the event; one store subscription feeds them all.
    for body in &mut open {
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            while !text.contains(&format!("id: {ada}")) {
                let chunk = body.next().await.unwrap().unwrap();
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("each tail gets the new event within 10 s");
    }
    let stats = tail_stats(&f).await;
    assert_eq!(stats["open"], 3, "{stats}");
    assert_eq!(stats["max"], 3, "{stats}");
    assert_eq!(stats["refused"], 20, "{stats}");
    assert_eq!(stats["store_subscriptions"], 1, "{stats}");
    // A closed tail frees its place.
    open.pop();
    let (status, _, _body) = open_tail(&f).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tail_stats(&f).await["store_subscriptions"], 1);
}

#[tokio::test]
async fn regression_a_tail_that_falls_behind_is_dropped_with_an_error() {
    let f = support::fixture_with(Duration::from_secs(5), |c| c.tail_buffer(4));
    let (status, _, mut body) = open_tail(&f).await;
    assert_eq!(status, StatusCode::OK);
    let mut last = String::new();
    for i in 0..12 {
        last = greet(&f, &format!("p{i}")).await;
    }
    // Wait until the hub has broadcast everything while this tail read nothing.
    eventually("the hub to broadcast the last greeting", || async {
        tail_stats(&f).await["broadcast_up_to"] == Value::String(last.clone())
    })
    .await;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    })
    .await
    .expect("the lagging tail ends");
    assert!(text.contains("event: error"), "{text}");
    assert!(text.contains("tail_lagged"), "{text}");
}

#[tokio::test]
async fn regression_console_redacts_sensitive_fields() {
    let f = fixture(Duration::from_secs(5));
    let pos = greet(&f, "eve").await;
    let (status, d) = json(&f, "GET", &format!("/console/api/events/{pos}"), None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["data"]["secret"], "[redacted]", "{d}");
    assert_eq!(d["data"]["message"], "hello eve", "{d}");
    assert_eq!(d["redacted"], 1, "{d}");
    let (_, m) = json(&f, "GET", "/console/api/modules", None).await;
    assert!(
        m["modules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["sensitive_fields"]["Greeted"] == serde_json::json!(["secret"])),
        "{m}"
    );
}

#[tokio::test]
async fn regression_console_errors_are_json_and_foreign_hosts_refused() {
    let f = fixture(Duration::from_secs(5));
    let (status, headers, body) = send(&f, "POST", "/console/api/events", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    assert!(headers.contains_key(header::ALLOW), "{headers:?}");

    let call = |host: &'static str| {
        let app = f.app.clone();
        async move {
            let res = app
                .oneshot(
                    Request::get("/console/api/events")
                        .header(header::HOST, host)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, v) = call("rebind.evil.example:8081").await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "host_not_allowed", "{v}");
    for ok in ["localhost:8081", "127.0.0.1", "[::1]:9"] {
        let (status, v) = call(ok).await;
        assert_eq!(status, StatusCode::OK, "{ok}: {v}");
    }
}
