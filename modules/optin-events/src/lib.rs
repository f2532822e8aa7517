//! `optin-events`: the events of the optin context (dcb.events' "opt-in token" scenario): a
//! token is requested for an email address, then the address is confirmed with it, within
//! [`TOKEN_VALIDITY`] (60 minutes) of the request. It is the only code the optin modules share.
//!
//! Layer: a context's events crate, below its modules. Depends on `fairway-runtime` (for
//! `DomainEvent`) and `serde` only; must not depend on any module, any backend, or HTTP.
//!
//! Tags: `optin:{email}`. The expiry rule reads the request's recorded-at time (stamped by the
//! runtime's clock, the test clock in given/when/then), so no time is stored in the data.

use std::time::Duration;

use fairway_runtime::{DomainEvent, tag};
use serde::{Deserialize, Serialize};

/// How long a requested token can confirm the address: 60 minutes.
pub const TOKEN_VALIDITY: Duration = Duration::from_secs(60 * 60);

/// The tag of one address's opt-in: `optin:{email}`.
pub fn optin_tag(email: &str) -> String {
    tag("optin", email)
}

/// A confirmation token was issued for an address (a later request replaces it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(type = "OptInTokenRequested")]
#[serde(rename_all = "camelCase")]
pub struct OptInTokenRequested {
    /// The address to confirm.
    #[tag("optin")]
    pub email: String,
    /// The token that confirms it.
    #[event(sensitive)]
    pub token: String,
}

/// The address was confirmed with its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(type = "OptInConfirmed")]
#[serde(rename_all = "camelCase")]
pub struct OptInConfirmed {
    /// The confirmed address.
    #[tag("optin")]
    pub email: String,
}

#[cfg(test)]
mod tests {
    use fairway_runtime::DomainEvent;

    use super::*;

    #[test]
    fn both_events_carry_the_address_tag() {
        let requested = OptInTokenRequested {
            email: "ada@example.com".into(),
            token: "t".into(),
        };
        assert_eq!(requested.tags(), vec![optin_tag("ada@example.com")]);
        let confirmed = OptInConfirmed {
            email: "ada@example.com".into(),
        };
        assert_eq!(confirmed.tags(), requested.tags());
        assert_eq!(OptInTokenRequested::SENSITIVE_FIELDS, ["token"]);
    }
}
