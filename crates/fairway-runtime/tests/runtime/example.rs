//! A tiny example module: user registration with a unique email.
//!
//! - Command `RegisterUser` (two independent reads: the email and the user id must be unused).
//! - Command `ChangeUsername` (reads only the last event of the user: backwards with a limit).
//! - Live view `UserProfile`, materialized view `Directory`.
//! - Automation `Welcome`: on `UserRegistered`, run `SendWelcomeEmail`, which calls a mailer and
//!   records `WelcomeEmailSent`; its own query is the idempotency guard.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query as UrlQuery, State};
use dcb_core::{Position, Query, QueryItem};
use fairway_runtime::http::{ApiError, Created, JsonBody};
use fairway_runtime::{
    Automation, AutomationSettings, Command, Ctx, DomainError, DomainEvent, LiveView,
    MaterializedView, Module, ModuleKind, NewEvent, Read, Rejection, Runtime, Sequenced, tag,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// ---- events ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: String,
    pub email: String,
    pub username: String,
}

impl DomainEvent for UserRegistered {
    const TYPE: &'static str = "UserRegistered";
    fn tags(&self) -> Vec<String> {
        vec![tag("user", &self.user_id), tag("email", &self.email)]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsernameChanged {
    pub user_id: String,
    pub username: String,
}

impl DomainEvent for UsernameChanged {
    const TYPE: &'static str = "UsernameChanged";
    fn tags(&self) -> Vec<String> {
        vec![tag("user", &self.user_id)]
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WelcomeEmailSent {
    pub user_id: String,
    pub email: String,
}

impl DomainEvent for WelcomeEmailSent {
    const TYPE: &'static str = "WelcomeEmailSent";
    fn tags(&self) -> Vec<String> {
        vec![tag("user", &self.user_id)]
    }
}

fairway_runtime::event_set! {
    /// What registration reads.
    pub enum RegistrationEvents { UserRegistered(UserRegistered) }
}

fairway_runtime::event_set! {
    /// A user's own history.
    pub enum UserEvents { UserRegistered(UserRegistered), UsernameChanged(UsernameChanged) }
}

fairway_runtime::event_set! {
    /// The welcome guard.
    pub enum WelcomeEvents { WelcomeEmailSent(WelcomeEmailSent) }
}

fairway_runtime::event_set! {
    /// Everything the directory shows.
    pub enum DirectoryEvents {
        UserRegistered(UserRegistered),
        UsernameChanged(UsernameChanged),
        WelcomeEmailSent(WelcomeEmailSent),
    }
}

// ---- RegisterUser ----

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterUser {
    pub user_id: String,
    pub email: String,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegisterError {
    #[error("email {0} is already registered")]
    EmailTaken(String),
    #[error("user {0} already exists")]
    UserExists(String),
}

impl DomainError for RegisterError {
    fn code(&self) -> &'static str {
        match self {
            RegisterError::EmailTaken(_) => "email_taken",
            RegisterError::UserExists(_) => "user_exists",
        }
    }
}

impl Command for RegisterUser {
    type Events = RegistrationEvents;
    type State = Vec<UserRegistered>;
    type Error = RegisterError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::tagged(tag("email", &self.email))
    }

    fn more_reads(&self) -> Vec<Read> {
        vec![Read::new(Query::tagged(tag("user", &self.user_id)))]
    }

    fn evolve(seen: &mut Vec<UserRegistered>, e: &Sequenced<RegistrationEvents>) {
        let RegistrationEvents::UserRegistered(r) = &e.event;
        seen.push(r.clone());
    }

    fn decide(
        &self,
        seen: &Vec<UserRegistered>,
        _: &Ctx<'_, ()>,
    ) -> Result<Vec<NewEvent>, RegisterError> {
        if seen.iter().any(|r| r.email == self.email) {
            return Err(RegisterError::EmailTaken(self.email.clone()));
        }
        if seen.iter().any(|r| r.user_id == self.user_id) {
            return Err(RegisterError::UserExists(self.user_id.clone()));
        }
        Ok(vec![
            UserRegistered {
                user_id: self.user_id.clone(),
                email: self.email.clone(),
                username: self.username.clone(),
            }
            .into(),
        ])
    }
}

// ---- ChangeUsername ----

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeUsername {
    pub user_id: String,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChangeError {
    #[error("no user {0}")]
    UnknownUser(String),
}

impl DomainError for ChangeError {
    fn code(&self) -> &'static str {
        "unknown_user"
    }
    fn rejection(&self) -> Rejection {
        Rejection::NotFound
    }
}

impl Command for ChangeUsername {
    type Events = UserEvents;
    type State = Option<String>;
    type Error = ChangeError;
    type Deps = ();

    fn query(&self) -> Query {
        Query::tagged(tag("user", &self.user_id))
    }

    /// Only the last event of the user matters: it holds the current username.
    fn last(&self) -> Option<u64> {
        Some(1)
    }

    fn evolve(current: &mut Option<String>, e: &Sequenced<UserEvents>) {
        *current = Some(match &e.event {
            UserEvents::UserRegistered(r) => r.username.clone(),
            UserEvents::UsernameChanged(c) => c.username.clone(),
        });
    }

    fn decide(
        &self,
        current: &Option<String>,
        _: &Ctx<'_, ()>,
    ) -> Result<Vec<NewEvent>, ChangeError> {
        match current {
            None => Err(ChangeError::UnknownUser(self.user_id.clone())),
            Some(name) if *name == self.username => Ok(vec![]),
            Some(_) => Ok(vec![
                UsernameChanged {
                    user_id: self.user_id.clone(),
                    username: self.username.clone(),
                }
                .into(),
            ]),
        }
    }
}

// ---- SendWelcomeEmail and the mailer ----

/// The outside world.
pub trait Mailer: Send + Sync {
    fn send(&self, to: &str) -> Result<(), String>;
}

/// Records what it sends; fails for addresses in `broken`, and the first `fail_first` sends.
#[derive(Default)]
pub struct FakeMailer {
    pub sent: Mutex<Vec<String>>,
    pub broken: Mutex<HashSet<String>>,
    pub fail_first: AtomicU32,
}

impl FakeMailer {
    pub fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

impl Mailer for FakeMailer {
    fn send(&self, to: &str) -> Result<(), String> {
        if self.broken.lock().unwrap().contains(to) {
            return Err(format!("mailbox {to} unreachable"));
        }
        if self.fail_first.load(Ordering::SeqCst) > 0 {
            self.fail_first.fetch_sub(1, Ordering::SeqCst);
            return Err("mail server down".into());
        }
        self.sent.lock().unwrap().push(to.to_owned());
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SendWelcomeEmail {
    pub user_id: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WelcomeError {
    #[error("mailer failed: {0}")]
    Mailer(String),
}

impl DomainError for WelcomeError {
    fn code(&self) -> &'static str {
        "mailer_failed"
    }
}

impl Command for SendWelcomeEmail {
    type Events = WelcomeEvents;
    type State = bool;
    type Error = WelcomeError;
    type Deps = Arc<dyn Mailer>;

    /// The idempotency guard: was the welcome email already recorded for this user?
    fn query(&self) -> Query {
        Query::item(
            QueryItem::new()
                .r#type(WelcomeEmailSent::TYPE)
                .tag(tag("user", &self.user_id)),
        )
    }

    fn evolve(sent: &mut bool, _: &Sequenced<WelcomeEvents>) {
        *sent = true;
    }

    fn decide(
        &self,
        sent: &bool,
        ctx: &Ctx<'_, Arc<dyn Mailer>>,
    ) -> Result<Vec<NewEvent>, WelcomeError> {
        if *sent {
            return Ok(vec![]);
        }
        ctx.deps().send(&self.email).map_err(WelcomeError::Mailer)?;
        Ok(vec![
            WelcomeEmailSent {
                user_id: self.user_id.clone(),
                email: self.email.clone(),
            }
            .into(),
        ])
    }
}

// ---- the Welcome automation ----

pub struct Welcome {
    pub settings: AutomationSettings,
}

impl Default for Welcome {
    fn default() -> Self {
        Welcome {
            settings: AutomationSettings {
                max_attempts: 3,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(100),
                lease_ttl: Duration::from_secs(2),
                batch: 10,
                poll_interval: Duration::from_millis(20),
            },
        }
    }
}

impl Automation for Welcome {
    type Trigger = RegistrationEvents;
    type Command = SendWelcomeEmail;

    fn name(&self) -> &str {
        "welcome"
    }

    fn command(&self, trigger: &Sequenced<RegistrationEvents>) -> Option<SendWelcomeEmail> {
        let RegistrationEvents::UserRegistered(r) = &trigger.event;
        Some(SendWelcomeEmail {
            user_id: r.user_id.clone(),
            email: r.email.clone(),
        })
    }

    fn settings(&self) -> AutomationSettings {
        self.settings
    }
}

// ---- views ----

/// Live: the profile of one user, folded on each request.
pub struct UserProfile {
    pub user_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
pub struct Profile {
    pub username: String,
    pub email: String,
    pub renames: u32,
}

impl LiveView for UserProfile {
    type Events = UserEvents;
    type State = Option<Profile>;

    fn query(&self) -> Query {
        Query::tagged(tag("user", &self.user_id))
    }

    fn evolve(state: &mut Option<Profile>, e: &Sequenced<UserEvents>) {
        match &e.event {
            UserEvents::UserRegistered(r) => {
                *state = Some(Profile {
                    username: r.username.clone(),
                    email: r.email.clone(),
                    renames: 0,
                });
            }
            UserEvents::UsernameChanged(c) => {
                if let Some(p) = state {
                    p.username = c.username.clone();
                    p.renames += 1;
                }
            }
        }
    }
}

/// Materialized: one entry per user.
pub struct Directory;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Entry {
    pub username: String,
    pub email: String,
    pub welcomed: bool,
}

impl MaterializedView for Directory {
    type Events = DirectoryEvents;
    type State = Entry;

    fn name(&self) -> &str {
        "directory"
    }

    fn keys(&self, e: &Sequenced<DirectoryEvents>) -> Vec<String> {
        vec![match &e.event {
            DirectoryEvents::UserRegistered(r) => r.user_id.clone(),
            DirectoryEvents::UsernameChanged(c) => c.user_id.clone(),
            DirectoryEvents::WelcomeEmailSent(w) => w.user_id.clone(),
        }]
    }

    fn evolve(&self, _key: &str, state: &mut Option<Entry>, e: &Sequenced<DirectoryEvents>) {
        match (&e.event, state.as_mut()) {
            (DirectoryEvents::UserRegistered(r), _) => {
                *state = Some(Entry {
                    username: r.username.clone(),
                    email: r.email.clone(),
                    welcomed: false,
                });
            }
            (DirectoryEvents::UsernameChanged(c), Some(entry)) => {
                entry.username = c.username.clone()
            }
            (DirectoryEvents::WelcomeEmailSent(_), Some(entry)) => entry.welcomed = true,
            (_, None) => {}
        }
    }
}

// ---- HTTP ----

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RegisterBody {
    pub user_id: String,
    pub email: String,
    pub username: String,
}

async fn register(
    State(rt): State<Runtime>,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Created<Written>, ApiError> {
    if !body.email.contains('@') {
        return Err(ApiError::bad_field("email", "is not an email address"));
    }
    let cmd = RegisterUser {
        user_id: body.user_id,
        email: body.email,
        username: body.username,
    };
    let done = rt.execute(&cmd, &()).await?;
    Ok(Created(Written {
        position: done.last(),
    }))
}

/// What a command route answers: the position of its last event.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Written {
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub position: Option<Position>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RenameBody {
    pub username: String,
}

async fn rename(
    State(rt): State<Runtime>,
    Path(user_id): Path<String>,
    JsonBody(body): JsonBody<RenameBody>,
) -> Result<Json<Written>, ApiError> {
    let done = rt
        .execute(
            &ChangeUsername {
                user_id,
                username: body.username,
            },
            &(),
        )
        .await?;
    Ok(Json(Written {
        position: done.last(),
    }))
}

async fn profile(
    State(rt): State<Runtime>,
    Path(user_id): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    let live = rt
        .live(&UserProfile {
            user_id: user_id.clone(),
        })
        .await?;
    live.state
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user {user_id}")))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AfterParam {
    #[schemars(schema_with = "fairway_runtime::openapi::optional_position")]
    pub after: Option<Position>,
}

async fn directory_entry(
    State(rt): State<Runtime>,
    Path(user_id): Path<String>,
    UrlQuery(params): UrlQuery<AfterParam>,
) -> Result<Json<Entry>, ApiError> {
    if let Some(p) = params.after {
        rt.wait_for_view(Directory.name(), p, Duration::from_secs(60))
            .await?;
    }
    let entry = rt.view_get(&Directory, &user_id).await?;
    entry
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no user {user_id}")))
}

/// The module: routes, the directory view and the welcome automation.
pub fn module(mailer: Arc<dyn Mailer>) -> Module {
    Module::new(ModuleKind::Command, "registration")
        .describe("Users register with a unique email and get a welcome email")
        .post("/users", register)
        .post("/users/{id}/username", rename)
        .get("/users/{id}", profile)
        .get("/directory/{id}", directory_entry)
        .command::<RegisterUser>()
        .command::<ChangeUsername>()
        .appends::<UserRegistered>()
        .appends::<UsernameChanged>()
        .appends::<WelcomeEmailSent>()
        .materialized(Directory)
        .automation(Welcome::default(), mailer)
}
