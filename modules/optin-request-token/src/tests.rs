//! Given/when/then for `optin-request-token`.

use fairway_runtime::testing::{given, nothing};

use super::*;

const ADA: &str = "ada@example.com";

fn request(token: &str) -> RequestOptInToken {
    RequestOptInToken {
        email: ADA.into(),
        token: token.into(),
    }
}

fn requested(token: &str) -> OptInTokenRequested {
    OptInTokenRequested {
        email: ADA.into(),
        token: token.into(),
    }
}

#[test]
fn a_token_is_issued_for_a_new_address() {
    nothing().when(request("t1")).then([requested("t1")]);
}

#[test]
fn a_new_request_replaces_the_token() {
    given([requested("t1")])
        .when(request("t2"))
        .then([requested("t2")]);
}

#[test]
fn a_confirmed_address_gets_no_token() {
    given([OptInConfirmed { email: ADA.into() }])
        .when(request("t2"))
        .then_err(RequestOptInTokenError::AlreadyConfirmed);
}

#[test]
fn other_addresses_do_not_matter() {
    given([OptInConfirmed {
        email: "bob@example.com".into(),
    }])
    .when(request("t1"))
    .then([requested("t1")]);
}

#[test]
fn addresses_are_checked() {
    assert_eq!(parse_email(" Ada@Example.com ").ok().as_deref(), Some(ADA));
    assert!(parse_email("no-at-sign").is_err());
    assert!(parse_email(&format!("{}@x", "a".repeat(MAX_EMAIL_LEN))).is_err());
}

#[test]
fn the_module_declares_its_route_and_events() {
    let module = module();
    let info = module.info();
    assert_eq!(info.name, "optin-request-token");
    assert_eq!(info.routes.len(), 1);
    assert_eq!(info.routes[0].method, "POST");
    assert_eq!(info.routes[0].path, "/api/optin/{email}/token");
    assert_eq!(info.reads, ["OptInConfirmed"]);
    assert_eq!(info.appends, ["OptInTokenRequested"]);
}
