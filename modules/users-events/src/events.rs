//! The events of the users context, their tags, and the email-availability rule.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use dcb_core::{Query, QueryItem};
use fairway_runtime::{DomainEvent, tag};
use serde::{Deserialize, Serialize};

use crate::values::{Email, EmailKey, RELEASE_WINDOW, UserId, Username};

/// `user:<id>`.
pub fn user_tag(user: &UserId) -> String {
    tag("user", user)
}

/// `email:<address>`.
pub fn email_tag(email: &Email) -> String {
    tag("email", email)
}

/// `email-key:<skeleton>`: the tag that email uniqueness goes by (see [`EmailKey`]).
pub fn email_key_tag(email: &Email) -> String {
    tag("email-key", email.key())
}

/// The registrations and email changes that concern `email` or any lookalike of it: tagged
/// with its key, or (events written before keys existed) with the exact address.
pub fn email_query(email: &Email) -> Query {
    let types = [UserRegistered::TYPE, UserEmailChanged::TYPE];
    Query::items([
        QueryItem::new().types(types).tag(email_key_tag(email)),
        QueryItem::new().types(types).tag(email_tag(email)),
    ])
}

/// `username:<name>`.
pub fn username_tag(username: &Username) -> String {
    tag("username", username)
}

/// Milliseconds since the Unix epoch (0 before it), the time format of event data.
pub fn millis(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// A user registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRegistered {
    /// The new user.
    pub user_id: UserId,
    /// Their username.
    pub username: Username,
    /// Their email.
    pub email: Email,
    /// The argon2 PHC string of their password.
    pub password_hash: String,
    /// When (ms since the epoch).
    pub registered_at_ms: u64,
}

impl DomainEvent for UserRegistered {
    const TYPE: &'static str = "UserRegistered";
    const SENSITIVE_FIELDS: &'static [&'static str] = &["passwordHash"];
    fn tags(&self) -> Vec<String> {
        vec![
            user_tag(&self.user_id),
            username_tag(&self.username),
            email_tag(&self.email),
            email_key_tag(&self.email),
        ]
    }
}

/// A user moved to another email, releasing the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEmailChanged {
    /// The user.
    pub user_id: UserId,
    /// The email released.
    pub previous_email: Email,
    /// The email taken.
    pub email: Email,
    /// When (ms since the epoch); the previous email stays reserved for [`RELEASE_WINDOW`].
    pub changed_at_ms: u64,
}

impl DomainEvent for UserEmailChanged {
    const TYPE: &'static str = "UserEmailChanged";
    fn tags(&self) -> Vec<String> {
        let mut tags = vec![
            user_tag(&self.user_id),
            email_tag(&self.previous_email),
            email_tag(&self.email),
            email_key_tag(&self.previous_email),
        ];
        // A move to a lookalike of one's own address keeps the key: no duplicate tag.
        let key = email_key_tag(&self.email);
        if !tags.contains(&key) {
            tags.push(key);
        }
        tags
    }
}

/// A user set a new password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPasswordChanged {
    /// The user.
    pub user_id: UserId,
    /// The argon2 PHC string of the new password.
    pub password_hash: String,
    /// When (ms since the epoch).
    pub changed_at_ms: u64,
}

impl DomainEvent for UserPasswordChanged {
    const TYPE: &'static str = "UserPasswordChanged";
    const SENSITIVE_FIELDS: &'static [&'static str] = &["passwordHash"];
    fn tags(&self) -> Vec<String> {
        vec![user_tag(&self.user_id)]
    }
}

/// A user changed some of their details; absent fields are unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDetailsChanged {
    /// The user.
    pub user_id: UserId,
    /// The new username, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<Username>,
    /// The username released, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_username: Option<Username>,
    /// The new bio (`Some(None)`: cleared), when it changed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "double_option"
    )]
    pub bio: Option<Option<String>>,
    /// The new image link (`Some(None)`: cleared), when it changed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "double_option"
    )]
    pub image: Option<Option<String>>,
}

impl DomainEvent for UserDetailsChanged {
    const TYPE: &'static str = "UserDetailsChanged";
    fn tags(&self) -> Vec<String> {
        let mut tags = vec![user_tag(&self.user_id)];
        tags.extend(self.previous_username.as_ref().map(username_tag));
        tags.extend(self.username.as_ref().map(username_tag));
        tags
    }
}

/// The welcome email was handed to the mailer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WelcomeEmailSent {
    /// The user.
    pub user_id: UserId,
    /// Where it went.
    pub email: Email,
}

