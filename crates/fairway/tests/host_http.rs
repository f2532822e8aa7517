//! The real `fairway` binary over HTTP: the todo API, health, metrics, body limit, JSON errors,
//! idempotency keys (also across a restart), a graceful restart that loses nothing, and the
//! operator commands.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use serde_json::json;
use support::{Server, data_dir, fairway};

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn the_todo_api() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    assert!(
        s.startup_line.contains("todo-create-list"),
        "{}",
        s.startup_line
    );

    let r = s.post_json("/api/lists/groceries", &json!({"name": "Groceries"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["id"], "groceries");
    s.post_json("/api/lists/groceries", &json!({"name": "Again"}))
        .assert_error(409, "list_exists");
    let r = s.post_json("/api/lists/other", &json!({}));
    r.assert_error(400, "missing_field");
    assert!(r.text().contains("name"), "{}", r.text());
    let r = s.post_json("/api/lists/other", &json!({"name": "  "}));
    r.assert_error(400, "invalid_field");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("name")
    );
    let r = s.post_json("/api/lists/bad%20id", &json!({"name": "x"}));
    r.assert_error(400, "invalid_field");
    assert!(r.text().contains("listId"), "{}", r.text());
    let long = "x".repeat(65);
    s.post_json(&format!("/api/lists/{long}"), &json!({"name": "x"}))
        .assert_error(400, "invalid_field");

    let r = s.post_json(
        "/api/lists/groceries/items/milk",
        &json!({"text": "Buy milk"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s.post_json(
        "/api/lists/groceries/items/bread",
        &json!({"text": "Buy bread"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    s.post_json("/api/lists/nope/items/milk", &json!({"text": "x"}))
        .assert_error(404, "list_not_found");
    s.post_json("/api/lists/groceries/items/milk", &json!({"text": "x"}))
        .assert_error(409, "item_exists");
    let r = s.post_json("/api/lists/groceries/items/eggs", &json!({"txt": "x"}));
    r.assert_error(400, "missing_field");
    assert!(r.text().contains("text"), "{}", r.text());
    let r = s.post_json("/api/lists/groceries/items/e.g", &json!({"text": "x"}));
    assert!(r.text().contains("itemId"), "{}", r.text());

    let r = s.request(
        "POST",
        "/api/lists/groceries/items/milk/complete",
        &[],
        None,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    s.request(
        "POST",
        "/api/lists/groceries/items/milk/complete",
        &[],
        None,
    )
    .assert_error(409, "already_completed");
    s.request(
        "POST",
        "/api/lists/groceries/items/eggs/complete",
        &[],
        None,
    )
    .assert_error(404, "item_not_found");
    s.request("POST", "/api/lists/nope/items/milk/complete", &[], None)
        .assert_error(404, "item_not_found");

    let r = s.get("/api/lists/groceries");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "id": "groceries",
            "name": "Groceries",
            "items": [
                {"id": "milk", "text": "Buy milk", "done": true},
                {"id": "bread", "text": "Buy bread", "done": false},
            ],
            "itemsCount": 2,
            "next": null,
        })
    );
    s.get("/api/lists/nope").assert_error(404, "list_not_found");
    s.get("/api/lists/no%2Fpe")
        .assert_error(400, "invalid_field");
    s.stop();
}

#[test]
fn health_metrics_limits_and_json_errors() {
    let dir = data_dir();
    let s = Server::start_with(dir.path(), &["--body-limit", "2048"]);
    let r = s.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");

    s.get("/no/such/route").assert_error(404, "not_found");
    s.request("DELETE", "/api/lists/x", &[], None)
        .assert_error(405, "method_not_allowed");
    s.request(
        "POST",
        "/api/lists/x",
        &[("content-type", "application/json")],
        Some(b"{not json"),
    )
    .assert_error(400, "malformed_json");
    s.request("POST", "/api/lists/x", &[], Some(b"{\"name\":\"x\"}"))
        .assert_error(415, "unsupported_media_type");

    let big = json!({ "name": "x".repeat(4096) });
    s.post_json("/api/lists/big", &big)
        .assert_error(413, "body_too_large");
    // Also when the idempotency layer reads the body first.
    s.post_json_with("/api/lists/big", &big, &[("Idempotency-Key", "big-1")])
        .assert_error(413, "body_too_large");

    assert_eq!(
        s.post_json("/api/lists/m", &json!({"name": "M"})).status,
        201
    );
    s.post_json("/api/lists/m", &json!({"name": "M"}))
        .assert_error(409, "list_exists");
    assert_eq!(s.get("/api/lists/m").status, 200);

    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    let text = r.text();
    let created =
        r#"fairway_http_requests_total{method="POST",route="/api/lists/{listId}",status="201"}"#;
    assert_eq!(metric(&text, created), Some(1.0), "{text}");
    let conflict =
        r#"fairway_http_requests_total{method="POST",route="/api/lists/{listId}",status="409"}"#;
    assert_eq!(metric(&text, conflict), Some(1.0), "{text}");
    assert_eq!(
        metric(
            &text,
            r#"fairway_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        Some(1.0),
        "{text}"
    );
    let count =
        r#"fairway_http_request_duration_seconds_count{method="POST",route="/api/lists/{listId}"}"#;
    assert!(metric(&text, count).unwrap() >= 2.0, "{text}");
    assert_eq!(
        metric(&text, "fairway_store_appends_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "fairway_store_appended_events_total"),
        Some(1.0)
    );
    assert!(metric(&text, "fairway_store_condition_failures_total").is_some());
    assert!(metric(&text, "fairway_store_append_replays_total").is_some());
    assert_eq!(
        metric(&text, r#"fairway_view_lag{view="todo-lists"}"#),
        Some(0.0),
        "{text}"
    );
    s.stop();
}

#[test]
fn idempotency_keys_replay_reject_and_survive_a_restart() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let key = [("Idempotency-Key", "create-groceries-1")];
    let body = json!({"name": "Groceries"});
    let first = s.post_json_with("/api/lists/groceries", &body, &key);
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);

    let again = s.post_json_with("/api/lists/groceries", &body, &key);
    assert_eq!(again.status, 201, "{}", again.text());
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("content-type"), Some("application/json"));
    // Without the key the command really runs, and the list exists.
    s.post_json("/api/lists/groceries", &body)
        .assert_error(409, "list_exists");

    s.post_json_with("/api/lists/groceries", &json!({"name": "Other"}), &key)
        .assert_error(422, "idempotency_key_reused");
    s.post_json_with("/api/lists/elsewhere", &body, &key)
        .assert_error(422, "idempotency_key_reused");
    s.post_json_with("/api/lists/x", &body, &[("Idempotency-Key", "has space")])
        .assert_error(400, "invalid_field");

    let done_key = [("Idempotency-Key", "complete-milk")];
    assert_eq!(
        s.post_json("/api/lists/groceries/items/milk", &json!({"text": "Milk"}))
            .status,
        201
    );
    let path = "/api/lists/groceries/items/milk/complete";
    assert_eq!(s.request("POST", path, &done_key, None).status, 204);
    let replay = s.request("POST", path, &done_key, None);
    assert_eq!(replay.status, 204);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    let s = s.restart();
    let after = s.post_json_with("/api/lists/groceries", &body, &key);
    assert_eq!(after.status, 201, "{}", after.text());
    assert_eq!(after.body, first.body);
    assert_eq!(after.header("idempotent-replayed"), Some("true"));
    s.post_json_with("/api/lists/groceries", &json!({"name": "Other"}), &key)
        .assert_error(422, "idempotency_key_reused");
    assert_eq!(s.request("POST", path, &done_key, None).status, 204);
    let text = s.get("/metrics").text();
    assert_eq!(
        metric(&text, "fairway_store_appends_total"),
        Some(0.0),
        "{text}"
    );
    s.stop();
}

#[test]
fn a_restart_loses_nothing_and_the_view_resumes() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    for list in ["home", "work"] {
        let r = s.post_json(&format!("/api/lists/{list}"), &json!({"name": list}));
        assert_eq!(r.status, 201, "{}", r.text());
        for i in 0..5 {
            let r = s.post_json(
                &format!("/api/lists/{list}/items/i{i}"),
                &json!({"text": format!("{list} {i}")}),
            );
            assert_eq!(r.status, 201, "{}", r.text());
        }
    }
    assert_eq!(
        s.request("POST", "/api/lists/home/items/i3/complete", &[], None)
            .status,
        204
    );
    let before = s.get("/api/lists/home").json();
    assert_eq!(before["itemsCount"], 5);

    // While the server holds the data directory, operator commands say so.
    let busy = fairway(dir.path(), &["status"]);
    assert!(!busy.status.success());
    let err = String::from_utf8_lossy(&busy.stderr);
    assert!(
        err.contains("data directory is in use by a running server"),
        "{err}"
    );

    let s = s.restart();
    assert_eq!(s.get("/api/lists/home").json(), before);
    assert_eq!(s.get("/api/lists/work").json()["itemsCount"], 5);
    // The view resumed from its checkpoint: nothing was applied again.
    let text = s.get("/metrics").text();
    assert_eq!(
        metric(&text, r#"fairway_view_processed_total{view="todo-lists"}"#),
        Some(0.0),
        "{text}"
    );
    // ...and it keeps up with new events.
    let r = s.post_json("/api/lists/home/items/i9", &json!({"text": "new"}));
    assert_eq!(r.status, 201, "{}", r.text());
    let home = s.get("/api/lists/home").json();
    assert_eq!(home["itemsCount"], 6);
    assert_eq!(
        home["items"][5],
        json!({"id": "i9", "text": "new", "done": false})
    );
    assert_eq!(home["items"][3]["done"], true);
    let text = s.get("/metrics").text();
    assert_eq!(
        metric(&text, r#"fairway_view_processed_total{view="todo-lists"}"#),
        Some(1.0),
        "{text}"
    );
    s.stop();

    // Operator commands on the stopped server's data directory.
    let out = fairway(dir.path(), &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 2 lists + 10 items + 1 completion + 1 item after the restart.
    assert_eq!(status["events"], 14, "{status}");
    assert_eq!(status["head"], "14", "{status}");
    let views = status["views"].as_array().unwrap();
    let todo = views.iter().find(|v| v["name"] == "todo-lists").unwrap();
    assert_eq!(todo["checkpoint"], "14", "{status}");
    assert_eq!(todo["lag"], 0, "{status}");
    // Views of other modules read none of these events: nothing pending for them either.
    assert!(views.iter().all(|v| v["lag"] == 0), "{status}");
    let text = fairway(dir.path(), &["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("view todo-lists: checkpoint 14, lag 0"),
        "{text}"
    );

    let out = fairway(dir.path(), &["events", "--type", "ItemAdded"]);
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 11);
    assert!(lines.iter().all(|e| e["type"] == "ItemAdded"));
    assert_eq!(lines[0]["data"]["listId"], "home");
    assert_eq!(lines[0]["data"]["text"], "home 0");

    let out = fairway(
        dir.path(),
        &["events", "--tag", "list:home", "--type", "ItemCompleted"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("item:home/i3"), "{text}");

    let out = fairway(dir.path(), &["events", "--last", "2"]);
    let positions: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["position"].to_string())
        .collect();
    assert_eq!(positions, vec!["\"13\"", "\"14\""]);

    let out = fairway(dir.path(), &["views", "rebuild", "todo-lists"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("rebuilt todo-lists up to position 14"));
    let out = fairway(dir.path(), &["views", "rebuild", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("todo-lists"));
    let out = fairway(dir.path(), &["dlq", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // `--follow` prints the history, then keeps waiting for new events until interrupted.
    let mut follow = std::process::Command::new(support::BIN)
        .args(["events", "--follow", "--type", "ListCreated", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(follow.stdout.take().unwrap()));
    for list in ["home", "work"] {
        let line: serde_json::Value =
            serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(line["data"]["listId"], list);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        follow.try_wait().unwrap().is_none(),
        "--follow must keep running"
    );
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &follow.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert!(follow.wait().unwrap().success());

    // The rebuilt view serves the same lists.
    let s = Server::start(dir.path());
    assert_eq!(s.get("/api/lists/home").json(), home);
    s.stop();
}

#[test]
fn after_a_crash_nothing_acknowledged_is_lost_and_the_view_answers_at_once() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let r = s.post_json("/api/lists/l", &json!({"name": "L"}));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(s.get("/api/lists/l").status, 200);
    s.kill();

    let s = Server::start(dir.path());
    let r = s.post_json("/api/lists/l/items/a", &json!({"text": "A"}));
    assert_eq!(r.status, 201, "{}", r.text());
    // The crashed run never released the view's lease; the new run is the same replica and
    // takes it back at once (otherwise this would wait out the lease and answer 503).
    let started = std::time::Instant::now();
    let r = s.get("/api/lists/l");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["itemsCount"], 1);
    // Waiting out the lease would take its whole 15 s TTL (`view::VIEW_LEASE_TTL`): well under
    // it is the lease taken back (a generous bound, not a latency target).
    assert!(started.elapsed() < std::time::Duration::from_secs(12));
    s.stop();
}

/// Polls `/metrics` until `series` reaches `want` (at most `secs` seconds).
fn wait_for_metric(s: &Server, series: &str, want: f64, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let text = s.get("/metrics").text();
        if metric(&text, series) == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{series} did not reach {want}:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// The operator's dead-letter commands, on the one automation linked today: the users
/// context's welcome email. A directory where the outbox file should be makes the mailer fail.
#[test]
fn dead_letters_are_listed_purged_and_replayed_and_the_automation_resumes() {
    const AUTOMATION: &str = "users-welcome-email";
    let dir = data_dir();
    let outbox = dir.path().join("outbox.jsonl");
    std::fs::create_dir_all(&outbox).unwrap();
    let s = Server::start(dir.path());
    for (id, name) in [("u1", "ada"), ("u2", "bob")] {
        let r = s.post_json(
            "/api/users",
            &json!({"id": id, "username": name, "email": format!("{name}@example.com"),
                    "password": "correct horse battery staple"}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let dead = format!("fairway_automation_dead_lettered_total{{automation=\"{AUTOMATION}\"}}");
    wait_for_metric(&s, &dead, 2.0, 60);
    s.stop();

    let out = fairway(dir.path(), &["dlq", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let letters: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters.iter().all(|l| l["automation"] == AUTOMATION));
    assert!(letters.iter().all(|l| l["attempts"].as_u64().unwrap() >= 1));
    let status: serde_json::Value =
        serde_json::from_slice(&fairway(dir.path(), &["status", "--json"]).stdout).unwrap();
    let auto = status["automations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == AUTOMATION)
        .unwrap()
        .clone();
    assert_eq!(auto["dead_letters"], 2, "{status}");

    let bob = letters[1]["position"].as_str().unwrap().to_owned();
    let out = fairway(
        dir.path(),
        &[
            "dlq",
            "purge",
            "--automation",
            AUTOMATION,
            "--position",
            &bob,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 dead letter(s)"));
    let out = fairway(
        dir.path(),
        &["dlq", "replay", "--automation", AUTOMATION, "--all"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 dead letter(s)"));
    let out = fairway(dir.path(), &["dlq", "list", "--automation", "nope"]);
    assert!(!out.status.success());

    // The mailer works again: the next run retries the replayed trigger (ada) only.
    std::fs::remove_dir(&outbox).unwrap();
    let s = Server::start(dir.path());
    let retry_queue = format!("fairway_automation_retry_queue{{automation=\"{AUTOMATION}\"}}");
    wait_for_metric(&s, &retry_queue, 0.0, 30);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !std::fs::read_to_string(&outbox).is_ok_and(|t| t.contains("ada@example.com")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no welcome email for ada"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    s.stop();
    let sent = std::fs::read_to_string(&outbox).unwrap();
    assert!(!sent.contains("bob@example.com"), "{sent}");
    let out = fairway(dir.path(), &["events", "--type", "WelcomeEmailSent"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let out = fairway(dir.path(), &["dlq", "list"]);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[cfg(not(feature = "fdb"))]
#[test]
fn the_fdb_flag_needs_the_fdb_feature() {
    let dir = data_dir();
    let out = fairway(
        dir.path(),
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--fdb-cluster-file",
            "/nonexistent/fdb.cluster",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features fdb"), "{err}");
}
