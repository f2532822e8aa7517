//! Pattern: **command**. Slice: users — register.
//!
//! `POST /api/users` with `{"id","username","email","password"}` appends `UserRegistered` (the
//! password hashed with argon2 in the handler, before the decision) and answers 201
//! `{"id","username","email","position"}`. Invalid input is 400 naming the field (an email
//! with invisible, format or control characters, a password under 8 characters or over 128
//! bytes, checked before hashing). 409 when the id is registered (`user_exists`), the username
//! is held by another user (`username_taken`), the email or a lookalike of it (same UTS #39
//! confusable skeleton, after NFKC) is held by another user (`email_taken`) or was released by
//! one less than 72 hours ago (`email_recently_released`). Each of the three is its own read
//! with its own append condition, so concurrent registrations of one email or username cannot
//! both succeed. A full hash queue is 503 `busy` with `Retry-After`.
//!
//! Given/when/then:
//!
//! ```
//! use users_events::{Email, UserId, UserRegistered, Username};
//! use users_register_user::{RegisterError, RegisterUser};
//! use fairway_runtime::testing::given;
//! let ann = UserRegistered {
//!     user_id: UserId::parse("u1")?, username: Username::parse("ann")?,
//!     email: Email::parse("ann@x.io")?, password_hash: "$argon2id$..".into(), registered_at_ms: 0,
//! };
//! // Given ann registered, when someone registers with her email, then it is refused.
//! given([ann])
//!     .when(RegisterUser {
//!         user_id: UserId::parse("u2")?, username: Username::parse("bob")?,
//!         email: Email::parse("ann@x.io")?, password_hash: "$argon2id$..".into(),
//!     })
//!     .then_err(RegisterError::EmailTaken);
//! # Ok::<(), users_events::ValueError>(())
//! ```

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use dcb_core::{Query, QueryItem};
use fairway_runtime::http::{ApiError, Created, JsonBody};
use fairway_runtime::{
    Command, Ctx, DomainError, DomainEvent, Module, ModuleKind, NewEvent, Read, Runtime, Sequenced,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use users_events::{
    Email, EmailEvent, EmailKey, EmailUnavailable, EmailUse, Password, UserDetailsChanged,
    UserEmailChanged, UserId, UserRegistered, Username, email_query, email_use, millis, password,
    user_tag, username_tag,
};

/// Register a user whose password is already hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterUser {
    /// The id the client chose.
    pub user_id: UserId,
    /// The username.
    pub username: Username,
    /// The email.
    pub email: Email,
    /// The argon2 PHC string of the password.
    pub password_hash: String,
}

/// Why a registration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The id is registered.
    #[error("this id is already registered")]
    UserExists,
    /// Another user holds the username.
    #[error("this username is taken")]
    UsernameTaken,
    /// Another user holds the email.
    #[error("this email is taken")]
    EmailTaken,
    /// Another user released the email less than 72 hours ago.
    #[error("this email was released less than 72 hours ago")]
    EmailRecentlyReleased,
}

impl DomainError for RegisterError {
    fn code(&self) -> &'static str {
        match self {
            RegisterError::UserExists => "user_exists",
            RegisterError::UsernameTaken => "username_taken",
            RegisterError::EmailTaken => "email_taken",
            RegisterError::EmailRecentlyReleased => "email_recently_released",
        }
    }
}

fairway_runtime::event_set! {
    /// What registration reads.
    pub enum RegistrationEvents {
        UserRegistered(UserRegistered),
        UserEmailChanged(UserEmailChanged),
        UserDetailsChanged(UserDetailsChanged),
    }
}

/// What the decision knows: registered ids, username holders, email uses.
#[derive(Debug, Default)]
pub struct Claims {
    users: HashSet<UserId>,
    usernames: HashMap<Username, Option<UserId>>,
    emails: HashMap<EmailKey, EmailUse>,
}

impl Command for RegisterUser {
    type Events = RegistrationEvents;
    type State = Claims;
    type Error = RegisterError;
    type Deps = ();

    /// Is the id registered?
    fn query(&self) -> Query {
        Query::item(
            QueryItem::new()
                .r#type(UserRegistered::TYPE)
                .tag(user_tag(&self.user_id)),
        )
    }