impl DomainEvent for WelcomeEmailSent {
    const TYPE: &'static str = "WelcomeEmailSent";
    fn tags(&self) -> Vec<String> {
        vec![user_tag(&self.user_id)]
    }
}

/// Who uses an email address (and its lookalikes: the state is keyed by [`EmailKey`]), folded
/// from `UserRegistered` and `UserEmailChanged`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailUse {
    /// A user's current email.
    Held(UserId),
    /// A user moved away from it at this time (ms since the epoch).
    Released {
        /// Who released it.
        by: UserId,
        /// When.
        at_ms: u64,
    },
}

/// Why an email cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailUnavailable {
    /// Another user's current email.
    Held,
    /// Another user released it less than [`RELEASE_WINDOW`] ago.
    RecentlyReleased,
}

impl EmailUse {
    /// Whether `claimant` may take the email at `now`: not while another user holds it, not
    /// within [`RELEASE_WINDOW`] after another user released it. A user may always take back
    /// their own.
    pub fn check(&self, claimant: &UserId, now: SystemTime) -> Result<(), EmailUnavailable> {
        match self {
            EmailUse::Held(u) if u != claimant => Err(EmailUnavailable::Held),
            EmailUse::Released { by, at_ms } if by != claimant => {
                let window = u64::try_from(RELEASE_WINDOW.as_millis()).unwrap_or(u64::MAX);
                if millis(now) < at_ms.saturating_add(window) {
                    Err(EmailUnavailable::RecentlyReleased)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Records what an event says about email use (oldest event first), by email key.
pub fn email_use(uses: &mut HashMap<EmailKey, EmailUse>, event: EmailEvent<'_>) {
    match event {
        EmailEvent::Registered(r) => {
            uses.insert(r.email.key(), EmailUse::Held(r.user_id.clone()));
        }
        EmailEvent::Changed(c) => {
            uses.insert(
                c.previous_email.key(),
                EmailUse::Released {
                    by: c.user_id.clone(),
                    at_ms: c.changed_at_ms,
                },
            );
            uses.insert(c.email.key(), EmailUse::Held(c.user_id.clone()));
        }
    }
}

/// An event that says who uses an email.
#[derive(Debug, Clone, Copy)]
pub enum EmailEvent<'a> {
    /// A registration.
    Registered(&'a UserRegistered),
    /// An email change.
    Changed(&'a UserEmailChanged),
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn uid(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn an_email_released_by_another_user_is_reserved_for_72_hours() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let released = EmailUse::Released {
            by: uid("ann"),
            at_ms: millis(t0),
        };
        let just_before = t0 + RELEASE_WINDOW - Duration::from_millis(1);
        assert_eq!(
            released.check(&uid("bob"), just_before),
            Err(EmailUnavailable::RecentlyReleased)
        );
        assert_eq!(released.check(&uid("bob"), t0 + RELEASE_WINDOW), Ok(()));
        assert_eq!(released.check(&uid("ann"), t0), Ok(()));
        assert_eq!(
            EmailUse::Held(uid("ann")).check(&uid("bob"), t0),
            Err(EmailUnavailable::Held)
        );
        assert_eq!(EmailUse::Held(uid("ann")).check(&uid("ann"), t0), Ok(()));
    }

    #[test]
    fn tags_name_both_sides_of_a_change() {
        let c = UserEmailChanged {
            user_id: uid("u1"),
            previous_email: Email::parse("a@x.io").unwrap(),
            email: Email::parse("b@x.io").unwrap(),
            changed_at_ms: 0,
        };
        assert_eq!(
            c.tags(),
            vec![
                "user:u1",
                "email:a@x.io",
                "email:b@x.io",
                "email-key:a@x.io",
                "email-key:b@x.io"
            ]
        );
        // A move to a lookalike of one's own address: one key tag.
        let same = UserEmailChanged {
            email: Email::parse("\u{430}@x.io").unwrap(),
            ..c.clone()
        };
        assert_eq!(
            same.tags(),
            vec![
                "user:u1",
                "email:a@x.io",
                "email:\u{430}@x.io",
                "email-key:a@x.io"
            ]
        );
        let d = UserDetailsChanged {
            user_id: uid("u1"),
            username: Some(Username::parse("new").unwrap()),
            previous_username: Some(Username::parse("old").unwrap()),
            bio: None,
            image: Some(None),
        };
        assert_eq!(d.tags(), vec!["user:u1", "username:old", "username:new"]);
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"userId":"u1","username":"new","previousUsername":"old","image":null})
        );
        let back: UserDetailsChanged =
            serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }
}
