//! The welcome automation: one email per user, guarded by `WelcomeEmailSent`, retried, then
//! dead-lettered.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use fairway_runtime::testing::given;
use fairway_runtime::{Email as Mail, MailError, Mailer, MemoryMailer, NewEvent};
use users_events::{Email, UserId, UserRegistered, Username, WelcomeEmailSent};
use users_welcome_email::{SendWelcomeEmail, Welcome};

fn registered(id: &str) -> NewEvent {
    UserRegistered {
        user_id: UserId::parse(id).unwrap(),
        username: Username::parse(id).unwrap(),
        email: Email::parse(&format!("{id}@x.io")).unwrap(),
        password_hash: "h".into(),
        registered_at_ms: 0,
    }
    .into()
}

fn sent(id: &str) -> NewEvent {
    WelcomeEmailSent {
        user_id: UserId::parse(id).unwrap(),
        email: Email::parse(&format!("{id}@x.io")).unwrap(),
    }
    .into()
}

/// Fails the first `failures` sends, then delegates.
struct Flaky {
    failures: AtomicU32,
    inner: MemoryMailer,
}

impl Mailer for Flaky {
    fn send(&self, email: &Mail) -> Result<(), MailError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(MailError("smtp down".into()));
        }
        self.inner.send(email)
    }
}

#[test]
fn every_registered_user_gets_one_welcome_email() {
    let mailer = MemoryMailer::new();
    given([registered("u1"), registered("u2")])
        .run_automation(Welcome, Arc::new(mailer.clone()) as Arc<dyn Mailer>, 10)
        .then([sent("u1"), sent("u2")])
        .then_dead_letters(0);
    let keys: Vec<_> = mailer
        .sent()
        .into_iter()
        .map(|m| (m.to, m.idempotency_key))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("u1@x.io".to_owned(), "welcome:u1".to_owned()),
            ("u2@x.io".to_owned(), "welcome:u2".to_owned())
        ]
    );
}

#[test]
fn a_recorded_welcome_email_is_never_sent_again() {
    // As after a crash between the append and the cursor move: the guard sees the record.
    let mailer = MemoryMailer::new();
    given([registered("u1"), sent("u1")])
        .run_automation(Welcome, Arc::new(mailer.clone()) as Arc<dyn Mailer>, 10)
        .then(Vec::<NewEvent>::new());
    assert!(mailer.sent().is_empty());
}

#[test]
fn the_command_alone_sends_and_records_or_does_nothing() {
    let cmd = SendWelcomeEmail {
        user_id: UserId::parse("u1").unwrap(),
        email: Email::parse("u1@x.io").unwrap(),
        username: Username::parse("u1").unwrap(),
    };
    let mailer = MemoryMailer::new();
    given([registered("u1")])
        .when_with(cmd.clone(), Arc::new(mailer.clone()) as Arc<dyn Mailer>)
        .then([sent("u1")]);
    assert_eq!(mailer.sent().len(), 1);
    given([registered("u1"), sent("u1")])
        .when_with(cmd, Arc::new(mailer.clone()) as Arc<dyn Mailer>)
        .then_nothing();
    assert_eq!(mailer.sent().len(), 1);
}

#[test]
fn a_failing_mailer_is_retried_until_it_works() {
    let inner = MemoryMailer::new();
    let flaky = Flaky {
        failures: AtomicU32::new(2),
        inner: inner.clone(),
    };
    given([registered("u1")])
        .run_automation(Welcome, Arc::new(flaky) as Arc<dyn Mailer>, 20)
        .then([sent("u1")])
        .then_dead_letters(0);
    assert_eq!(inner.sent().len(), 1);
}

#[test]
fn a_mailer_failing_every_attempt_ends_in_the_dead_letter_queue() {
    let inner = MemoryMailer::new();
    let broken = Flaky {
        failures: AtomicU32::new(u32::MAX),
        inner: inner.clone(),
    };
    given([registered("u1")])
        .run_automation(Welcome, Arc::new(broken) as Arc<dyn Mailer>, 20)
        .then(Vec::<NewEvent>::new())
        .then_dead_letters(1);
    assert!(inner.sent().is_empty());
}
