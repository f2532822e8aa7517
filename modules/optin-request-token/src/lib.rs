//! Command `optin-request-token` (context `optin`): issues a confirmation token for an email
//! address that is not confirmed yet.
//!
//! Pattern: command. Slice: `POST /api/optin/{email}/token` reads the events tagged
//! `optin:{email}` and appends `OptInTokenRequested` with a fresh token, answering 201
//! `{"token","position"}` (a real app would mail the token; this example hands it back), or 409
//! `already_confirmed`. A new request replaces the previous token and restarts its 60 minutes.
//!
//! ```text
//! given  OptInConfirmed { email: "ada@example.com" }
//! when   RequestOptInToken { email: "ada@example.com", token: "t2" }
//! then   rejected: RequestOptInTokenError::AlreadyConfirmed
//! ```

use axum::extract::{Path, State};
use dcb_core::Query;
use fairway_runtime::http::{ApiError, Created};
use fairway_runtime::{
    Command, Ctx, DomainError, Module, ModuleKind, NewEvent, Runtime, Sequenced,
};
use optin_events::{OptInConfirmed, OptInTokenRequested, optin_tag};
use schemars::JsonSchema;
use serde::Serialize;

/// The longest email address accepted (in bytes).
pub const MAX_EMAIL_LEN: usize = 254;

fairway_runtime::event_set! {
    /// What the decision reads.
    pub enum RequestOptInTokenEvents { Confirmed(OptInConfirmed) }
}

/// Issue `token` for `email`, unless the address is already confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOptInToken {
    /// The address to confirm.
    pub email: String,
    /// The token to issue (the handler draws it from the runtime's ids).
    pub token: String,
}

/// Why [`RequestOptInToken`] is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestOptInTokenError {
    /// The address is confirmed already.
    #[error("the address is already confirmed")]
    AlreadyConfirmed,
}

impl DomainError for RequestOptInTokenError {
    fn code(&self) -> &'static str {
        match self {
            RequestOptInTokenError::AlreadyConfirmed => "already_confirmed",
        }
    }
}

impl Command for RequestOptInToken {
    type Events = RequestOptInTokenEvents;
    /// Whether the address is confirmed.
    type State = bool;
    type Error = RequestOptInTokenError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::tagged(optin_tag(&self.email))
    }

    fn evolve(confirmed: &mut bool, _: &Sequenced<RequestOptInTokenEvents>) {
        *confirmed = true;
    }

    fn decide(
        &self,
        confirmed: &bool,
        _: &Ctx<'_, ()>,
    ) -> Result<Vec<NewEvent>, RequestOptInTokenError> {
        if *confirmed {
            return Err(RequestOptInTokenError::AlreadyConfirmed);
        }
        Ok(vec![
            OptInTokenRequested {
                email: self.email.clone(),
                token: self.token.clone(),
            }
            .into(),
        ])
    }
}

/// Checks an address from the path: 1 to [`MAX_EMAIL_LEN`] bytes with an `@`, lower-cased.
pub fn parse_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() || email.len() > MAX_EMAIL_LEN || !email.contains('@') {
        return Err(ApiError::bad_field(
            "email",
            format!("must be an address of 1 to {MAX_EMAIL_LEN} bytes with an @"),
        ));
    }
    Ok(email)
}

async fn handle(
    State(rt): State<Runtime>,
    Path(email): Path<String>,
) -> Result<Created<TokenIssued>, ApiError> {
    let cmd = RequestOptInToken {
        email: parse_email(&email)?,
        token: rt.env().new_id().simple().to_string(),
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Created(TokenIssued {
        token: cmd.token,
        position: done.last(),
    }))
}

/// The answer: the token and the position of its request.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenIssued {
    /// The confirmation token (valid for 60 minutes).
    pub token: String,
    /// The request's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/optin/{email}/token`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "optin-request-token")
        .describe("Issues a confirmation token for an email address not confirmed yet")
        .post("/api/optin/{email}/token", handle)
        .command::<RequestOptInToken>()
        .appends::<OptInTokenRequested>()
}

#[cfg(test)]
mod tests;
