//! Pattern: **command**. Slice: users — change one's email.
//!
//! `PUT /api/user/email` with `Authorization: Token <token>` and `{"email"}` appends
//! `UserEmailChanged` (releasing the previous email) and answers 204; the same email again is a
//! no-op 204. 400 for an invalid email (invisible, format or control characters included), 401
//! without a valid token (one naming an unknown user is refused as revoked; the command's own
//! answer to an unknown user is 404 `user_not_found`), 409 `email_taken`
//! when another user holds the email or a lookalike of it (same confusable skeleton) and
//! `email_recently_released` when another user released it less than 72 hours ago (a user may
//! take back their own). Two reads: the user's last email event (backwards, limit one) and the
//! new email's uses, each its own append condition.
//!
//! Given/when/then:
//!
//! ```
//! use users_events::{Email, UserEmailChanged, UserId, UserRegistered, Username};
//! use users_change_email::ChangeEmail;
//! use fairway_runtime::testing::given;
//! let u1 = UserId::parse("u1")?;
//! // Given ann registered at 2024-01-01, when she changes her email, then it is changed.
//! given([UserRegistered { user_id: u1.clone(), username: Username::parse("ann")?,
//!     email: Email::parse("ann@x.io")?, password_hash: "h".into(), registered_at_ms: 0 }])
//!     .when(ChangeEmail { user_id: u1.clone(), email: Email::parse("new@x.io")? })
//!     .then([UserEmailChanged { user_id: u1, previous_email: Email::parse("ann@x.io")?,
//!         email: Email::parse("new@x.io")?, changed_at_ms: 1_704_067_200_000 }]);
//! # Ok::<(), users_events::ValueError>(())
//! ```

use std::collections::HashMap;

use axum::extract::State;
use axum::response::NoContent;
use dcb_core::Query;
use fairway_runtime::http::{ApiError, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, Module, ModuleKind, NewEvent, Read, Rejection, Runtime, Sequenced,
};
use schemars::JsonSchema;
use serde::Deserialize;
use users_events::{
    AuthUser, Email, EmailEvent, EmailKey, EmailUnavailable, EmailUse, UserEmailChanged, UserId,
    UserRegistered, email_query, email_use, millis, user_tag,
};

/// `user_id` moves to `email`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEmail {
    /// The user.
    pub user_id: UserId,
    /// The new email.
    pub email: Email,
}

/// Why an email change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeEmailError {
    /// No such user.
    #[error("no such user")]
    UnknownUser,
    /// Another user holds the email.
    #[error("this email is taken")]
    EmailTaken,
    /// Another user released the email less than 72 hours ago.
    #[error("this email was released less than 72 hours ago")]
    EmailRecentlyReleased,
}

impl DomainError for ChangeEmailError {
    fn code(&self) -> &'static str {
        match self {
            ChangeEmailError::UnknownUser => "user_not_found",
            ChangeEmailError::EmailTaken => "email_taken",
            ChangeEmailError::EmailRecentlyReleased => "email_recently_released",
        }
    }

    fn rejection(&self) -> Rejection {
        match self {
            ChangeEmailError::UnknownUser => Rejection::NotFound,
            _ => Rejection::Conflict,
        }
    }
}

fairway_runtime::event_set! {
    /// Who uses which email.
    pub enum EmailEvents {
        UserRegistered(UserRegistered),
        UserEmailChanged(UserEmailChanged),
    }
}

/// Each user's current email, and the uses of the emails seen.
#[derive(Debug, Default)]
pub struct Emails {
    current: HashMap<UserId, Email>,
    uses: HashMap<EmailKey, EmailUse>,
}

impl Command for ChangeEmail {
    type Events = EmailEvents;
    type State = Emails;
    type Error = ChangeEmailError;
    type Deps = ();

    /// The user's email events; the last one holds the current email.
    fn query(&self) -> Query {
        Query::tagged(user_tag(&self.user_id))
    }

    fn last(&self) -> Option<u64> {
        Some(1)
    }

    /// Who uses the new email or a lookalike.
    fn more_reads(&self) -> Vec<Read> {
        vec![Read::new(email_query(&self.email))]
    }

    fn evolve(s: &mut Emails, e: &Sequenced<EmailEvents>) {
        match &e.event {
            EmailEvents::UserRegistered(r) => {
                s.current.insert(r.user_id.clone(), r.email.clone());
                email_use(&mut s.uses, EmailEvent::Registered(r));
            }
            EmailEvents::UserEmailChanged(c) => {
                s.current.insert(c.user_id.clone(), c.email.clone());
                email_use(&mut s.uses, EmailEvent::Changed(c));
            }
        }
    }

    fn decide(&self, s: &Emails, ctx: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, ChangeEmailError> {
        let Some(current) = s.current.get(&self.user_id) else {
            return Err(ChangeEmailError::UnknownUser);
        };
        if *current == self.email {
            return Ok(vec![]);
        }
        if let Some(used) = s.uses.get(&self.email.key()) {
            used.check(&self.user_id, ctx.now()).map_err(|e| match e {
                EmailUnavailable::Held => ChangeEmailError::EmailTaken,
                EmailUnavailable::RecentlyReleased => ChangeEmailError::EmailRecentlyReleased,
            })?;
        }
        Ok(vec![
            UserEmailChanged {
                user_id: self.user_id.clone(),
                previous_email: current.clone(),
                email: self.email.clone(),
                changed_at_ms: millis(ctx.now()),
            }
            .into(),
        ])
    }
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ChangeEmailBody {
    /// The new email (at most 254 characters).
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
}

async fn change_email(
    State(rt): State<Runtime>,
    AuthUser(user_id): AuthUser,
    JsonBody(body): JsonBody<ChangeEmailBody>,
) -> Result<NoContent, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::bad_field("email", e))?;
    rt.execute(&ChangeEmail { user_id, email }, &()).await?;
    Ok(NoContent)
}

/// The module: `PUT /api/user/email`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "users-change-email")
        .describe("Change one's email: unique, released emails reserved for 72 hours")
        .put("/api/user/email", change_email)
        .command::<ChangeEmail>()
        .appends::<UserEmailChanged>()
}