    /// Who holds the username, and who uses the email or a lookalike.
    fn more_reads(&self) -> Vec<Read> {
        vec![
            Read::new(Query::item(
                QueryItem::new()
                    .types([UserRegistered::TYPE, UserDetailsChanged::TYPE])
                    .tag(username_tag(&self.username)),
            )),
            Read::new(email_query(&self.email)),
        ]
    }

    fn evolve(c: &mut Claims, e: &Sequenced<RegistrationEvents>) {
        match &e.event {
            RegistrationEvents::UserRegistered(r) => {
                c.users.insert(r.user_id.clone());
                c.usernames
                    .insert(r.username.clone(), Some(r.user_id.clone()));
                email_use(&mut c.emails, EmailEvent::Registered(r));
            }
            RegistrationEvents::UserEmailChanged(ch) => {
                email_use(&mut c.emails, EmailEvent::Changed(ch));
            }
            RegistrationEvents::UserDetailsChanged(d) => {
                if let Some(old) = &d.previous_username {
                    c.usernames.insert(old.clone(), None);
                }
                if let Some(new) = &d.username {
                    c.usernames.insert(new.clone(), Some(d.user_id.clone()));
                }
            }
        }
    }

    fn decide(&self, c: &Claims, ctx: &Ctx<'_, ()>) -> Result<Vec<NewEvent>, RegisterError> {
        if c.users.contains(&self.user_id) {
            return Err(RegisterError::UserExists);
        }
        if let Some(Some(holder)) = c.usernames.get(&self.username)
            && *holder != self.user_id
        {
            return Err(RegisterError::UsernameTaken);
        }
        if let Some(used) = c.emails.get(&self.email.key()) {
            used.check(&self.user_id, ctx.now()).map_err(|e| match e {
                EmailUnavailable::Held => RegisterError::EmailTaken,
                EmailUnavailable::RecentlyReleased => RegisterError::EmailRecentlyReleased,
            })?;
        }
        Ok(vec![
            UserRegistered {
                user_id: self.user_id.clone(),
                username: self.username.clone(),
                email: self.email.clone(),
                password_hash: self.password_hash.clone(),
                registered_at_ms: millis(ctx.now()),
            }
            .into(),
        ])
    }
}

/// The request body.
#[derive(Deserialize, JsonSchema)]
pub struct RegisterBody {
    /// The id the client chose: letters, digits, `-`, `_` and `.`, at most 64.
    #[schemars(regex(pattern = "^[A-Za-z0-9._-]{1,64}$"))]
    pub id: String,
    /// The username: letters, digits, `-`, `_` and `.`, at most 32.
    #[schemars(regex(pattern = "^[A-Za-z0-9._-]{1,32}$"))]
    pub username: String,
    /// The email (at most 254 characters).
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
    /// The password in plain text: at least 8 characters, at most 128 bytes.
    #[schemars(length(min = 8, max = 128))]
    pub password: String,
}

async fn register(
    State(rt): State<Runtime>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Created<Registered>, ApiError> {
    let user_id = UserId::parse(&body.id).map_err(|e| ApiError::bad_field("id", e))?;
    let username =
        Username::parse(&body.username).map_err(|e| ApiError::bad_field("username", e))?;
    let email = Email::parse(&body.email).map_err(|e| ApiError::bad_field("email", e))?;
    let pw = Password::parse(&body.password).map_err(|e| ApiError::bad_field("password", e))?;
    let cmd = RegisterUser {
        user_id,
        username,
        email,
        password_hash: password::hash(&rt, pw).await?,
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Created(Registered {
        id: cmd.user_id,
        username: cmd.username,
        email: cmd.email,
        position: done.last(),
    }))
}

/// The answer: the new user and the position of the registration.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Registered {
    /// The user's id.
    #[schemars(with = "String")]
    pub id: UserId,
    /// The username.
    #[schemars(with = "String")]
    pub username: Username,
    /// The email, normalised.
    #[schemars(with = "String")]
    pub email: Email,
    /// The registration's position.
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<dcb_core::Position>,
}

/// The module: `POST /api/users`.
pub fn module() -> Module {
    Module::new(ModuleKind::Command, "users-register-user")
        .describe("Register a user with a unique id, username and email")
        .post("/api/users", register)
        .command::<RegisterUser>()
        .appends::<UserRegistered>()
}
