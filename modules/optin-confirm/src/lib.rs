//! Command `optin-confirm` (context `optin`): confirms an email address with the token issued
//! for it, within 60 minutes of the request ([`TOKEN_VALIDITY`]).
//!
//! Pattern: command. Slice: `POST /api/optin/{email}/confirm` with `{"token"}` reads the events
//! tagged `optin:{email}` and appends `OptInConfirmed`, answering 200 `{"email","position"}`; or
//! 404 `no_token` (none was requested), 422 `wrong_token` (not the latest token), 422
//! `token_expired` (requested more than 60 minutes ago, by the request's recorded-at time), 409
//! `already_confirmed`.
//!
//! ```text
//! given  OptInTokenRequested { email: "ada@example.com", token: "t1" }, then 61 minutes pass
//! when   ConfirmOptIn { email: "ada@example.com", token: "t1" }
//! then   rejected: ConfirmOptInError::TokenExpired
//! ```

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, State};
use dcb_core::Query;
use fairway_runtime::http::{ApiError, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, Module, ModuleKind, NewEvent, Rejection, Runtime, Sequenced,
};
pub use optin_events::TOKEN_VALIDITY;
use optin_events::{OptInConfirmed, OptInTokenRequested, optin_tag};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fairway_runtime::event_set! {
    /// What the decision reads.
    pub enum ConfirmOptInEvents {
        Requested(OptInTokenRequested),
        Confirmed(OptInConfirmed),
    }
}

/// Confirm `email` with `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmOptIn {
    /// The address.
    pub email: String,
    /// The token the address got.
    pub token: String,
}

/// Why [`ConfirmOptIn`] is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmOptInError {
    /// No token was requested for the address.
    #[error("no token was requested for the address")]
    NoToken,
    /// The token is not the latest one issued for the address.
    #[error("the token is not the one issued for the address")]
    WrongToken,
    /// The token was requested more than [`TOKEN_VALIDITY`] ago.
    #[error("the token expired: it was requested more than 60 minutes ago")]
    TokenExpired,
    /// The address is confirmed already.
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
}

impl DomainError for ConfirmOptInError {
    fn code(&self) -> &'static str {
        match self {
            ConfirmOptInError::NoToken => "no_token",
            ConfirmOptInError::WrongToken => "wrong_token",
            ConfirmOptInError::TokenExpired => "token_expired",
            ConfirmOptInError::AlreadyConfirmed => "already_confirmed",
        }
    }

    fn rejection(&self) -> Rejection {
        match self {
            ConfirmOptInError::NoToken => Rejection::NotFound,
            ConfirmOptInError::WrongToken | ConfirmOptInError::TokenExpired => {
                Rejection::Unprocessable
            }
            ConfirmOptInError::AlreadyConfirmed => Rejection::Conflict,
        }
    }
}

/// The address's opt-in so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptInState {
    /// The latest token and when it was requested (its event's recorded-at time).
    pub latest: Option<(String, Option<SystemTime>)>,
    /// Whether the address is confirmed.
    pub confirmed: bool,
}

impl Command for ConfirmOptIn {
    type Events = ConfirmOptInEvents;
    type State = OptInState;
    type Error = ConfirmOptInError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::tagged(optin_tag(&self.email))
    }

    fn evolve(state: &mut OptInState, e: &Sequenced<ConfirmOptInEvents>) {
        match &e.event {
            ConfirmOptInEvents::Requested(r) => {
                state.latest = Some((r.token.clone(), e.metadata.recorded_at));
            }
            ConfirmOptInEvents::Confirmed(_) => state.confirmed = true,
        }
    }

    fn decide(
        &self,
        state: &OptInState,
        ctx: &Ctx<'_, ()>,
    ) -> Result<Vec<NewEvent>, ConfirmOptInError> {
        if state.confirmed {
            return Err(ConfirmOptInError::AlreadyConfirmed);
        }
        let Some((token, requested_at)) = &state.latest else {
            return Err(ConfirmOptInError::NoToken);
        };
        if *token != self.token {
            return Err(ConfirmOptInError::WrongToken);
        }
        // A request without a recorded-at time cannot be shown to be recent: expired.
        let age = requested_at.map_or(Duration::MAX, |at| {
            ctx.now().duration_since(at).unwrap_or(Duration::ZERO)
        });
        if age > TOKEN_VALIDITY {
            return Err(ConfirmOptInError::TokenExpired);
        }
        Ok(vec![
            OptInConfirmed {
                email: self.email.clone(),
            }
            .into(),
        ])
    }
}

/// The request body.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConfirmBody {
    /// The token the address got.
    pub token: String,
}

async fn handle(
    State(rt): State<Runtime>,
    Path(email): Path<String>,
    JsonBody(body): JsonBody<ConfirmBody>,
) -> Result<Json<Confirmed>, ApiError> {
    let email = email.trim().to_lowercase();
    if email.is_empty() || email.len() > 254 || !email.contains('@') {
        return Err(ApiError::bad_field(
            "email",
            "must be an address of 1 to 254 bytes with an @",
        ));
    }
    if body.token.is_empty() || body.token.len() > 64 {
        return Err(ApiError::bad_field("token", "must be 1 to 64 bytes"));
    }
    let cmd = ConfirmOptIn {
        email,
        token: body.token,
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Json(Confirmed {
        email: cmd.email,
        position: done.last(),
    }))
}

/// The answer: the confirmed address and the position of the confirmation.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Confirmed {
    /// The address, lower-cased.
    pub email: String,
    /// The confirmation's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/optin/{email}/confirm`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "optin-confirm")
        .describe("Confirms an email address with its token, within 60 minutes of the request")
        .post("/api/optin/{email}/confirm", handle)
        .command::<ConfirmOptIn>()
        .appends::<OptInConfirmed>()
}

#[cfg(test)]
mod tests;
