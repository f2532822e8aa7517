//! Pattern: **command**. Slice: users — change one's password.
//!
//! `PUT /api/user/password` with `Authorization: Token <token>` and
//! `{"currentPassword","password"}` checks the current password (throttled like a login, per
//! client address and per account), hashes the new one with argon2 (in the handler, before the
//! decision), appends `UserPasswordChanged` and answers 204. The change moves the user's
//! credential version, so every token issued before it — the one used here included — is
//! refused from then on: log in again for a new one. 400 naming a missing or invalid field (a
//! new password under 8 characters, either over 128 bytes: checked before any hashing), 401
//! without a valid token, 403 `wrong_password` for a wrong current password, 404
//! `user_not_found` for a token of an unknown user, 409 `password_changed` when another change
//! landed after the current password was checked, 429 `too_many_requests` / 503 `busy` with
//! `Retry-After` when throttled / when the hash queue is full. Login uses the latest hash.
//!
//! Given/when/then:
//!
//! ```
//! use dcb_core::Position;
//! use users_events::UserId;
//! use users_change_password::{ChangePassword, ChangePasswordError};
//! use fairway_runtime::testing::nothing;
//! // Given no users, when u1 changes their password, then it is refused: unknown user.
//! nothing()
//!     .when(ChangePassword { user_id: UserId::parse("u1")?, expected_version: Position::from_u64(1),
//!         password_hash: "h".into() })
//!     .then_err(ChangePasswordError::UnknownUser);
//! # Ok::<(), users_events::ValueError>(())
//! ```

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::NoContent;
use dcb_core::{Position, Query};
use fairway_runtime::http::{ApiError, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, Module, ModuleKind, NewEvent, Rejection, Runtime, Sequenced,
};
use schemars::JsonSchema;
use serde::Deserialize;
use users_events::credentials::{self, credential_query};
use users_events::{
    AuthUser, ClientAddr, Password, UserId, UserPasswordChanged, UserRegistered, millis, password,
    throttle,
};

/// `user_id` sets a new (already hashed) password, having proven the password set at
/// `expected_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePassword {
    /// The user.
    pub user_id: UserId,
    /// The credential version whose password the request proved (the position of the user's
    /// last registration or password change when it was checked).
    pub expected_version: Position,
    /// The argon2 PHC string of the new password.
    pub password_hash: String,
}

/// Why a password change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangePasswordError {
    /// No such user.
    #[error("no such user")]
    UnknownUser,
    /// Another change landed after the current password was checked.
    #[error("the password was changed meanwhile; log in again")]
    ChangedMeanwhile,
}

impl DomainError for ChangePasswordError {
    fn code(&self) -> &'static str {
        match self {
            ChangePasswordError::UnknownUser => "user_not_found",
            ChangePasswordError::ChangedMeanwhile => "password_changed",
        }
    }

    fn rejection(&self) -> Rejection {
        match self {
            ChangePasswordError::UnknownUser => Rejection::NotFound,
            ChangePasswordError::ChangedMeanwhile => Rejection::Conflict,
        }
    }
}

fairway_runtime::event_set! {
    /// The events that set the user's password.
    pub enum Credentials {
        UserRegistered(UserRegistered),
        UserPasswordChanged(UserPasswordChanged),
    }
}

impl Command for ChangePassword {
    type Events = Credentials;
    /// The current credential version, when the user exists.
    type State = Option<Position>;
    type Error = ChangePasswordError;
    type Deps = ();

    /// The user's registration and password changes; the last one is the current version.
    fn query(&self) -> Query {
        credential_query(&self.user_id)
    }

    fn last(&self) -> Option<u64> {
        Some(1)
    }

    fn evolve(version: &mut Option<Position>, e: &Sequenced<Credentials>) {
        *version = Some(e.position);
    }

    fn decide(
        &self,
        version: &Option<Position>,
        ctx: &Ctx<'_, ()>,
    ) -> Result<Vec<NewEvent>, ChangePasswordError> {
        match version {
            None => Err(ChangePasswordError::UnknownUser),
            Some(v) if *v != self.expected_version => Err(ChangePasswordError::ChangedMeanwhile),
            Some(_) => Ok(vec![
                UserPasswordChanged {
                    user_id: self.user_id.clone(),
                    password_hash: self.password_hash.clone(),
                    changed_at_ms: millis(ctx.now()),
                }
                .into(),
            ]),
        }
    }
}

/// The request body.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePasswordBody {
    /// The current password in plain text.
    #[schemars(length(max = 128))]
    pub current_password: String,
    /// The new password in plain text: at least 8 characters, at most 128 bytes.
    #[schemars(length(min = 8, max = 128))]
    pub password: String,
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "user_not_found", "no such user")
}

async fn change_password(
    State(rt): State<Runtime>,
    ClientAddr(address): ClientAddr,
    AuthUser(user_id): AuthUser,
    JsonBody(body): JsonBody<ChangePasswordBody>,
) -> Result<NoContent, ApiError> {
    let current = Password::candidate(&body.current_password)
        .map_err(|e| ApiError::bad_field("currentPassword", e))?;
    let new = Password::parse(&body.password).map_err(|e| ApiError::bad_field("password", e))?;
    throttle::throttle(&rt).check(address, &format!("user:{user_id}"))?;
    let credential = credentials::current(&rt, &user_id)
        .await?
        .ok_or_else(not_found)?;
    if !password::verify(current, credential.password_hash).await? {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "currentPassword: wrong password",
        ));
    }
    let password_hash = password::hash(&rt, new).await?;
    rt.execute(
        &ChangePassword {
            user_id,
            expected_version: credential.version,
            password_hash,
        },
        &(),
    )
    .await?;
    Ok(NoContent)
}

/// The module: `PUT /api/user/password`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "users-change-password")
        .describe("Change one's password (hashed with argon2)")
        .put("/api/user/password", change_password)
        .command::<ChangePassword>()
        .appends::<UserPasswordChanged>()
}
