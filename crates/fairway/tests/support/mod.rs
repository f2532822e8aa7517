//! Helpers for integration tests that drive the REAL `fairway` binary over HTTP.
//!
//! Use from a test file in `crates/fairway/tests/` with `mod support;`:
//!
//! ```text
//! let dir = support::data_dir();                  // a fresh temporary data directory
//! let server = support::Server::start(dir.path()); // `fairway serve --listen 127.0.0.1:0 ...`
//! let r = server.post_json("/api/lists/l1", &json!({"name": "L1"}));
//! assert_eq!(r.status, 201, "{}", r.text());
//! let server = server.restart();                  // SIGTERM, wait, start again on the same dir
//! let out = support::fairway(dir.path(), &["status", "--json"]); // an operator command
//! server.stop();                                  // SIGTERM; asserts a clean exit
//! ```
//!
//! - [`Server::start`] spawns the binary on an ephemeral port, reads the bound address from its
//!   startup line on stdout ("fairway listening on http://ADDR ..."), and waits for `GET /health`
//!   to answer 200. [`Server::start_with`] passes extra arguments (e.g. `--body-limit`).
//! - [`Server::request`], [`Server::get`], [`Server::post_json`] and [`Server::post_json_with`]
//!   (extra headers, e.g. `Idempotency-Key`) speak plain HTTP/1.1 over a `TcpStream` (no client
//!   dependency) and return a [`Response`] with `status`, `headers`, `body`, `.json()`,
//!   `.text()` and `.header(name)`.
//! - [`Server::stop`] sends SIGTERM and asserts the process exits successfully within 60 s
//!   (graceful shutdown); [`Server::restart`] does that and starts a new server on the same data
//!   directory. [`Server::kill`] simulates a crash (SIGKILL). Dropping a `Server` kills the
//!   process if it still runs.
//! - [`fairway`] runs an operator command (`events`, `dlq`, `views`, `status`) on a data
//!   directory and returns its `Output`.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

#[path = "../wire/mod.rs"]
mod wire;
pub use wire::Response;
use wire::parse_response;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_fairway");

/// A fresh temporary data directory (deleted when dropped).
pub fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Runs `fairway ARGS --data-dir DIR` to completion.
pub fn fairway(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// A running `fairway serve`.
pub struct Server {
    child: Option<Child>,
    /// The bound address.
    pub addr: SocketAddr,
    /// The data directory it serves.
    pub data_dir: PathBuf,
    /// The startup line it printed.
    pub startup_line: String,
    extra: Vec<String>,
}

impl Server {
    /// Starts `fairway serve` on an ephemeral port over `data_dir`.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(data_dir, &[])
    }

    /// Starts `fairway serve` with extra arguments.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Server {
        let (child, line) = wire::spawn_serve(
            Command::new(BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(data_dir)
                .args(extra),
        );
        let addr: SocketAddr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        let server = Server {
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            startup_line: line,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server
                .try_request("GET", "/health", &[], None)
                .is_ok_and(|r| r.status == 200)
            {
                break;
            }
            assert!(Instant::now() < deadline, "/health never answered 200");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends SIGTERM and asserts a clean exit within 60 s.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let killed = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "fairway exited with {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fairway did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (a crash: no shutdown at all) and waits for it.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops gracefully and starts again on the same data directory (same extra arguments).
    pub fn restart(self) -> Server {
        let dir = self.data_dir.clone();
        let extra = self.extra.clone();
        self.stop();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Server::start_with(&dir, &extra)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], None)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Response {
        self.post_json_with(path, body, &[])
    }

    /// `POST path` with a JSON body and extra headers.
    pub fn post_json_with(
        &self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.request("POST", path, &all, Some(body.to_string().as_bytes()))
    }

    /// Any request; panics on a transport error.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Any request over a fresh connection (`Connection: close`).
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(90)))?;
        let body = body.unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        // The server may answer (413) and close before reading a big body: keep what it said.
        let _ = stream.write_all(body);
        let mut raw = Vec::new();
        let read = stream.read_to_end(&mut raw);
        if raw.is_empty() {
            read?;
        }
        parse_response(&raw)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A process-wide tokio runtime for [`connect_from`] (std cannot bind before connecting).
static CONNECT_RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> =
    std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    });

/// A blocking TCP connection to `server` from the loopback address `source` (on Linux any
/// address of 127.0.0.0/8 is local), so that one test can act as many clients, each with its
/// own peer address.
pub fn connect_from(source: std::net::IpAddr, server: SocketAddr) -> std::io::Result<TcpStream> {
    CONNECT_RUNTIME.block_on(async move {
        let socket = match source {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(server))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

/// One request (`Connection: close`) to `server` from the loopback address `source`, with the
/// same shape as [`Server::try_request`].
pub fn request_from(
    server: &Server,
    source: std::net::IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = connect_from(source, server.addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.write_all(&raw_request(server, method, path, headers, body))?;
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        read?;
    }
    parse_response(&raw)
}

/// The bytes of one HTTP/1.1 request to `server` (`Connection: close`, a `content-length`).
pub fn raw_request(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        server.addr,
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
