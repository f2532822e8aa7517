//! A small harness for the boundary tests (`boundary.rs`, `flood.rs`, `live_tails.rs`): starts
//! the real `fairway serve` (optionally under a command prefix such as `prlimit --nofile=N`),
//! knows both of its listeners (public and console), and speaks plain HTTP/1.1 over
//! `TcpStream`, one request per connection or many over one keep-alive connection.
//!
//! `FAIRWAY_BIN=/path/to/fairway` runs the tests against another build (e.g. an older one, to
//! see a regression test fail).

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[path = "../wire/mod.rs"]
mod wire;
pub use wire::Response;
use wire::{bad, parse_head, parse_response as parse};

/// The binary under test.
pub fn bin() -> PathBuf {
    std::env::var_os("FAIRWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_fairway")))
}

/// A running `fairway serve`.
pub struct Served {
    child: Option<Child>,
    /// The public listener.
    pub addr: SocketAddr,
    /// The console's listener (the public one when the startup line names no other).
    pub console: SocketAddr,
    /// The startup line.
    pub line: String,
    /// The data directory.
    pub dir: PathBuf,
}

fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = line.split(marker).nth(1)?;
    let end = rest.find(['/', ' ', ')', ';']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Served {
    /// `fairway serve --listen 127.0.0.1:0 --data-dir DIR EXTRA...`.
    pub fn start(dir: &Path, extra: &[&str]) -> Served {
        Served::start_under(&[], dir, extra)
    }

    /// The same, run under `prefix` (e.g. `["prlimit", "--nofile=256"]`).
    pub fn start_under(prefix: &[&str], dir: &Path, extra: &[&str]) -> Served {
        let bin = bin();
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let (child, line) = wire::spawn_serve(
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir)
                .args(extra),
        );
        let addr = addr_after(&line, "listening on http://").unwrap();
        let console = addr_after(&line, "console: http://").unwrap_or(addr);
        let served = Served {
            child: Some(child),
            addr,
            console,
            line,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !request(addr, "GET", "/health", &[], None).is_ok_and(|r| r.status == 200) {
            assert!(Instant::now() < deadline, "/health never answered 200");
            std::thread::sleep(Duration::from_millis(50));
        }
        served
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Resident memory of the server process, in KiB (`VmRSS` of `/proc/PID/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Open file descriptors of the server process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// SIGTERM, then asserts a clean exit within 90 s.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "fairway exited with {status}");
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fairway did not stop within 90 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn head_text(method: &str, path: &str, addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("host: {addr}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head
}

/// One request over a fresh connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or_default();
    let mut head = head_text(method, path, addr, headers);
    head.push_str(&format!(
        "connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        read?;
    }
    parse(&raw)
}

/// `request`, panicking on a transport error.
#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `POST path` with a JSON body over a fresh connection.
#[track_caller]
pub fn post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Response {
    request(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
    .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// A keep-alive connection: many requests, one socket. Responses must carry `Content-Length`
/// (every JSON response of the server does).
pub struct KeepAlive {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    /// Connects.
    pub fn connect(addr: SocketAddr) -> std::io::Result<KeepAlive> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        Ok(KeepAlive {
            addr,
            reader: BufReader::new(stream),
        })
    }

    /// One request on this connection.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut head = head_text(method, path, self.addr, headers);
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(bad("connection closed before a response"));
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let (status, headers) = parse_head(head.trim_end())?;
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| bad("no content-length"))?;
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// The socket (e.g. to wait for the server to close it).
    pub fn into_stream(self) -> TcpStream {
        self.reader.into_inner()
    }

    /// `POST path` with a JSON body on this connection.
    pub fn post_json(&mut self, path: &str, body: &serde_json::Value) -> std::io::Result<Response> {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    }
}

/// The median of `values` (sorted in place).
pub fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}
