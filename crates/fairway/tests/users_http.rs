//! The users app through the real `fairway` binary over HTTP: registration with its validation
//! and uniqueness rules, login and signed tokens (missing, malformed, forged and foreign tokens
//! refused), the current user, email, password and details changes with the same rules, the
//! welcome email sent exactly once per user across a restart, a restart that keeps users and
//! tokens, and host output that never shows a token or a password.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Response, Server, data_dir, fairway};

const PASSWORD: &str = "correct horse battery staple";

/// `{"id","username","email","password"}`.
fn user(id: &str, username: &str, email: &str, password: &str) -> Value {
    json!({"id": id, "username": username, "email": email, "password": password})
}

/// Registers and asserts 201 with the documented body; returns the position.
#[track_caller]
fn register(s: &Server, id: &str, username: &str, email: &str) -> String {
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

fn login(s: &Server, email: &str, password: &str) -> Response {
    s.post_json(
        "/api/users/login",
        &json!({"email": email, "password": password}),
    )
}

/// Logs in and asserts 200 `{"token"}`; returns the token.
#[track_caller]
fn token(s: &Server, email: &str, password: &str) -> String {
    let r = login(s, email, password);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    token
}

fn auth(token: &str) -> String {
    format!("Token {token}")
}

fn me(s: &Server, token: &str) -> Response {
    s.request("GET", "/api/user", &[("authorization", &auth(token))], None)
}

/// `GET /api/user`, asserting 200; returns the profile.
#[track_caller]
fn profile(s: &Server, token: &str) -> Value {
    let r = me(s, token);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// An authenticated JSON request (`PUT /api/user/email`, `PATCH /api/user/details`, ...).
fn send(s: &Server, method: &str, path: &str, token: &str, body: &Value) -> Response {
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
fn no_content(r: &Response) {
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
}

/// Asserts the error shape and that the message names `field`.
#[track_caller]
fn names(r: &Response, status: u16, code: &str, field: &str) {
    r.assert_error(status, code);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(field), "{field} not named in {message:?}");
}

#[test]
fn registration_validates_input_and_keeps_ids_usernames_and_emails_unique() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    register(&s, "u1", "ann", "  Ann@Example.COM ");

    // Invalid input: 400 naming the field.
    let cases = [
        (user("", "bob", "bob@example.com", PASSWORD), "id"),
        (user("u 2", "bob", "bob@example.com", PASSWORD), "id"),
        (
            user(&"x".repeat(65), "bob", "bob@example.com", PASSWORD),
            "id",
        ),
        (user("u2", "", "bob@example.com", PASSWORD), "username"),
        (
            user("u2", "bob smith", "bob@example.com", PASSWORD),
            "username",
        ),
        (
            user("u2", &"b".repeat(33), "bob@example.com", PASSWORD),
            "username",
        ),
        (user("u2", "bob", "", PASSWORD), "email"),
        (user("u2", "bob", "bob", PASSWORD), "email"),
        (user("u2", "bob", "bob@localhost", PASSWORD), "email"),
        (user("u2", "bob", "b ob@example.com", PASSWORD), "email"),
        (user("u2", "bob", "bob@example.com", "short"), "password"),
        (
            user("u2", "bob", "bob@example.com", &"p".repeat(129)),
            "password",
        ),
    ];
    for (body, field) in &cases {
        let r = s.post_json("/api/users", body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        names(&r, 400, "invalid_field", field);
    }
    for field in ["id", "username", "email", "password"] {
        let mut body = user("u2", "bob", "bob@example.com", PASSWORD);
        body.as_object_mut().unwrap().remove(field);
        names(
            &s.post_json("/api/users", &body),
            400,
            "missing_field",
            field,
        );
    }
    let mut body = user("u2", "bob", "bob@example.com", PASSWORD);
    body["email"] = json!(42);
    names(
        &s.post_json("/api/users", &body),
        400,
        "invalid_field",
        "email",
    );
    s.request(
        "POST",
        "/api/users",
        &[("content-type", "application/json")],
        Some(b"{\"id\":"),
    )
    .assert_error(400, "malformed_json");

    // 409: the id, the username or the email is someone's already.
    s.post_json(
        "/api/users",
        &user("u1", "other", "other@example.com", PASSWORD),
    )
    .assert_error(409, "user_exists");
    s.post_json(
        "/api/users",
        &user("u2", "ann", "other@example.com", PASSWORD),
    )
    .assert_error(409, "username_taken");
    // Emails are compared trimmed and case-insensitively.
    s.post_json(
        "/api/users",
        &user("u2", "bob", "ANN@example.com", PASSWORD),
    )
    .assert_error(409, "email_taken");
    // Usernames are compared exactly.
    register(&s, "u2", "Ann", "ann2@example.com");
    // Nothing rejected above was written: bob's username and email are free.
    register(&s, "u3", "bob", "bob@example.com");
    s.stop();
    let out = fairway(dir.path(), &["events", "--type", "UserRegistered"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(!text.contains(PASSWORD), "a plain password was stored");
}

#[test]
fn login_issues_a_token_that_only_its_host_accepts() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    register(&s, "u1", "ann", "ann@example.com");
    register(&s, "u2", "bob", "bob@example.com");

    let ann = token(&s, "ann@example.com", PASSWORD);
    let bob = token(&s, "bob@example.com", PASSWORD);
    assert_ne!(ann, bob);
    // Emails are normalised at login too.
    token(&s, " ANN@Example.com", PASSWORD);
    assert_eq!(
        profile(&s, &ann),
        json!({"email": "ann@example.com", "username": "ann", "bio": null, "image": null})
    );
    assert_eq!(profile(&s, &bob)["username"], "bob");

    // Wrong credentials: 401, the same answer for an unknown email and a wrong password.
    login(&s, "ann@example.com", "not the password").assert_error(401, "invalid_credentials");
    login(&s, "ann@example.com", "").assert_error(401, "invalid_credentials");
    login(&s, "nobody@example.com", PASSWORD).assert_error(401, "invalid_credentials");
    names(
        &login(&s, "not-an-email", PASSWORD),
        400,
        "invalid_field",
        "email",
    );
    names(
        &s.post_json("/api/users/login", &json!({"email": "ann@example.com"})),
        400,
        "missing_field",
        "password",
    );

    // No, malformed or forged token: 401.
    s.get("/api/user").assert_error(401, "unauthorized");
    // A JWT: `header.claims.signature`; "payload" here is `header.claims`.
    let (payload, signature) = ann.rsplit_once('.').unwrap();
    let (bob_payload, bob_signature) = bob.rsplit_once('.').unwrap();
    let bad = [
        format!("Bearer {ann}"),
        ann.clone(),
        "Token ".to_owned(),
        "Token garbage".to_owned(),
        "Token a.b.c".to_owned(),
        format!("Token {payload}"),
        format!("Token {payload}.{signature}x"),
        // Bob's payload under Ann's signature and the other way round.
        format!("Token {bob_payload}.{signature}"),
        format!("Token {payload}.{bob_signature}"),
        format!("Token {}.{signature}", flip_last(payload)),
        format!("Token {payload}.{}", flip_last(signature)),
    ];
    for header in &bad {
        let r = s.request("GET", "/api/user", &[("authorization", header)], None);
        r.assert_error(401, "unauthorized");
        assert!(
            !r.text().contains(payload),
            "the token was echoed: {}",
            r.text()
        );
    }

    // A well-formed token for the same user id, signed by another host (another secret).
    let other_dir = data_dir();
    let other = Server::start(other_dir.path());
    register(&other, "u1", "ann", "ann@example.com");
    let foreign = token(&other, "ann@example.com", PASSWORD);
    assert_eq!(profile(&other, &foreign)["username"], "ann");
    other.stop();
    me(&s, &foreign).assert_error(401, "unauthorized");

    // The authenticated commands refuse the same way, before looking at the body.
    for (method, path, body) in [
        ("PUT", "/api/user/email", json!({"email": "x@example.com"})),
        (
            "PUT",
            "/api/user/password",
            json!({"password": "another password"}),
        ),
        ("PATCH", "/api/user/details", json!({"bio": "hi"})),
    ] {
        send(&s, method, path, &foreign, &body).assert_error(401, "unauthorized");
        let r = s.request(
            method,
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().as_bytes()),
        );
        r.assert_error(401, "unauthorized");
    }
    // Nothing changed.
    assert_eq!(profile(&s, &ann)["bio"], Value::Null);
    token(&s, "ann@example.com", PASSWORD);
    s.stop();
}

/// The text with its last character replaced by another of the base64url alphabet.
fn flip_last(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let last = chars.last_mut().unwrap();
    *last = if *last == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn password_email_and_details_changes_follow_the_same_rules() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    register(&s, "u1", "ann", "ann@example.com");
    register(&s, "u2", "bob", "bob@example.com");
    let ann = token(&s, "ann@example.com", PASSWORD);
    let bob = token(&s, "bob@example.com", PASSWORD);

    // Password: the old one fails at once, the new one works; older tokens are revoked.
    names(
        &send(
            &s,
            "PUT",
            "/api/user/password",
            &ann,
            &json!({"currentPassword": PASSWORD, "password": "short"}),
        ),
        400,
        "invalid_field",
        "password",
    );
    names(
        &send(
            &s,
            "PUT",
            "/api/user/password",
            &ann,
            &json!({"currentPassword": PASSWORD}),
        ),
        400,
        "missing_field",
        "password",
    );
    let new_password = "a much better passphrase";
    no_content(&send(
        &s,
        "PUT",
        "/api/user/password",
        &ann,
        &json!({"currentPassword": PASSWORD, "password": new_password}),
    ));
    login(&s, "ann@example.com", PASSWORD).assert_error(401, "invalid_credentials");
    me(&s, &ann).assert_error(401, "unauthorized");
    let ann = token(&s, "ann@example.com", new_password);
    assert_eq!(profile(&s, &ann)["email"], "ann@example.com");

    // Email: unique, and login uses the new one.
    names(
        &send(
            &s,
            "PUT",
            "/api/user/email",
            &ann,
            &json!({"email": "nope"}),
        ),
        400,
        "invalid_field",
        "email",
    );
    send(
        &s,
        "PUT",
        "/api/user/email",
        &ann,
        &json!({"email": "BOB@example.com"}),
    )
    .assert_error(409, "email_taken");
    // The same email again is a no-op.
    no_content(&send(
        &s,
        "PUT",
        "/api/user/email",
        &ann,
        &json!({"email": "ann@example.com"}),
    ));
    no_content(&send(
        &s,
        "PUT",
        "/api/user/email",
        &ann,
        &json!({"email": "Ann@New.example.com"}),
    ));
    login(&s, "ann@example.com", new_password).assert_error(401, "invalid_credentials");
    let ann2 = token(&s, "ann@new.example.com", new_password);
    assert_eq!(profile(&s, &ann2)["email"], "ann@new.example.com");
    assert_eq!(profile(&s, &ann)["email"], "ann@new.example.com");
    // Her old email was released just now: nobody else may take it yet, by changing to it or
    // by registering with it (the 72-hour window itself is covered with a controlled clock
    // in the module's tests).
    send(
        &s,
        "PUT",
        "/api/user/email",
        &bob,
        &json!({"email": "ann@example.com"}),
    )
    .assert_error(409, "email_recently_released");
    s.post_json(
        "/api/users",
        &user("u3", "cid", "ann@example.com", PASSWORD),
    )
    .assert_error(409, "email_recently_released");
    login(&s, "ann@example.com", new_password).assert_error(401, "invalid_credentials");
    // Her new email is held: taken for others.
    s.post_json(
        "/api/users",
        &user("u3", "cid", "ann@new.example.com", PASSWORD),
    )
    .assert_error(409, "email_taken");
    // She may take her own back.
    no_content(&send(
        &s,
        "PUT",
        "/api/user/email",
        &ann,
        &json!({"email": "ann@example.com"}),
    ));
    token(&s, "ann@example.com", new_password);
    login(&s, "ann@new.example.com", new_password).assert_error(401, "invalid_credentials");
    assert_eq!(profile(&s, &bob)["email"], "bob@example.com");

    // Details: bio and image set and cleared, usernames unique.
    no_content(&send(
        &s,
        "PATCH",
        "/api/user/details",
        &ann,
        &json!({"bio": "Reads a lot.\nWrites less.", "image": "https://img.example.com/ann.png"}),
    ));
    assert_eq!(
        profile(&s, &ann),
        json!({
            "email": "ann@example.com",
            "username": "ann",
            "bio": "Reads a lot.\nWrites less.",
            "image": "https://img.example.com/ann.png",
        })
    );
    for (body, field) in [
        (json!({"image": "javascript:alert(1)"}), "image"),
        (json!({"image": "https://x.io/a b.png"}), "image"),
        (json!({"bio": "x".repeat(1001)}), "bio"),
        (json!({"bio": "bell\u{7}"}), "bio"),
        (json!({"username": "a b"}), "username"),
        (json!({"username": ""}), "username"),
        (json!({"username": 5}), "username"),
    ] {
        let r = send(&s, "PATCH", "/api/user/details", &ann, &body);
        names(&r, 400, "invalid_field", field);
    }
    send(
        &s,
        "PATCH",
        "/api/user/details",
        &ann,
        &json!({"username": "bob"}),
    )
    .assert_error(409, "username_taken");
    // An absent field is unchanged, null clears.
    no_content(&send(
        &s,
        "PATCH",
        "/api/user/details",
        &ann,
        &json!({"username": "annie", "bio": null}),
    ));
    assert_eq!(
        profile(&s, &ann),
        json!({
            "email": "ann@example.com",
            "username": "annie",
            "bio": null,
            "image": "https://img.example.com/ann.png",
        })
    );
    // Nothing different: still 204.
    no_content(&send(&s, "PATCH", "/api/user/details", &ann, &json!({})));
    // A username given up is free at once, for a new user or an existing one.
    register(&s, "u3", "ann", "cid@example.com");
    send(
        &s,
        "PATCH",
        "/api/user/details",
        &bob,
        &json!({"username": "annie"}),
    )
    .assert_error(409, "username_taken");
    s.post_json(
        "/api/users",
        &user("u4", "annie", "dee@example.com", PASSWORD),
    )
    .assert_error(409, "username_taken");
    no_content(&send(
        &s,
        "PATCH",
        "/api/user/details",
        &ann,
        &json!({"username": "ann-2"}),
    ));
    no_content(&send(
        &s,
        "PATCH",
        "/api/user/details",
        &bob,
        &json!({"username": "annie"}),
    ));
    assert_eq!(profile(&s, &bob)["username"], "annie");
    assert_eq!(profile(&s, &ann)["username"], "ann-2");
    s.stop();
}

/// Sends `n` requests at once (threads released together by a barrier) and returns the
/// responses in thread order.
fn at_once<F>(s: &Arc<Server>, n: usize, call: F) -> Vec<Response>
where
    F: Fn(&Server, usize) -> Response + Send + Sync + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let call = Arc::new(call);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (s, barrier, call) = (Arc::clone(s), Arc::clone(&barrier), Arc::clone(&call));
            std::thread::spawn(move || {
                barrier.wait();
                call(&s, i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Asserts exactly one response has `status` and every other is 409 `code`; returns the
/// winner's index.
#[track_caller]
fn one_winner(responses: &[Response], status: u16, code: &str) -> usize {
    let won: Vec<usize> = (0..responses.len())
        .filter(|&i| responses[i].status == status)
        .collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        responses
            .iter()
            .map(|r| (r.status, r.text()))
            .collect::<Vec<_>>()
    );
    for (i, r) in responses.iter().enumerate() {
        if i != won[0] {
            r.assert_error(409, code);
        }
    }
    won[0]
}

#[test]
fn concurrent_claims_of_one_email_or_username_have_one_winner() {
    const N: usize = 6;
    let dir = data_dir();
    let s = Arc::new(Server::start(dir.path()));
    // Registrations racing for one email, then for one username.
    let r = at_once(&s, N, |s, i| {
        s.post_json(
            "/api/users",
            &user(
                &format!("e{i}"),
                &format!("e{i}"),
                "race@example.com",
                PASSWORD,
            ),
        )
    });
    let email_winner = one_winner(&r, 201, "email_taken");
    let r = at_once(&s, N, |s, i| {
        s.post_json(
            "/api/users",
            &user(
                &format!("n{i}"),
                "racer",
                &format!("n{i}@example.com"),
                PASSWORD,
            ),
        )
    });
    let name_winner = one_winner(&r, 201, "username_taken");
    // The losers' ids were not taken: they register with their own email and username.
    let mut tokens = Vec::new();
    for i in 0..N {
        if i != name_winner {
            register(
                &s,
                &format!("n{i}"),
                &format!("n{i}"),
                &format!("n{i}@example.com"),
            );
        }
        tokens.push(token(&s, &format!("n{i}@example.com"), PASSWORD));
    }
    let tokens = Arc::new(tokens);
    // Existing users racing to move to one email, then to rename to one username.
    let t = Arc::clone(&tokens);
    let r = at_once(&s, N, move |s, i| {
        send(
            s,
            "PUT",
            "/api/user/email",
            &t[i],
            &json!({"email": "moved@example.com"}),
        )
    });
    let mover = one_winner(&r, 204, "email_taken");
    let t = Arc::clone(&tokens);
    let r = at_once(&s, N, move |s, i| {
        send(
            s,
            "PATCH",
            "/api/user/details",
            &t[i],
            &json!({"username": "star"}),
        )
    });
    let star = one_winner(&r, 204, "username_taken");

    token(&s, "moved@example.com", PASSWORD);
    assert_eq!(profile(&s, &tokens[mover])["email"], "moved@example.com");
    assert_eq!(profile(&s, &tokens[star])["username"], "star");
    for i in (0..N).filter(|&i| i != mover) {
        assert_eq!(
            profile(&s, &tokens[i])["email"],
            format!("n{i}@example.com")
        );
    }
    let winner = token(&s, "race@example.com", PASSWORD);
    assert_eq!(profile(&s, &winner)["username"], format!("e{email_winner}"));
    Arc::into_inner(s).unwrap().stop();
    let out = fairway(dir.path(), &["events", "--type", "UserRegistered"]);
    let registered = String::from_utf8_lossy(&out.stdout);
    // One email winner, N username racers (one won, N - 1 registered afterwards).
    assert_eq!(registered.lines().count(), 1 + N, "{registered}");
}

/// The outbox's emails, each as JSON.
fn outbox(dir: &Path) -> Vec<Value> {
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
fn wait_for_emails(dir: &Path, n: usize) -> Vec<Value> {
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

#[test]
fn a_restart_keeps_users_credentials_and_tokens() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    register(&s, "u1", "ann", "ann@example.com");
    register(&s, "u2", "bob", "bob@example.com");
    let ann = token(&s, "ann@example.com", PASSWORD);
    let bob = token(&s, "bob@example.com", PASSWORD);
    no_content(&send(
        &s,
        "PUT",
        "/api/user/password",
        &bob,
        &json!({"currentPassword": PASSWORD, "password": "bobs new password"}),
    ));
    // The change revoked bob's token; a login gets him a new one.
    let old_bob = bob;
    let bob = token(&s, "bob@example.com", "bobs new password");
    no_content(&send(
        &s,
        "PUT",
        "/api/user/email",
        &ann,
        &json!({"email": "ann@moved.example.com"}),
    ));
    no_content(&send(
        &s,
        "PATCH",
        "/api/user/details",
        &ann,
        &json!({"bio": "still here"}),
    ));
    let before = profile(&s, &ann);

    let s = s.restart();
    // Tokens issued before the restart stay valid (the signing key is kept in the data dir),
    // and a revoked one stays revoked.
    assert_eq!(profile(&s, &ann), before);
    assert_eq!(profile(&s, &bob)["username"], "bob");
    me(&s, &old_bob).assert_error(401, "unauthorized");
    // Logins use the latest credentials.
    token(&s, "ann@moved.example.com", PASSWORD);
    login(&s, "ann@example.com", PASSWORD).assert_error(401, "invalid_credentials");
    token(&s, "bob@example.com", "bobs new password");
    login(&s, "bob@example.com", PASSWORD).assert_error(401, "invalid_credentials");
    // The rules see the history from before the restart.
    s.post_json(
        "/api/users",
        &user("u3", "ann", "cid@example.com", PASSWORD),
    )
    .assert_error(409, "username_taken");
    s.post_json(
        "/api/users",
        &user("u3", "cid", "ann@example.com", PASSWORD),
    )
    .assert_error(409, "email_recently_released");
    s.post_json(
        "/api/users",
        &user("u1", "cid", "cid@example.com", PASSWORD),
    )
    .assert_error(409, "user_exists");
    s.stop();
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
        let deadline = Instant::now() + Duration::from_secs(10);
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
