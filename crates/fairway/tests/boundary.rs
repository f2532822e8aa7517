//! The host's boundary against anonymous clients, over the real binary on loopback: the console
//! on a loopback listener of its own with a `Host` check, sensitive event fields redacted
//! (console and `fairway events`), security headers on every response, JSON errors on every
//! console error, and a private data directory. Each test is named after the finding it pins
//! (issue 13).

#![allow(clippy::unwrap_used)]

mod kit;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use kit::{Served, get, post_json, request};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple";

/// Registers a user; returns the position of its `UserRegistered` event.
fn register(s: &Served, id: &str) -> String {
    let r = post_json(
        s.addr,
        "/api/users",
        &json!({"id": id, "username": id, "email": format!("{id}@example.com"), "password": PASSWORD}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["position"].as_str().unwrap().to_owned()
}

#[test]
fn regression_console_is_not_on_the_public_listener() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let pos = register(&s, "ada");
    for path in [
        "/console",
        "/console/",
        "/console/api/events",
        &format!("/console/api/events/{pos}"),
        "/console/api/events/live",
    ] {
        get(s.addr, path).assert_error(404, "not_found");
    }
    assert_ne!(s.console, s.addr, "{}", s.line);
    assert!(s.console.ip().is_loopback(), "{}", s.line);
    let r = get(s.console, "/console/api/events");
    assert_eq!(r.status, 200, "{}", r.text());
    s.stop();
}

#[test]
fn regression_console_redacts_password_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let pos = register(&s, "grace");
    let r = get(s.console, &format!("/console/api/events/{pos}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let event = r.json();
    assert_eq!(event["type"], "UserRegistered", "{event}");
    assert_eq!(event["data"]["passwordHash"], "[redacted]", "{event}");
    assert_eq!(event["data"]["username"], "grace", "{event}");
    assert!(!r.text().contains("$argon2"), "{event}");
    // The module catalog says which fields are sensitive.
    let modules = get(s.console, "/console/api/modules").json();
    let declared = modules["modules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["sensitive_fields"]["UserRegistered"] == json!(["passwordHash"]));
    assert!(declared, "{modules}");
    s.stop();
}

#[test]
fn regression_console_refuses_a_foreign_host_header() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &["--console-host", "console.internal"]);
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example"] {
        for path in [
            "/console/",
            "/console/api/events",
            "/console/api/events/live",
        ] {
            let r = request(s.console, "GET", path, &[("host", host)], None).unwrap();
            r.assert_error(421, "host_not_allowed");
        }
    }
    let port = s.console.port();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "LOCALHOST".to_owned(),
        format!("console.internal:{port}"),
    ] {
        let r = request(
            s.console,
            "GET",
            "/console/api/store",
            &[("host", &host)],
            None,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
    s.stop();
}

#[test]
fn regression_console_listener_must_be_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(kit::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--console-listen"])
        .arg("0.0.0.0:0")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

#[test]
fn regression_every_response_has_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let responses = [
        get(s.addr, "/health"),
        get(s.addr, "/metrics"),
        get(s.addr, "/no/such/route"),
        request(s.addr, "DELETE", "/health", &[], None).unwrap(),
        get(s.console, "/console/"),
        get(s.console, "/console/api/events"),
        get(s.console, "/console/api/nothing"),
        request(
            s.console,
            "GET",
            "/console/",
            &[("host", "evil.example")],
            None,
        )
        .unwrap(),
    ];
    for r in &responses {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{r:?}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{r:?}");
    }
    s.stop();
}

#[test]
fn regression_console_errors_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let c = s.console;
    let r = request(c, "POST", "/console/api/events", &[], None).unwrap();
    r.assert_error(405, "method_not_allowed");
    assert!(
        r.header("allow").is_some_and(|a| a.contains("GET")),
        "{r:?}"
    );
    request(c, "PUT", "/console/api/views", &[], None)
        .unwrap()
        .assert_error(405, "method_not_allowed");
    get(c, "/console/api/nothing").assert_error(404, "not_found");
    get(c, "/elsewhere").assert_error(404, "not_found");
    request(c, "POST", "/console/api/views/x/rebuild", &[], None)
        .unwrap()
        .assert_error(401, "unauthorized");
    s.stop();
}

