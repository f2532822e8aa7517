//! The users app through the real `fairway` binary over HTTP: registration with its validation
//! and uniqueness rules, login and signed tokens (missing, malformed, forged and foreign tokens
//! refused), the current user, email, password and details changes with the same rules,
//! concurrent claims with one winner, and a restart that keeps users and tokens. What the app
//! leaves outside the API (the welcome email, the host's output) is in
//! `users_side_effects_http.rs`; attacks on sessions and logins in `security_sessions.rs` and
//! `security_login.rs`.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;
mod users_support;

use std::sync::{Arc, Barrier};

use serde_json::{Value, json};
use support::{Response, Server, data_dir, fairway};
use users_support::{
    PASSWORD, flip_last, login, me, names, no_content, profile, register, send, token, user,
};

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
