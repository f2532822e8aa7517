//! Sessions, passwords and input through the real `fairway` binary, as an attacker would try
//! them: a password change revokes every older token and needs the current password; tokens
//! are HS256 JWTs and forged ones are refused; passwords are capped before hashing; lookalike
//! emails collide with the account they imitate; a short secret stops the host at start; deep
//! JSON is refused wherever it sits in a body. Throttling and the hash queue under floods are
//! in `security_login.rs`.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;
mod users_support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, data_dir, fairway};
use users_support::{
    NEW_PASSWORD, PASSWORD, b64json, b64url_encode, login, me, names, no_content, register, send,
    token, user,
};

#[test]
fn a_password_change_needs_the_current_password_and_revokes_older_tokens() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    register(&s, "u1", "ann", "ann@example.com");
    register(&s, "u2", "bob", "bob@example.com");
    let old = token(&s, "ann@example.com", PASSWORD);
    let other_session = token(&s, "ann@example.com", PASSWORD);
    let bob = token(&s, "bob@example.com", PASSWORD);
    let change = |token: &str, body: Value| send(&s, "PUT", "/api/user/password", token, &body);

    // The current password is required, and must be right; nothing changes otherwise.
    names(
        &change(&old, json!({"password": NEW_PASSWORD})),
        400,
        "missing_field",
        "currentPassword",
    );
    change(
        &old,
        json!({"currentPassword": "not the password", "password": NEW_PASSWORD}),
    )
    .assert_error(403, "wrong_password");
    token(&s, "ann@example.com", PASSWORD);
    assert_eq!(me(&s, &old).status, 200);

    no_content(&change(
        &old,
        json!({"currentPassword": PASSWORD, "password": NEW_PASSWORD}),
    ));
    // Every token issued before the change is refused, on every authenticated route.
    for t in [&old, &other_session] {
        me(&s, t).assert_error(401, "unauthorized");
        change(
            t,
            json!({"currentPassword": NEW_PASSWORD, "password": "a third passphrase"}),
        )
        .assert_error(401, "unauthorized");
        send(
            &s,
            "PUT",
            "/api/user/email",
            t,
            &json!({"email": "thief@example.com"}),
        )
        .assert_error(401, "unauthorized");
        send(
            &s,
            "PATCH",
            "/api/user/details",
            t,
            &json!({"bio": "pwned"}),
        )
        .assert_error(401, "unauthorized");
    }
    // Another user's session is untouched.
    assert_eq!(me(&s, &bob).json()["username"], "bob");
    // A login after the change gets a new token.
    login(&s, "ann@example.com", PASSWORD).assert_error(401, "invalid_credentials");
    let fresh = token(&s, "ann@example.com", NEW_PASSWORD);
    assert_ne!(fresh, old);
    let profile = me(&s, &fresh).json();
    assert_eq!(profile["email"], "ann@example.com", "{profile}");
    assert_eq!(profile["bio"], Value::Null, "{profile}");

    // Across a restart: the new token works, the old ones stay revoked.
    let s = s.restart();
    assert_eq!(me(&s, &fresh).status, 200);
    me(&s, &old).assert_error(401, "unauthorized");
    // A change made with the fresh token revokes it in turn.
    no_content(&send(
        &s,
        "PUT",
        "/api/user/password",
        &fresh,
        &json!({"currentPassword": NEW_PASSWORD, "password": "a third passphrase"}),
    ));
    me(&s, &fresh).assert_error(401, "unauthorized");
    assert_eq!(
        me(&s, &token(&s, "ann@example.com", "a third passphrase")).status,
        200
    );
    s.stop();
}

