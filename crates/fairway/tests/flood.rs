//! Issue 13, finding 3: idle connections must not exhaust the server's file descriptors and
//! poison the store. The real binary runs with an open-files limit of 256 (`prlimit`), the test
//! holds open far more idle sockets than that, and meanwhile:
//!
//! - every write on an established keep-alive connection succeeds (no store error, nothing
//!   poisoned: `fairway_store_append_errors_total` stays 0),
//! - `GET /health` on a new connection answers within 10 s,
//! - once the sockets close, the server's resident memory is back within 20% of its baseline.
//!
//! Bounded: at most [`FLOOD`] sockets, a few seconds of writes; every wait has a deadline.

#![allow(clippy::unwrap_used)]

mod kit;

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kit::{KeepAlive, Served, get};
use serde_json::json;

/// The server's open-files limit in this test.
const NOFILE: usize = 256;
/// Idle sockets the test opens (well past [`NOFILE`]).
const FLOOD: usize = 900;
/// Writes on the established connection while the flood is held (at least).
const WRITES: usize = 150;

fn prlimit_available() -> bool {
    std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn regression_idle_socket_flood_neither_starves_nor_poisons_the_store() {
    assert!(
        prlimit_available(),
        "this test needs `prlimit` (util-linux) to give the server a small open-files limit"
    );
    let dir = tempfile::tempdir().unwrap();
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let s = Served::start_under(
        &["prlimit", &nofile],
        dir.path(),
        &[
            "--max-connections",
            "64",
            "--max-live-tails",
            "8",
            "--idle-timeout",
            "2s",
            "--header-timeout",
            "2s",
        ],
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", s.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_owned();
    assert!(open_files.contains(&NOFILE.to_string()), "{open_files}");

    // The established keep-alive connection, warmed up; then the baseline.
    let mut writer = KeepAlive::connect(s.addr).unwrap();
    let mut n = 0usize;
    let mut write = |writer: &mut KeepAlive| {
        n += 1;
        let r = writer
            .post_json(
                &format!("/api/lists/l{n}"),
                &json!({"name": format!("List {n}")}),
            )
            .unwrap_or_else(|e| panic!("write {n} on the established connection: {e}"));
        assert_eq!(r.status, 201, "write {n}: {}", r.text());
    };
    for _ in 0..30 {
        write(&mut writer);
    }
    let baseline_rss = s.rss_kib();
    let baseline_fds = s.open_fds();

    // The flood: idle sockets that never send a byte, opened as fast as the kernel takes them.
    let held = Arc::new(std::sync::Mutex::new(Vec::<TcpStream>::new()));
    let opened = Arc::new(AtomicUsize::new(0));
    let flooding = Arc::new(AtomicBool::new(true));
    let flooder = {
        let (held, opened, flooding, addr) =
            (held.clone(), opened.clone(), flooding.clone(), s.addr);
        std::thread::spawn(move || {
            for _ in 0..FLOOD {
                if !flooding.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(sock) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    held.lock().unwrap().push(sock);
                    opened.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    // Writes on the established connection while the flood goes on (never idle long enough
    // for the idle timeout): every one succeeds, until well past the descriptor limit and at
    // least WRITES of them.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut writes = 0;
    while writes < WRITES || opened.load(Ordering::SeqCst) < NOFILE * 2 {
        assert!(
            Instant::now() < deadline,
            "only {} sockets opened in 60 s",
            opened.load(Ordering::SeqCst)
        );
        write(&mut writer);
        writes += 1;
    }
    let writes_took = started.elapsed();

    // A new connection is served within 10 s.
    let asked = Instant::now();
    let health = kit::request(s.addr, "GET", "/health", &[], None).unwrap();
    let health_took = asked.elapsed();
    assert_eq!(health.status, 200, "{}", health.text());
    assert!(
        health_took < Duration::from_secs(10),
        "/health took {health_took:?} during the flood"
    );
    flooding.store(false, Ordering::SeqCst);
    flooder.join().unwrap();
    let flood_sockets = opened.load(Ordering::SeqCst);
    assert!(
        flood_sockets > NOFILE,
        "only {flood_sockets} sockets opened"
    );
    let peak_fds = s.open_fds();
    assert!(peak_fds < NOFILE, "{peak_fds} fds open, limit {NOFILE}");

    // Nothing failed in the store.
    let metrics = get(s.addr, "/metrics").text();
    assert_eq!(
        metric(&metrics, "fairway_store_append_errors_total"),
        Some(0.0),
        "{metrics}"
    );
    write(&mut writer);

    // The sockets close; the server's descriptors and memory come back.
    held.lock().unwrap().clear();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fds = s.open_fds();
        if fds <= baseline_fds + 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{fds} fds still open after the flood (baseline {baseline_fds})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after_rss = s.rss_kib();
    println!(
        "flood: {flood_sockets} idle sockets against nofile {NOFILE}, {writes} writes on the \
         established connection in {writes_took:?}, /health on a new connection in \
         {health_took:?}, peak fds {peak_fds}, RSS {baseline_rss} KiB -> {after_rss} KiB"
    );
    assert!(
        after_rss * 10 <= baseline_rss * 12,
        "RSS {after_rss} KiB after the flood, baseline {baseline_rss} KiB"
    );
    drop(writer);
    s.stop();
}