#[test]
fn regression_events_cli_redacts_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    register(&s, "alan");
    s.stop();
    let events = |extra: &[&str]| {
        let out = Command::new(kit::bin())
            .args(["events", "--type", "UserRegistered"])
            .args(extra)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        line
    };
    let redacted = events(&[]);
    assert_eq!(redacted["data"]["passwordHash"], "[redacted]", "{redacted}");
    assert_eq!(redacted["data"]["username"], "alan", "{redacted}");
    let shown = events(&["--show-sensitive"]);
    assert!(
        shown["data"]["passwordHash"]
            .as_str()
            .is_some_and(|h| h.starts_with("$argon2")),
        "{shown}"
    );
}

fn assert_private(dir: &std::path::Path) {
    let mut pending = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = pending.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}: {mode:o}", d.display());
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                files += 1;
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{}: {mode:o}", entry.path().display());
            }
        }
    }
    assert!(files > 0, "no file in {}", dir.display());
}

#[test]
fn regression_data_directory_is_private() {
    let root = tempfile::tempdir().unwrap();
    // A fresh data directory.
    let fresh = root.path().join("fresh");
    let s = Served::start(&fresh, &[]);
    register(&s, "edsger");
    s.stop();
    assert_private(&fresh);
    // One made world-readable (as an older version left it under umask 022) is tightened.
    let old = root.path().join("old");
    let s = Served::start(&old, &[]);
    s.stop();
    let mut pending = vec![old.clone()];
    while let Some(d) = pending.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.metadata().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644))
                    .unwrap();
            }
        }
    }
    let s = Served::start(&old, &[]);
    register(&s, "barbara");
    s.stop();
    assert_private(&old);
}

/// Reads from `stream` until the server closes it; panics if it is still open after 60 s.
fn wait_closed(mut stream: std::net::TcpStream, what: &str) -> Vec<u8> {
    use std::io::Read as _;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("{what}: still open after 60 s ({e})"),
        }
    }
}

#[test]
fn regression_slow_heads_and_idle_connections_are_closed() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(
        dir.path(),
        &["--header-timeout", "1s", "--idle-timeout", "2s"],
    );
    // A head that never ends (slowloris).
    let mut slow = std::net::TcpStream::connect(s.addr).unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .unwrap();
    let got = wait_closed(slow, "a connection with an unfinished head");
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{got:?}"
    );
    // A connection that sends nothing.
    let idle = std::net::TcpStream::connect(s.addr).unwrap();
    assert!(wait_closed(idle, "an idle connection").is_empty());
    // A keep-alive connection, idle after one request.
    let mut kept = kit::KeepAlive::connect(s.addr).unwrap();
    assert_eq!(
        kept.request("GET", "/health", &[], b"").unwrap().status,
        200
    );
    assert!(wait_closed(kept.into_stream(), "an idle keep-alive connection").is_empty());
    // The server still serves.
    assert_eq!(get(s.addr, "/health").status, 200);
    s.stop();
}

#[test]
fn sigterm_drains_with_idle_connections_and_open_tails() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);
    let _idle = std::net::TcpStream::connect(s.addr).unwrap();
    let mut kept = kit::KeepAlive::connect(s.addr).unwrap();
    assert_eq!(
        kept.request("GET", "/health", &[], b"").unwrap().status,
        200
    );
    let mut tail = std::net::TcpStream::connect(s.console).unwrap();
    write!(
        tail,
        "GET /console/api/events/live HTTP/1.1\r\nhost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut tail, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let asked = std::time::Instant::now();
    s.stop();
    let took = asked.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "stopping took {took:?}: the idle connections and the tail held the drain"
    );
    wait_closed(tail, "the live tail after SIGTERM");
}
