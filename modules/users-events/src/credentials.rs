//! A user's credentials as the store holds them now: the current password hash and the
//! **credential version** every token carries, the position of the user's last credential
//! event (`UserRegistered` or `UserPasswordChanged`). A password change appends a new one, so
//! the version moves and every token issued before it stops being accepted.

use dcb_core::{Position, Query, QueryItem, ReadOptions};
use fairway_runtime::http::ApiError;
use fairway_runtime::{DomainEvent, Runtime, Sequenced};

use crate::events::{UserPasswordChanged, UserRegistered, user_tag};
use crate::values::UserId;

fairway_runtime::event_set! {
    /// The events that set a user's password.
    pub enum PasswordEvents {
        UserRegistered(UserRegistered),
        UserPasswordChanged(UserPasswordChanged),
    }
}

/// The user's credential events: registration and password changes.
pub fn credential_query(user: &UserId) -> Query {
    Query::item(
        QueryItem::new()
            .types([UserRegistered::TYPE, UserPasswordChanged::TYPE])
            .tag(user_tag(user)),
    )
}

/// A user's current password hash and credential version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The argon2 PHC string of the current password.
    pub password_hash: String,
    /// The position of the event that set it.
    pub version: Position,
}

/// The user's current credential (one backwards read of one event); `None` for an unknown user.
pub async fn current(rt: &Runtime, user: &UserId) -> Result<Option<Credential>, ApiError> {
    let events = rt
        .store()
        .read(
            credential_query(user),
            ReadOptions::new().backwards().limit(1),
        )
        .await?
        .collect_all()
        .await?;
    let Some(last) = events.into_iter().next() else {
        return Ok(None);
    };
    let decoded =
        Sequenced::<PasswordEvents>::decode(last).map_err(|e| ApiError::internal(e.to_string()))?;
    let password_hash = match decoded.event {
        PasswordEvents::UserRegistered(r) => r.password_hash,
        PasswordEvents::UserPasswordChanged(c) => c.password_hash,
    };
    Ok(Some(Credential {
        password_hash,
        version: decoded.position,
    }))
}

/// The user's current credential version; `None` for an unknown user.
pub async fn version(rt: &Runtime, user: &UserId) -> Result<Option<Position>, ApiError> {
    let events = rt
        .store()
        .read(
            credential_query(user),
            ReadOptions::new().backwards().limit(1),
        )
        .await?
        .collect_all()
        .await?;
    Ok(events.first().map(|e| e.position))
}
