//! The optin context over the real binary: a token is issued, a wrong one is refused, the right
//! one confirms the address once. (The 60-minute expiry is tested with the test clock in
//! `modules/optin-confirm`.)

#![allow(clippy::unwrap_used)]

mod kit;

use kit::{Served, post_json};
use serde_json::json;

#[test]
fn request_a_token_and_confirm_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), &[]);

    let r = post_json(s.addr, "/api/optin/Ada@Example.com/token", &json!({}));
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());

    let confirm = |token: &str| {
        post_json(
            s.addr,
            "/api/optin/ada@example.com/confirm",
            &json!({ "token": token }),
        )
    };
    confirm("not-the-token").assert_error(422, "wrong_token");
    let r = confirm(&token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["email"], "ada@example.com");
    confirm(&token).assert_error(409, "already_confirmed");
    post_json(s.addr, "/api/optin/ada@example.com/token", &json!({}))
        .assert_error(409, "already_confirmed");
    post_json(
        s.addr,
        "/api/optin/nobody@example.com/confirm",
        &json!({"token": "x"}),
    )
    .assert_error(404, "no_token");
    post_json(s.addr, "/api/optin/no-at-sign/token", &json!({})).assert_error(400, "invalid_field");
    s.stop();
}
