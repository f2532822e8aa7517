//! Pattern: **view** (live). Slice: users — log in.
//!
//! `POST /api/users/login` with `{"email","password"}` answers 200 `{"token"}`: an HS256 JWT
//! under the host's `users.token` secret, naming the user, expiring after 24 hours and carrying
//! the user's credential version, so a later password change revokes it (see
//! `users_events::token`). Wrong email or password: 401 `invalid_credentials`, the same for an
//! unknown email, which costs one verification too. A password over 128 bytes is 400 before
//! any hashing; too many attempts from one address or for one account are 429
//! `too_many_requests` with `Retry-After` (`users_events::throttle`); a full hash queue is 503
//! `busy` with `Retry-After`. It folds two live views on each request — who currently holds the
//! email (or a lookalike of it), then that user's current email, password hash and credential
//! version — so it always uses the credentials after any change.
//!
//! Given/when/then:
//!
//! ```
//! use users_events::{Email, EmailUse, UserEmailChanged, UserId, UserRegistered, Username};
//! use users_login::EmailHolder;
//! use fairway_runtime::testing::given;
//! let u1 = UserId::parse("u1")?;
//! // Given ann registered with a@x.io and moved to b@x.io, then nobody holds a@x.io.
//! let view = EmailHolder { email: Email::parse("a@x.io")? };
//! let uses = given([UserRegistered { user_id: u1.clone(), username: Username::parse("ann")?,
//!     email: Email::parse("a@x.io")?, password_hash: "h".into(), registered_at_ms: 0 }])
//!     .and(UserEmailChanged { user_id: u1.clone(), previous_email: Email::parse("a@x.io")?,
//!         email: Email::parse("b@x.io")?, changed_at_ms: 5 })
//!     .live(view.clone())
//!     .actual;
//! assert_eq!(view.holder(&uses), None);
//! assert_eq!(uses.get(&view.email.key()), Some(&EmailUse::Released { by: u1, at_ms: 5 }));
//! # Ok::<(), users_events::ValueError>(())
//! ```

use std::collections::HashMap;
use std::net::IpAddr;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use dcb_core::{Position, Query, QueryItem};
use fairway_runtime::http::{ApiError, JsonBody};
use fairway_runtime::{DomainEvent, LiveView, Module, ModuleKind, Runtime, Sequenced};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use users_events::{
    ClientAddr, Email, EmailEvent, EmailKey, EmailUse, Password, UserEmailChanged, UserId,
    UserPasswordChanged, UserRegistered, email_query, email_use, password, throttle, token,
    user_tag,
};

fairway_runtime::event_set! {
    /// Who uses an email.
    pub enum EmailEvents {
        UserRegistered(UserRegistered),
        UserEmailChanged(UserEmailChanged),
    }
}

fairway_runtime::event_set! {
    /// A user's credentials.
    pub enum CredentialEvents {
        UserRegistered(UserRegistered),
        UserEmailChanged(UserEmailChanged),
        UserPasswordChanged(UserPasswordChanged),
    }
}

/// Live: who uses an email or a lookalike of it (the events tagged with its key; a change names
/// two emails, so the state is keyed by email key: look the one asked for up with
/// [`EmailHolder::holder`]).
#[derive(Debug, Clone)]
pub struct EmailHolder {
    /// The email.
    pub email: Email,
}

impl EmailHolder {
    /// The user whose current email it is, in a folded state.
    pub fn holder(&self, uses: &HashMap<EmailKey, EmailUse>) -> Option<UserId> {
        match uses.get(&self.email.key()) {
            Some(EmailUse::Held(u)) => Some(u.clone()),
            _ => None,
        }
    }
}

impl LiveView for EmailHolder {
    type Events = EmailEvents;
    type State = HashMap<EmailKey, EmailUse>;

    fn query(&self) -> Query {
        email_query(&self.email)
    }

