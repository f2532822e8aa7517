//! What the users app leaves outside its API, through the real `fairway` binary: the welcome
//! email, sent exactly once per user across restarts (the outbox and the automation's status),
//! and the host's output, which never shows a token or a password (stdout and stderr captured
//! at `RUST_LOG=trace`, across a restart).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;
mod users_support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Response, Server, data_dir, fairway};
use users_support::{PASSWORD, flip_last, outbox, profile, register, token, user, wait_for_emails};

/// Asserts exactly one welcome email per user of `users` (id, username, email) and no other.
#[track_caller]
fn one_each(sent: &[Value], users: &[(String, String, String)]) {
    let mut by_key: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in sent {
        by_key
            .entry(e["idempotency_key"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    assert_eq!(by_key.len(), users.len(), "{sent:?}");
    assert_eq!(sent.len(), users.len(), "an email was sent twice: {sent:?}");
    for (id, username, email) in users {
        let mails = &by_key[&format!("welcome:{id}")];
        assert_eq!(mails.len(), 1, "{mails:?}");
        assert_eq!(mails[0]["to"], email.as_str());
        assert_eq!(mails[0]["subject"], format!("Welcome, {username}!"));
        assert!(
            mails[0]["body"]
                .as_str()
                .unwrap()
                .contains(username.as_str())
        );
    }
}

/// The welcome automation's status (server stopped).
fn welcome_status(dir: &Path) -> Value {
    let out = fairway(dir, &["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    status["automations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "users-welcome-email")
        .unwrap_or_else(|| panic!("{status}"))
        .clone()
}

/// Asserts the automation handled every trigger up to `position`: nothing pending, retried or
/// dead-lettered (so no email can still be on its way).
#[track_caller]
fn welcome_done(dir: &Path, position: &str) {
    let auto = welcome_status(dir);
    let checkpoint: u128 = auto["checkpoint"].as_str().unwrap().parse().unwrap();
    assert!(checkpoint >= position.parse().unwrap(), "{auto}");
    assert_eq!(auto["dead_letters"], 0, "{auto}");
    assert_eq!(auto["retry_queue"], 0, "{auto}");
}

#[test]
fn one_welcome_email_per_user_across_a_restart() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let mut users = Vec::new();
    let mut register_next = |s: &Server| {
        let n = users.len() + 1;
        let (id, name, email) = (
            format!("w{n}"),
            format!("walker{n}"),
            format!("walker{n}@example.com"),
        );
        let position = register(s, &id, &name, &email);
        users.push((id, name, email));
        (position, users.clone())
    };
    for _ in 0..3 {
        register_next(&s);
    }
    let (position, now) = register_next(&s);
    one_each(&wait_for_emails(dir.path(), now.len()), &now);
    // Two more, and SIGTERM at once: their emails may be in flight during the shutdown.
    register_next(&s);
    let (_, now) = register_next(&s);
    s.stop();
    welcome_done(dir.path(), &position);

    let s = Server::start(dir.path());
    one_each(&wait_for_emails(dir.path(), now.len()), &now);
    // Users registered after the restart get theirs.
    register_next(&s);
    let (position, now) = register_next(&s);
    one_each(&wait_for_emails(dir.path(), now.len()), &now);
    s.stop();
    // Every trigger was handled, so nothing more can be sent: still exactly one each.
    welcome_done(dir.path(), &position);
    one_each(&outbox(dir.path()), &now);
    let out = fairway(dir.path(), &["events", "--type", "WelcomeEmailSent"]);
    let recorded: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recorded.len(), now.len(), "{recorded:?}");
    for (id, _, email) in &now {
        let mine: Vec<&Value> = recorded
            .iter()
            .filter(|e| e["data"]["userId"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{id}: {recorded:?}");
        assert_eq!(mine[0]["data"]["email"], email.as_str());
    }

    // A third run sends nothing again.
    let s = Server::start(dir.path());
    assert_eq!(
        profile(&s, &token(&s, "walker1@example.com", PASSWORD))["username"],
        "walker1"
    );
    s.stop();
    welcome_done(dir.path(), &position);
    one_each(&outbox(dir.path()), &now);
}

/// A `fairway serve` whose stdout and stderr go to files, at the most verbose log level.
struct Captured {
    child: Option<Child>,
    addr: SocketAddr,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Captured {
    fn start(data_dir: &Path, logs: &Path, run: u32) -> Captured {
        let stdout = logs.join(format!("stdout-{run}.log"));
        let stderr = logs.join(format!("stderr-{run}.log"));
        let child = Command::new(support::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .unwrap();
        let mut server = Captured {
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout,
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        server.addr = loop {
            let text = std::fs::read_to_string(&server.stdout).unwrap();
            if let Some(addr) = text
                .split("listening on http://")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|a| a.parse().ok())
            {
                break addr;
            }
            assert!(Instant::now() < deadline, "no startup line: {text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server
            .try_request("GET", "/health", None, None)
            .map(|r| r.status)
            .ok()
            != Some(200)
        {
            assert!(Instant::now() < deadline, "/health never answered 200");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        self.try_request(method, path, token, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// One request over a fresh connection; the body is sent as JSON, the token as
    /// `Authorization: Token`.
    fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(90)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("content-type: application/json\r\n");
        }
        if let Some(t) = token {
            head.push_str(&format!("authorization: Token {t}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other(format!("no end of headers: {text:?}")))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status line: {text:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        assert!(
            !headers.iter().any(|(n, _)| n == "transfer-encoding"),
            "a chunked answer: {text}"
        );
        Ok(Response {
            status,
            headers,
            body: body.as_bytes().to_vec(),
        })
    }

    /// SIGTERM, and a clean exit within 60 s.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "fairway exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "no exit within 60 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the process wrote so far.
    fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap();
        let err = std::fs::read_to_string(&self.stderr).unwrap();
        format!("{out}{err}")
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn tokens_and_passwords_never_reach_the_host_output() {
    let dir = data_dir();
    let logs = data_dir();
    let s = Captured::start(dir.path(), logs.path(), 1);
    let first = "first secret passphrase";
    let second = "second secret passphrase";
    let r = s.request(
        "POST",
        "/api/users",
        None,
        Some(&user("u1", "ann", "ann@example.com", first)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let login = |s: &Captured, password: &str| {
        s.request(
            "POST",
            "/api/users/login",
            None,
            Some(&json!({"email": "ann@example.com", "password": password})),
        )
    };
    let r = login(&s, first);
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let (payload, signature) = token.rsplit_once('.').unwrap();
    assert_eq!(
        s.request("GET", "/api/user", Some(&token), None).status,
        200
    );
    let r = s.request(
        "PUT",
        "/api/user/password",
        Some(&token),
        Some(&json!({"currentPassword": first, "password": second})),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    // Refused attempts too: a wrong password, a tampered token.
    assert_eq!(login(&s, first).status, 401);
    let tampered = format!("{payload}.{}", flip_last(signature));
    assert_eq!(
        s.request("GET", "/api/user", Some(&tampered), None).status,
        401
    );
    let r = login(&s, second);
    assert_eq!(r.status, 200, "{}", r.text());
    let token2 = r.json()["token"].as_str().unwrap().to_owned();
    // The welcome email goes out meanwhile (the automation logs at trace level too).
    wait_for_emails(dir.path(), 1);
    let output_before_stop = s.output();
    s.stop();
    // A restart: startup logs of a data directory holding the secrets and the user.
    let s = Captured::start(dir.path(), logs.path(), 2);
    assert_eq!(
        s.request("GET", "/api/user", Some(&token2), None).status,
        200
    );
    s.stop();

    let mut output = String::new();
    for entry in std::fs::read_dir(logs.path()).unwrap() {
        output.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    // The capture works: the startup line and trace-level lines are there.
    assert!(output_before_stop.contains("listening on http://"));
    assert!(output.lines().count() > 2, "{output}");
    for secret in [&token, &token2, &tampered] {
        let (payload, signature) = secret.rsplit_once('.').unwrap();
        for part in [payload, signature] {
            assert!(
                !output.contains(part),
                "a token appears in the host's output:\n{output}"
            );
        }
    }
    for password in [first, second] {
        assert!(
            !output.contains(password),
            "a password appears in the host's output:\n{output}"
        );
    }
    // Nor in the stored events.
    let out = fairway(dir.path(), &["events"]);
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(events.contains("UserPasswordChanged"), "{events}");
    for secret in [token.as_str(), token2.as_str(), first, second] {
        assert!(!events.contains(secret), "{events}");
    }
}
