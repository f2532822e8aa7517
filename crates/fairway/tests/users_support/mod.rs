//! Helpers for the users app's tests over the real binary (`users_http.rs`,
//! `users_side_effects_http.rs`, `security_sessions.rs`, `security_login.rs`): requests with
//! their documented assertions, tokens, the outbox, and clients on other loopback addresses.
//!
//! Use with `mod support; mod users_support;` (it builds on [`crate::support`]).

#![allow(dead_code, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Response, Server, request_from};

pub const PASSWORD: &str = "correct horse battery staple";

/// `{"id","username","email","password"}`.
pub fn user(id: &str, username: &str, email: &str, password: &str) -> Value {
    json!({"id": id, "username": username, "email": email, "password": password})
}

/// Registers and asserts 201 with the documented body; returns the position.
#[track_caller]
pub fn register(s: &Server, id: &str, username: &str, email: &str) -> String {
    let r = s.post_json("/api/users", &user(id, username, email, PASSWORD));
    assert_eq!(r.status, 201, "{}", r.text());
    let body = r.json();
    assert_eq!(body["id"], id, "{body}");
    assert_eq!(body["username"], username, "{body}");
    assert_eq!(body["email"], email.trim().to_lowercase(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");
    let position = body["position"].as_str().unwrap().to_owned();
    assert!(position.parse::<u128>().is_ok(), "{body}");
    position
}

pub fn login(s: &Server, email: &str, password: &str) -> Response {
    s.post_json(
        "/api/users/login",
        &json!({"email": email, "password": password}),
    )
}

/// Logs in and asserts 200 `{"token"}`; returns the token.
#[track_caller]
pub fn token(s: &Server, email: &str, password: &str) -> String {
    let r = login(s, email, password);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    token
}

pub fn auth(token: &str) -> String {
    format!("Token {token}")
}

pub fn me(s: &Server, token: &str) -> Response {
    s.request("GET", "/api/user", &[("authorization", &auth(token))], None)
}

/// `GET /api/user`, asserting 200; returns the profile.
#[track_caller]
pub fn profile(s: &Server, token: &str) -> Value {
    let r = me(s, token);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// An authenticated JSON request (`PUT /api/user/email`, `PATCH /api/user/details`, ...).
pub fn send(s: &Server, method: &str, path: &str, token: &str, body: &Value) -> Response {
    s.request(
        method,
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth(token)),
        ],
        Some(body.to_string().as_bytes()),
    )
}

/// Asserts 204 with an empty body.
#[track_caller]
pub fn no_content(r: &Response) {
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
}

/// Asserts the error shape and that the message names `field`.
#[track_caller]
pub fn names(r: &Response, status: u16, code: &str, field: &str) {
    r.assert_error(status, code);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(field), "{field} not named in {message:?}");
}

/// The text with its last character replaced by another of the base64url alphabet.
pub fn flip_last(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let last = chars.last_mut().unwrap();
    *last = if *last == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// The outbox's emails, each as JSON.
pub fn outbox(dir: &Path) -> Vec<Value> {
    match std::fs::read_to_string(dir.join("outbox.jsonl")) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("outbox: {e}"),
    }
}

/// Waits (at most 90 s) until the outbox holds `n` emails, and returns them.
#[track_caller]
pub fn wait_for_emails(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let sent = outbox(dir);
        if sent.len() >= n {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} welcome emails after 90 s: {sent:?}",
            sent.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A password used where a second one is needed.
pub const NEW_PASSWORD: &str = "a much better passphrase";

/// A `Retry-After` of 1 to 60 seconds, as a number.
#[track_caller]
pub fn retry_after(r: &Response) -> u64 {
    let secs: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After on {} {}", r.status, r.text()))
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "Retry-After: {secs}");
    secs
}

/// `127.a.b.c`: on Linux every address of 127.0.0.0/8 is this machine.
pub fn loopback(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

/// A login sent from the loopback address `source`.
pub fn login_from(s: &Server, source: IpAddr, email: &str, password: &str) -> Response {
    let body = json!({"email": email, "password": password}).to_string();
    request_from(
        s,
        source,
        "POST",
        "/api/users/login",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("login from {source}: {e}"))
}

const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Decodes unpadded base64url (panics on anything else).
pub fn b64url_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = B64
            .iter()
            .position(|&b| b == c)
            .unwrap_or_else(|| panic!("not base64url: {text}"));
        bits = (bits << 6) | v as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

/// Encodes as unpadded base64url.
pub fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64[((v >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A base64url JSON segment of a JWT, decoded.
pub fn b64json(part: &str) -> Value {
    serde_json::from_slice(&b64url_decode(part)).unwrap()
}