    fn evolve(uses: &mut HashMap<EmailKey, EmailUse>, e: &Sequenced<EmailEvents>) {
        match &e.event {
            EmailEvents::UserRegistered(r) => email_use(uses, EmailEvent::Registered(r)),
            EmailEvents::UserEmailChanged(c) => email_use(uses, EmailEvent::Changed(c)),
        }
    }
}

/// Live: a user's current email, password hash and credential version.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user.
    pub user_id: UserId,
}

/// What login checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The current email.
    pub email: Email,
    /// The current argon2 PHC string.
    pub password_hash: String,
    /// The position of the event that set it: the credential version tokens carry.
    pub version: Position,
}

impl LiveView for Credentials {
    type Events = CredentialEvents;
    type State = Option<Current>;

    fn query(&self) -> Query {
        Query::item(
            QueryItem::new()
                .types([
                    UserRegistered::TYPE,
                    UserEmailChanged::TYPE,
                    UserPasswordChanged::TYPE,
                ])
                .tag(user_tag(&self.user_id)),
        )
    }

    fn evolve(state: &mut Option<Current>, e: &Sequenced<CredentialEvents>) {
        match (&e.event, state.as_mut()) {
            (CredentialEvents::UserRegistered(r), _) => {
                *state = Some(Current {
                    email: r.email.clone(),
                    password_hash: r.password_hash.clone(),
                    version: e.position,
                })
            }
            (CredentialEvents::UserEmailChanged(c), Some(cur)) => cur.email = c.email.clone(),
            (CredentialEvents::UserPasswordChanged(p), Some(cur)) => {
                cur.password_hash = p.password_hash.clone();
                cur.version = e.position;
            }
            (_, None) => {}
        }
    }
}

fn invalid() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong email or password",
    )
}

/// The throttle's account key of an email: its confusable key, so lookalikes share a bucket.
pub fn account_key(email: &Email) -> String {
    format!("email:{}", email.key())
}

/// Checks the credentials and issues a token (what the route does after parsing): first the
/// throttle (per `address` when known, per account), then the views, then one verification.
pub async fn login(
    rt: &Runtime,
    address: Option<IpAddr>,
    email: Email,
    password: Password,
) -> Result<String, ApiError> {
    throttle::throttle(rt).check(address, &account_key(&email))?;
    let view = EmailHolder {
        email: email.clone(),
    };
    let holder = view.holder(&rt.live(&view).await?.state);
    let current = match holder {
        Some(user_id) => rt
            .live(&Credentials {
                user_id: user_id.clone(),
            })
            .await?
            .state
            .map(|c| (user_id, c)),
        None => None,
    };
    match current {
        Some((user_id, c)) if c.email == email => {
            if password::verify(password, c.password_hash).await? {
                token::issue(rt, &user_id, c.version)
            } else {
                Err(invalid())
            }
        }
        // No such user: spend the same time as a wrong password, so that logins cannot tell
        // which emails are registered.
        _ => {
            password::verify_absent(password).await?;
            Err(invalid())
        }
    }
}

/// The request body.
#[derive(Deserialize, JsonSchema)]
pub struct LoginBody {
    /// The email.
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
    /// The password (at most 128 bytes).
    #[schemars(length(max = 128))]
    pub password: String,
}

async fn login_route(
    State(rt): State<Runtime>,
    ClientAddr(address): ClientAddr,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<LoggedIn>, ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::bad_field("email", e))?;
    let password =
        Password::candidate(&body.password).map_err(|e| ApiError::bad_field("password", e))?;
    let token = login(&rt, address, email, password).await?;
    Ok(Json(LoggedIn { token }))
}

/// The answer: a session token, sent back as `Authorization: Token <token>`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LoggedIn {
    /// The session token (a JWT).
    pub token: String,
}

/// The module: `POST /api/users/login`.
pub fn module() -> Module {
    Module::new(ModuleKind::View, "users-login")
        .describe("Log in with the current email and password; get a signed, expiring token")
        .post("/api/users/login", login_route)
        .reads::<CredentialEvents>()
}