#[test]
fn tokens_are_hs256_jwts_and_forged_variants_are_refused() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    register(&s, "u1", "ann", "ann@example.com");
    register(&s, "u2", "bob", "bob@example.com");
    let ann = token(&s, "ann@example.com", PASSWORD);
    let bob = token(&s, "bob@example.com", PASSWORD);

    let parts: Vec<&str> = ann.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {ann}");
    let header = b64json(parts[0]);
    assert_eq!(header["alg"], "HS256", "{header}");
    assert_eq!(header["typ"], "JWT", "{header}");
    let claims = b64json(parts[1]);
    assert_eq!(claims["sub"], "u1", "{claims}");
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 24 * 3600, "{claims}");
    assert!(
        claims["cv"].as_str().unwrap().parse::<u128>().is_ok(),
        "the credential version is a position: {claims}"
    );
    let bob_parts: Vec<&str> = bob.split('.').collect();

    let with_claims = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        b64url_encode(c.to_string().as_bytes())
    };
    let hdr = |alg: &str| b64url_encode(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
    let (h, p, sig) = (parts[0], parts[1], parts[2]);
    let mut flipped_sig = sig.to_owned();
    let last = flipped_sig.pop().unwrap();
    flipped_sig.push(if last == 'A' { 'B' } else { 'A' });
    let forged = [
        // 1. `alg: none`, no signature.
        format!("{}.{p}.", hdr("none")),
        // 2. Another algorithm named in the header, signature kept.
        format!("{}.{p}.{sig}", hdr("HS512")),
        // 3. Bob's claims under Ann's signature, 4. Ann's claims under Bob's signature.
        format!("{h}.{}.{sig}", bob_parts[1]),
        format!("{h}.{p}.{}", bob_parts[2]),
        // 5. Another subject, 6. a later expiry, 7. another credential version, signature kept.
        format!("{h}.{}.{sig}", with_claims(&|c| c["sub"] = json!("u2"))),
        format!(
            "{h}.{}.{sig}",
            with_claims(&|c| c["exp"] = json!(exp + 365 * 86400))
        ),
        format!("{h}.{}.{sig}", with_claims(&|c| c["cv"] = json!("1"))),
        // 8. No signature, 9. a flipped signature, 10. an extra segment.
        format!("{h}.{p}"),
        format!("{h}.{p}.{flipped_sig}"),
        format!("{ann}.x"),
        // 11. Garbage, 12. nothing.
        "a.b.c".to_owned(),
        String::new(),
    ];
    for t in &forged {
        let r = me(&s, t);
        r.assert_error(401, "unauthorized");
        assert!(!r.text().contains(p), "the token was echoed: {}", r.text());
    }
    // Another scheme, or no header: 401 too.
    let r = s.request(
        "GET",
        "/api/user",
        &[("authorization", &format!("Bearer {ann}"))],
        None,
    );
    r.assert_error(401, "unauthorized");
    s.get("/api/user").assert_error(401, "unauthorized");

    // A token signed by another host (another key) for the same user id.
    let other_dir = data_dir();
    let other = Server::start(other_dir.path());
    register(&other, "u1", "ann", "ann@example.com");
    let foreign = token(&other, "ann@example.com", PASSWORD);
    other.stop();
    me(&s, &foreign).assert_error(401, "unauthorized");
    // The real ones still work (the scheme is case-insensitive).
    assert_eq!(
        s.request(
            "GET",
            "/api/user",
            &[("authorization", &format!("token {ann}"))],
            None
        )
        .json()["username"],
        "ann"
    );
    assert_eq!(me(&s, &bob).json()["username"], "bob");
    s.stop();
}

#[test]
fn passwords_over_128_bytes_are_refused_before_hashing() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    // 65 characters but 130 bytes.
    let accented = "é".repeat(65);
    names(
        &s.post_json(
            "/api/users",
            &user("u1", "ann", "ann@example.com", &accented),
        ),
        400,
        "invalid_field",
        "password",
    );
    let longest = "p".repeat(128);
    let r = s.post_json(
        "/api/users",
        &user("u1", "ann", "ann@example.com", &longest),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let t = token(&s, "ann@example.com", &longest);
    for long in ["p".repeat(129), "x".repeat(60_000), accented.clone()] {
        names(
            &login(&s, "ann@example.com", &long),
            400,
            "invalid_field",
            "password",
        );
        names(
            &send(
                &s,
                "PUT",
                "/api/user/password",
                &t,
                &json!({"currentPassword": longest, "password": long}),
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
                &t,
                &json!({"currentPassword": long, "password": NEW_PASSWORD}),
            ),
            400,
            "invalid_field",
            "currentPassword",
        );
    }
    // Nothing changed.
    assert_eq!(me(&s, &t).status, 200);
    token(&s, "ann@example.com", &longest);
    s.stop();
}

