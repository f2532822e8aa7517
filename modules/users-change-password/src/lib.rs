//! Pattern: **command**. Slice: users — change one's password.
//!
//! `PUT /api/user/password` with `Authorization: Token <token>` and `{"password"}` hashes the
//! password with argon2 (in the handler, before the decision), appends `UserPasswordChanged`
//! and answers 204. 400 for an invalid password, 401 without a valid token, 404
//! `user_not_found` for a token of an unknown user. Login uses the latest hash.
//!
//! Given/when/then:
//!
//! ```
//! use users_events::{UserId, UserPasswordChanged};
//! use users_change_password::{ChangePassword, ChangePasswordError};
//! use fairway_runtime::testing::nothing;
//! // Given no users, when u1 changes their password, then it is refused: unknown user.
//! nothing()
//!     .when(ChangePassword { user_id: UserId::parse("u1")?, password_hash: "h".into() })
//!     .then_err(ChangePasswordError::UnknownUser);
//! # Ok::<(), users_events::ValueError>(())
//! ```

use axum::extract::State;
use axum::http::StatusCode;
use dcb_core::{Query, QueryItem};
use fairway_runtime::http::{ApiError, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, DomainEvent, Module, ModuleKind, NewEvent, Rejection, Runtime,
    Sequenced,
};
use serde::Deserialize;
use users_events::{
    AuthUser, Password, UserId, UserPasswordChanged, UserRegistered, millis, password, user_tag,
};

/// `user_id` sets a new (already hashed) password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePassword {
    /// The user.
    pub user_id: UserId,
    /// The argon2 PHC string of the new password.
    pub password_hash: String,
}

/// Why a password change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangePasswordError {
    /// No such user.
    #[error("no such user")]
    UnknownUser,
}

impl DomainError for ChangePasswordError {
    fn code(&self) -> &'static str {
        "user_not_found"
    }

    fn rejection(&self) -> Rejection {
        Rejection::NotFound
    }
}

fairway_runtime::event_set! {
    /// Whether the user exists.
    pub enum Registration { UserRegistered(UserRegistered) }
}

impl Command for ChangePassword {
    type Events = Registration;
    type State = bool;
    type Error = ChangePasswordError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::item(
            QueryItem::new()
                .r#type(UserRegistered::TYPE)
                .tag(user_tag(&self.user_id)),
        )
    }

    fn evolve(exists: &mut bool, _: &Sequenced<Registration>) {
        *exists = true;
    }

    fn decide(
        &self,
        exists: &bool,
        ctx: &Ctx<'_, ()>,
    ) -> Result<Vec<NewEvent>, ChangePasswordError> {
        if !*exists {
            return Err(ChangePasswordError::UnknownUser);
        }
        Ok(vec![
            UserPasswordChanged {
                user_id: self.user_id.clone(),
                password_hash: self.password_hash.clone(),
                changed_at_ms: millis(ctx.now()),
            }
            .into(),
        ])
    }
}

/// The request body.
#[derive(Deserialize)]
pub struct ChangePasswordBody {
    /// The new password in plain text.
    pub password: String,
}

async fn change_password(
    State(rt): State<Runtime>,
    AuthUser(user_id): AuthUser,
    JsonBody(body): JsonBody<ChangePasswordBody>,
) -> Result<StatusCode, ApiError> {
    let pw = Password::parse(&body.password).map_err(|e| ApiError::bad_field("password", e))?;
    let password_hash = password::hash(&rt, pw).await?;
    rt.execute(
        &ChangePassword {
            user_id,
            password_hash,
        },
        &(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The module: `PUT /api/user/password`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "users-change-password")
        .describe("Change one's password (hashed with argon2)")
        .put("/api/user/password", change_password)
        .command::<ChangePassword>()
        .appends::<UserPasswordChanged>()
}
