//! End-to-end: the console in headless Chromium, driven through chromedriver, against an
//! in-process host on a loopback port. Skips loudly when Chromium or chromedriver is missing.
//!
//! Set `FAIRWAY_CONSOLE_SCREENSHOTS=<dir>` to save a PNG of each panel there (the ones in
//! `docs/` were made with `FAIRWAY_CONSOLE_SCREENSHOTS=$PWD/docs`); otherwise they go to the
//! test's scratch directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use support::webdriver::{Session, http};
use support::{TOKEN, fixture};

/// Debian's paths; `FAIRWAY_CHROMIUM` / `FAIRWAY_CHROMEDRIVER` override them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn tool(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}
/// The longest any awaited condition may take.
const WAIT: Duration = Duration::from_secs(90);

/// Polls `check` until it yields `Some`, at most [`WAIT`].
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn screenshot_dir() -> PathBuf {
    match std::env::var_os("FAIRWAY_CONSOLE_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"),
    }
}

async fn save_screenshot(s: &Session, name: &str) {
    let png = s.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("console-{name}.png"));
    std::fs::write(&file, png).unwrap();
    println!("screenshot: {}", file.display());
}

async fn show_panel(s: &Session, panel: &str) {
    let tab = s.find_all(&format!("#tab-{panel}")).await.unwrap();
    s.click(&tab[0]).await.unwrap();
    wait_for(&format!("panel {panel}"), || async {
        let v = s
            .execute(&format!(
                "return !document.getElementById('panel-{panel}').hidden"
            ))
            .await
            .ok()?;
        (v == Value::Bool(true)).then_some(())
    })
    .await;
}