#[test]
fn lookalike_emails_are_refused_or_collide_with_the_account_they_imitate() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    register(&s, "u1", "ann", "ann@example.com");
    register(&s, "u2", "jose", "jos\u{e9}@example.com"); // NFC
    register(&s, "u3", "bob", "bob@example.com");

    // Invisible and format characters: 400 naming the field.
    for (i, email) in [
        "ann@exam\u{200B}ple.com",
        "ann\u{200D}@example.com",
        "an\u{AD}n@example.com",
        "\u{FEFF}ann@example.com",
        "ann@example.com\u{202E}",
        "ann@exa\u{2060}mple.com",
        "ann\u{7}@example.com",
    ]
    .iter()
    .enumerate()
    {
        let r = s.post_json(
            "/api/users",
            &user(&format!("x{i}"), &format!("x{i}"), email, PASSWORD),
        );
        names(&r, 400, "invalid_field", "email");
    }
    // Compatibility forms, other scripts and other normalisation forms: the same account.
    for (i, email) in [
        "\u{FF41}\u{FF4E}\u{FF4E}@example.com", // fullwidth
        "\u{FF21}NN@example.com",               // fullwidth capital
        "\u{430}nn@example.com",                // Cyrillic a
        "ann@\u{435}\u{445}ample.com",          // Cyrillic e, x
        "jose\u{301}@example.com",              // NFD
    ]
    .iter()
    .enumerate()
    {
        let r = s.post_json(
            "/api/users",
            &user(&format!("y{i}"), &format!("y{i}"), email, PASSWORD),
        );
        r.assert_error(409, "email_taken");
    }
    // Changing to a lookalike is refused the same way.
    let bob = token(&s, "bob@example.com", PASSWORD);
    send(
        &s,
        "PUT",
        "/api/user/email",
        &bob,
        &json!({"email": "\u{430}nn@example.com"}),
    )
    .assert_error(409, "email_taken");
    names(
        &send(
            &s,
            "PUT",
            "/api/user/email",
            &bob,
            &json!({"email": "bob\u{200B}@example.com"}),
        ),
        400,
        "invalid_field",
        "email",
    );
    // A compatibility form is the same address at login; another script is not.
    token(&s, "\u{FF41}nn@example.com", PASSWORD);
    token(&s, "jose\u{301}@example.com", PASSWORD);
    login(&s, "\u{430}nn@example.com", PASSWORD).assert_error(401, "invalid_credentials");
    s.stop();
    let out = fairway(dir.path(), &["events", "--type", "UserRegistered"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
}

/// Starts `fairway serve` on `dir` and waits (at most 30 s) for it to exit by itself.
fn serve_until_exit(dir: &std::path::Path) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (status, text)
}

#[test]
fn a_secret_shorter_than_32_bytes_stops_the_host_at_start() {
    for value in [
        "",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddee",
    ] {
        let dir = data_dir();
        let file = dir.path().join("secrets.json");
        let mut f = std::fs::File::create(&file).unwrap();
        write!(
            f,
            "{}",
            json!({"secrets": {"users.token": value, "console.admin": "ab".repeat(32)}})
        )
        .unwrap();
        drop(f);
        let (status, output) = serve_until_exit(dir.path());
        let status =
            status.unwrap_or_else(|| panic!("the host kept running with {value:?}: {output}"));
        assert!(!status.success(), "{output}");
        assert!(output.contains("users.token"), "{output}");
        assert!(output.contains("secrets.json"), "{output}");
        assert!(output.contains("32"), "{output}");
        assert!(!output.contains("listening on"), "{output}");
    }
}

#[test]
fn deep_json_is_400_wherever_it_sits_in_the_body() {
    let dir = data_dir();
    let s = Server::start(dir.path());
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = |extra: &str| {
        format!(
            r#"{{"id":"u1","username":"ann","email":"ann@example.com","password":"{PASSWORD}","extra":{extra}}}"#
        )
    };
    let post = |path: &str, body: &str| {
        s.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.as_bytes()),
        )
    };
    // 30 000 nested arrays in an ignored field, and just one level too deep.
    for depth in [30_000, 64] {
        post("/api/users", &body(&nested(depth))).assert_error(400, "json_too_deep");
    }
    // Brackets inside strings do not count.
    let in_string = format!("\"{}\"", "[".repeat(1000));
    // Every module route, not only the users app.
    post(
        "/api/lists/l1",
        &format!(r#"{{"name":"L1","extra":{}}}"#, nested(30_000)),
    )
    .assert_error(400, "json_too_deep");
    // Nothing was written: the same registration, 64 levels deep in all, succeeds.
    let r = post("/api/users", &body(&nested(63)));
    assert_eq!(r.status, 201, "{}", r.text());
    let r = post(
        "/api/users",
        &format!(
            r#"{{"id":"u2","username":"bob","email":"bob@example.com","password":"{PASSWORD}","extra":{in_string}}}"#
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    s.stop();
}
