//! Pattern: **automation**. Slice: users — welcome email.
//!
//! On every `UserRegistered`, run `SendWelcomeEmail`: its query (the user's
//! `WelcomeEmailSent`) is the idempotency guard — when it exists nothing happens; otherwise the
//! email goes to the host's `Arc<dyn Mailer>` with `idempotency_key` `welcome:<userId>` and
//! `WelcomeEmailSent` is appended (with the trigger's checkpoint, atomically). A crash before
//! the append re-sends at most once more (at-least-once towards the mailer, deduplicated
//! downstream by the key); a crash after it never re-sends. Failures are retried with backoff,
//! then dead-lettered.
//!
//! Given/when/then:
//!
//! ```
//! use users_events::{Email, UserId, UserRegistered, Username, WelcomeEmailSent};
//! use users_welcome_email::Welcome;
//! use fairway_runtime::{Mailer, MemoryMailer};
//! use fairway_runtime::testing::given;
//! use std::sync::Arc;
//! let (u1, mail) = (UserId::parse("u1")?, Email::parse("a@x.io")?);
//! // Given ann registered, when the automation runs, then one welcome email is sent and recorded.
//! let mailer = MemoryMailer::new();
//! given([UserRegistered { user_id: u1.clone(), username: Username::parse("ann")?,
//!     email: mail.clone(), password_hash: "h".into(), registered_at_ms: 0 }])
//!     .run_automation(Welcome, Arc::new(mailer.clone()) as Arc<dyn Mailer>, 10)
//!     .then([WelcomeEmailSent { user_id: u1, email: mail }]);
//! assert_eq!(mailer.sent()[0].idempotency_key, "welcome:u1");
//! # Ok::<(), users_events::ValueError>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use dcb_core::{Query, QueryItem};
use fairway_runtime::{
    Automation, AutomationSettings, Command, Ctx, DomainError, DomainEvent, Email as Mail, Mailer,
    Module, ModuleKind, NewEvent, Sequenced,
};
use users_events::{Email, UserId, UserRegistered, Username, WelcomeEmailSent, user_tag};

/// Send `user_id` their welcome email, unless it was recorded already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendWelcomeEmail {
    /// The user.
    pub user_id: UserId,
    /// Where to send it.
    pub email: Email,
    /// How to greet them.
    pub username: Username,
}

/// The mailer refused the email (retried by the automation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mailer failed: {0}")]
pub struct MailerFailed(pub String);

impl DomainError for MailerFailed {
    fn code(&self) -> &'static str {
        "mailer_failed"
    }
}

fairway_runtime::event_set! {
    /// The guard.
    pub enum WelcomeEvents { WelcomeEmailSent(WelcomeEmailSent) }
}

fairway_runtime::event_set! {
    /// The trigger.
    pub enum Registrations { UserRegistered(UserRegistered) }
}

impl Command for SendWelcomeEmail {
    type Events = WelcomeEvents;
    type State = bool;
    type Error = MailerFailed;
    type Deps = Arc<dyn Mailer>;

    /// The idempotency guard: was the welcome email recorded for this user?
    fn query(&self) -> Query {
        Query::item(
            QueryItem::new()
                .r#type(WelcomeEmailSent::TYPE)
                .tag(user_tag(&self.user_id)),
        )
    }

    fn evolve(sent: &mut bool, _: &Sequenced<WelcomeEvents>) {
        *sent = true;
    }

    fn decide(
        &self,
        sent: &bool,
        ctx: &Ctx<'_, Arc<dyn Mailer>>,
    ) -> Result<Vec<NewEvent>, MailerFailed> {
        if *sent {
            return Ok(vec![]);
        }
        let mail = Mail {
            to: self.email.to_string(),
            subject: format!("Welcome, {}!", self.username),
            body: format!(
                "Hello {},\n\nyour account is ready. Welcome aboard!\n",
                self.username
            ),
            idempotency_key: format!("welcome:{}", self.user_id),
        };
        ctx.deps()
            .send(&mail)
            .map_err(|e| MailerFailed(e.to_string()))?;
        Ok(vec![
            WelcomeEmailSent {
                user_id: self.user_id.clone(),
                email: self.email.clone(),
            }
            .into(),
        ])
    }
}

/// The automation: `UserRegistered` → `SendWelcomeEmail`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Welcome;

impl Automation for Welcome {
    type Trigger = Registrations;
    type Command = SendWelcomeEmail;

    fn name(&self) -> &str {
        "users-welcome-email"
    }

    fn command(&self, trigger: &Sequenced<Registrations>) -> Option<SendWelcomeEmail> {
        let Registrations::UserRegistered(r) = &trigger.event;
        Some(SendWelcomeEmail {
            user_id: r.user_id.clone(),
            email: r.email.clone(),
            username: r.username.clone(),
        })
    }

    fn settings(&self) -> AutomationSettings {
        AutomationSettings {
            poll_interval: Duration::from_millis(250),
            ..AutomationSettings::default()
        }
    }
}

/// The module: the automation, with the host's mailer.
pub fn module() -> Module {
    Module::new(ModuleKind::Automation, "users-welcome-email")
        .describe("Every registered user gets exactly one welcome email")
        .appends::<WelcomeEmailSent>()
        .automation_with(Welcome, |rt| rt.service::<Arc<dyn Mailer>>())
}