async fn greet(addr: &str, name: &str) -> String {
    let (status, body) = http("POST", addr, &format!("/greetings/{name}"), &[], None)
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["position"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium() {
    let chromium = tool("FAIRWAY_CHROMIUM", CHROMIUM);
    let chromedriver = tool("FAIRWAY_CHROMEDRIVER", CHROMEDRIVER);
    if !Path::new(&chromium).exists() || !Path::new(&chromedriver).exists() {
        eprintln!(
            "\n\n==========\nSKIPPED: chromium/chromedriver not installed (apt-get install chromium chromium-driver)\n==========\n"
        );
        return;
    }

    // The host: the test modules, their workers, the console at /console.
    let f = fixture(Duration::from_millis(500));
    let workers = f.host.spawn_workers(f.shutdown.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = f.app.clone();
    let stop = f.shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.wait().await })
            .await
    });
    for name in ["ada", "grace", "edsger"] {
        greet(&addr, name).await;
    }

    // chromedriver and a browser session.
    let port = free_port();
    let mut driver = tokio::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let driver_addr = format!("127.0.0.1:{port}");
    wait_for("chromedriver to listen", || async {
        // A connection made while chromedriver starts up may never be answered: retry it.
        let status = http("GET", &driver_addr, "/status", &[], None);
        let (status, body) = tokio::time::timeout(Duration::from_secs(2), status)
            .await
            .ok()?
            .ok()?;
        (status == 200 && body.contains("\"ready\":true")).then_some(())
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([format!("--user-data-dir={}", profile.path().display())])
    .collect();
    let s = tokio::time::timeout(WAIT, Session::start(&driver_addr, &chromium, &args))
        .await
        .expect("a browser session within the timeout")
        .unwrap();
    s.set_window(1400, 1000).await.unwrap();

    // Open the console: the events panel with its live tail.
    s.goto(&format!("http://{addr}/console")).await.unwrap();
    wait_for("the live tail to connect", || async {
        let el = s.find_all("#live-state").await.ok()?;
        let text = s.text(el.first()?).await.ok()?;
        (text == "live").then_some(())
    })
    .await;
    let url = s.execute("return location.href").await.unwrap();
    assert_eq!(url, format!("http://{addr}/console#events"));

    // A command through the API: its event appears in the live tail without a reload.
    let zoe = greet(&addr, "zoe").await;
    let row = wait_for("the new event in the live tail", || async {
        let rows = s
            .find_all(&format!("#events-body tr[data-position=\"{zoe}\"]"))
            .await
            .ok()?;
        rows.first().cloned()
    })
    .await;
    let text = s.text(&row).await.unwrap();
    assert!(
        text.contains("Greeted") && text.contains("person:zoe"),
        "{text}"
    );

    // Its detail.
    s.click(&row).await.unwrap();
    wait_for("the event detail", || async {
        let data = s.find_all("#detail-data").await.ok()?;
        let data = s.text(data.first()?).await.ok()?;
        let ty = s.find_all("#detail-type").await.ok()?;
        let ty = s.text(ty.first()?).await.ok()?;
        (ty == "Greeted" && data.contains("\"message\": \"hello zoe\"")).then_some(())
    })
    .await;
    save_screenshot(&s, "events").await;

    // The automation fails into the dead-letter queue.
    f.outage.store(true, Ordering::SeqCst);
    let yan = greet(&addr, "yan").await;
    show_panel(&s, "automations").await;
    let replay = wait_for("the dead letter in the automations panel", || async {
        let buttons = s
            .find_all(&format!(
                "article[data-name=\"answering\"] tr[data-position=\"{yan}\"] button.replay"
            ))
            .await
            .ok()?;
        buttons.first().cloned()
    })
    .await;
    let letter = s
        .find_all(&format!("tr[data-position=\"{yan}\"] .error-text"))
        .await
        .unwrap();
    assert!(s.text(&letter[0]).await.unwrap().contains("down"));
    save_screenshot(&s, "automations").await;

    // The service is back; replay from the console: it asks for the token once.
    f.outage.store(false, Ordering::SeqCst);
    s.click(&replay).await.unwrap();
    let input = wait_for("the token dialog", || async {
        let open = s
            .execute("return document.getElementById('token-dialog').open")
            .await
            .ok()?;
        if open != Value::Bool(true) {
            return None;
        }
        s.find_all("#token-input").await.ok()?.first().cloned()
    })
    .await;
    s.type_text(&input, TOKEN).await.unwrap();
    let save = s.find_all("#token-save").await.unwrap();
    s.click(&save[0]).await.unwrap();
    wait_for(
        "the replay to succeed and the dead letter to go",
        || async {
            let gone = s
                .find_all(&format!("tr[data-position=\"{yan}\"] button.replay"))
                .await
                .ok()?
                .is_empty();
            let status = s.find_all("#status").await.ok()?;
            let status = s.text(status.first()?).await.ok()?;
            (gone && status == format!("Replay {yan}: done")).then_some(())
        },
    )
    .await;
    let stored = s
        .execute("return sessionStorage.getItem('fairway.console.token')")
        .await
        .unwrap();
    assert_eq!(stored, TOKEN, "the token is kept for the tab");

    // The replayed trigger is answered: its event shows in the live tail.
    show_panel(&s, "events").await;
    wait_for("the answer to the replayed trigger", || async {
        let rows = s.find_all("#events-body tr").await.ok()?;
        for r in rows {
            let t = s.text(&r).await.ok()?;
            if t.contains("GreetingAnswered") && t.contains("person:yan") {
                return Some(());
            }
        }
        None
    })
    .await;

    // The other panels, for the screenshots (and a look that they render).
    show_panel(&s, "modules").await;
    wait_for("the modules table and the board", || async {
        let done = s
            .execute(
                "const img = document.getElementById('board'); \
                 return document.querySelectorAll('#modules-body tr').length === 3 \
                   && img.complete && img.naturalWidth > 0",
            )
            .await
            .ok()?;
        (done == Value::Bool(true)).then_some(())
    })
    .await;
    save_screenshot(&s, "modules").await;
    show_panel(&s, "views").await;
    wait_for("the views table", || async {
        let rows = s
            .find_all("#views-body tr[data-name=\"greeting-count\"]")
            .await
            .ok()?;
        let t = s.text(rows.first()?).await.ok()?;
        t.contains("greeting-count").then_some(())
    })
    .await;
    save_screenshot(&s, "views").await;
    // A little traffic for the store chart.
    for i in 0..6 {
        greet(&addr, &format!("p{i}")).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    show_panel(&s, "store").await;
    wait_for("the store chart", || async {
        let done = s
            .execute(
                "return document.querySelectorAll('#store-chart polyline').length > 0 \
                   && document.getElementById('store-head').textContent !== ''",
            )
            .await
            .ok()?;
        (done == Value::Bool(true)).then_some(())
    })
    .await;
    save_screenshot(&s, "store").await;

    s.close().await.unwrap();
    driver.kill().await.ok();
    f.stop.trigger();
    tokio::time::timeout(WAIT, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    for w in workers {
        tokio::time::timeout(WAIT, w)
            .await
            .expect("workers stop")
            .unwrap();
    }
}
