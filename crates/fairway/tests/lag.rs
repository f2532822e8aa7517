//! Issue 15, friction point 8: lag is one number, "events matching the consumer's query after
//! its checkpoint", and `/metrics`, the console and `fairway status` report the same one for
//! every view and automation: after the welcome automation appended its own output
//! (`WelcomeEmailSent`, which it does not trigger on) and after unrelated events (three new todo
//! lists, which the users views and the automation do not read), every consumer that caught up
//! shows lag 0 in all three places. Before the fix `/metrics` showed the automation's head
//! minus checkpoint forever, the console showed head minus checkpoint for views too, and
//! `fairway status` counted the automation's own output.

#![allow(clippy::unwrap_used)]

mod kit;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use kit::{Served, get, post_json};
use serde_json::{Value, json};

type Lags = BTreeMap<String, u64>;

/// Every `fairway_automation_lag` and `fairway_view_lag` series of `/metrics`, keyed
/// `automation NAME` / `view NAME`.
fn metrics_lags(addr: SocketAddr) -> Lags {
    let text = get(addr, "/metrics").text();
    let mut out = Lags::new();
    for line in text.lines() {
        for (prefix, kind) in [
            ("fairway_automation_lag{automation=\"", "automation"),
            ("fairway_view_lag{view=\"", "view"),
        ] {
            if let Some(rest) = line.strip_prefix(prefix)
                && let Some((name, value)) = rest.split_once("\"} ")
            {
                out.insert(format!("{kind} {name}"), value.parse().unwrap());
            }
        }
    }
    out
}

/// The console's lags (`/console/api/views`, `/console/api/automations`), keyed the same way.
fn console_lags(console: SocketAddr) -> Lags {
    let mut out = Lags::new();
    for (path, list, kind) in [
        ("/console/api/views", "views", "view"),
        ("/console/api/automations", "automations", "automation"),
    ] {
        let body = get(console, path).json();
        for c in body[list].as_array().unwrap() {
            let lag = &c["lag"];
            let lag = lag
                .as_u64()
                .or_else(|| lag.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or_else(|| panic!("no lag in {c}"));
            out.insert(format!("{kind} {}", c["name"].as_str().unwrap()), lag);
        }
    }
    out
}

/// `fairway status --json` on the stopped server's data directory, keyed the same way.
fn status_lags(dir: &std::path::Path) -> Lags {
    let out = Command::new(kit::bin())
        .args(["status", "--json", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut lags = Lags::new();
    for (list, kind) in [("views", "view"), ("automations", "automation")] {
        for c in status[list].as_array().unwrap() {
            lags.insert(
                format!("{kind} {}", c["name"].as_str().unwrap()),
                c["lag"].as_u64().unwrap(),
            );
        }
    }
    lags
}

#[test]
fn metrics_console_and_status_report_the_same_lag() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);

    // The automation's trigger, then its own output.
    let r = post_json(
        s.addr,
        "/api/users",
        &json!({"id": "u1", "username": "ada", "email": "ada@example.com",
                "password": "correct horse battery staple"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let autos = get(s.console, "/console/api/automations").json();
        let welcome = autos["automations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "users-welcome-email")
            .cloned()
            .unwrap_or_else(|| panic!("no welcome automation in {autos}"));
        if welcome["processed"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the welcome automation processed nothing in 90 s: {welcome}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Events no users consumer reads; the todo view reads them (read-your-writes: the GET
    // answers once the view covers the list).
    for n in 1..=3 {
        let r = post_json(
            s.addr,
            &format!("/api/lists/l{n}"),
            &json!({"name": format!("List {n}")}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let r = get(s.addr, &format!("/api/lists/l{n}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // Every consumer has caught up (or is about to): each one's lag is 0, reported alike.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (metrics, console) = loop {
        let metrics = metrics_lags(s.addr);
        let console = console_lags(s.console);
        let settled = metrics == console && metrics.values().all(|&l| l == 0);
        if settled || Instant::now() > deadline {
            break (metrics, console);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains_key("automation users-welcome-email")
            && metrics.contains_key("view todo-lists"),
        "{metrics:?}"
    );
    assert_eq!(metrics, console, "/metrics and the console disagree");
    assert!(
        metrics.values().all(|&l| l == 0),
        "caught-up consumers with a lag: {metrics:?}"
    );
    s.stop();

    let status = status_lags(dir.path());
    assert_eq!(
        status, metrics,
        "`fairway status` disagrees with /metrics and the console"
    );
}
