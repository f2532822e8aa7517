//! The example module through the given/when/then harness (reference store, test env).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fairway_runtime::testing::{given, nothing};

use crate::example::*;

fn ada() -> UserRegistered {
    UserRegistered {
        user_id: "1".into(),
        email: "ada@example.com".into(),
        username: "ada".into(),
    }
}

fn register(id: &str, email: &str) -> RegisterUser {
    RegisterUser {
        user_id: id.into(),
        email: email.into(),
        username: "x".into(),
    }
}

#[test]
fn registering_a_new_user_appends_user_registered() {
    nothing()
        .when(register("1", "ada@example.com"))
        .then([UserRegistered {
            user_id: "1".into(),
            email: "ada@example.com".into(),
            username: "x".into(),
        }]);
}

#[test]
fn email_taken() {
    given([ada()])
        .when(register("2", "ada@example.com"))
        .then_err(RegisterError::EmailTaken("ada@example.com".into()));
}

#[test]
fn user_id_taken_is_found_by_the_second_read() {
    given([ada()])
        .when(register("1", "other@example.com"))
        .then_err(RegisterError::UserExists("1".into()));
}

#[test]
fn other_users_do_not_matter() {
    given([ada()])
        .when(register("2", "bob@example.com"))
        .then([UserRegistered {
            user_id: "2".into(),
            email: "bob@example.com".into(),
            username: "x".into(),
        }]);
}

#[test]
fn rename_reads_only_the_last_event() {
    given([ada()])
        .and(UsernameChanged {
            user_id: "1".into(),
            username: "countess".into(),
        })
        .when(ChangeUsername {
            user_id: "1".into(),
            username: "ada".into(),
        })
        .then([UsernameChanged {
            user_id: "1".into(),
            username: "ada".into(),
        }]);
    given([ada()])
        .and(UsernameChanged {
            user_id: "1".into(),
            username: "countess".into(),
        })
        .when(ChangeUsername {
            user_id: "1".into(),
            username: "countess".into(),
        })
        .then_nothing();
}

#[test]
fn rename_of_unknown_user_is_rejected() {
    nothing()
        .when(ChangeUsername {
            user_id: "9".into(),
            username: "x".into(),
        })
        .then_err(ChangeError::UnknownUser("9".into()));
}

#[test]
fn live_profile() {
    given([ada()])
        .and(UsernameChanged {
            user_id: "1".into(),
            username: "countess".into(),
        })
        .and(UserRegistered {
            user_id: "2".into(),
            email: "b@example.com".into(),
            username: "bob".into(),
        })
        .live(UserProfile {
            user_id: "1".into(),
        })
        .then(Some(Profile {
            username: "countess".into(),
            email: "ada@example.com".into(),
            renames: 1,
        }));
    nothing()
        .live(UserProfile {
            user_id: "1".into(),
        })
        .then(None);
}

#[test]
fn materialized_directory() {
    given([ada()])
        .and(WelcomeEmailSent {
            user_id: "1".into(),
            email: "ada@example.com".into(),
        })
        .and(UsernameChanged {
            user_id: "1".into(),
            username: "countess".into(),
        })
        .view(Directory, "1")
        .then(Some(Entry {
            username: "countess".into(),
            email: "ada@example.com".into(),
            welcomed: true,
        }));
    given([ada()]).view(Directory, "2").then(None);
}

#[test]
fn welcome_maps_each_registration_to_a_command() {
    given([ada()])
        .and(UsernameChanged {
            user_id: "1".into(),
            username: "countess".into(),
        })
        .and(UserRegistered {
            user_id: "2".into(),
            email: "b@example.com".into(),
            username: "bob".into(),
        })
        .automation(Welcome::default())
        .then(vec![
            SendWelcomeEmail {
                user_id: "1".into(),
                email: "ada@example.com".into(),
            },
            SendWelcomeEmail {
                user_id: "2".into(),
                email: "b@example.com".into(),
            },
        ]);
}

#[test]
fn welcome_sends_once_and_records_it() {
    let mailer = Arc::new(FakeMailer::default());
    given([ada()])
        .run_automation(Welcome::default(), mailer.clone() as Arc<dyn Mailer>, 50)
        .then([WelcomeEmailSent {
            user_id: "1".into(),
            email: "ada@example.com".into(),
        }])
        .then_dead_letters(0);
    assert_eq!(mailer.sent(), vec!["ada@example.com".to_owned()]);
}

#[test]
fn welcome_already_recorded_is_not_sent_again() {
    let mailer = Arc::new(FakeMailer::default());
    given([ada()])
        .and(WelcomeEmailSent {
            user_id: "1".into(),
            email: "ada@example.com".into(),
        })
        .run_automation(Welcome::default(), mailer.clone() as Arc<dyn Mailer>, 50)
        .then(Vec::<WelcomeEmailSent>::new());
    assert!(mailer.sent().is_empty());
}

#[test]
fn welcome_retries_a_flaky_mailer() {
    let mailer = Arc::new(FakeMailer::default());
    mailer.fail_first.store(2, Ordering::SeqCst);
    let run = given([ada()])
        .run_automation(Welcome::default(), mailer.clone() as Arc<dyn Mailer>, 50)
        .then([WelcomeEmailSent {
            user_id: "1".into(),
            email: "ada@example.com".into(),
        }])
        .then_dead_letters(0);
    assert!(
        run.steps >= 3,
        "two failures need two retries, took {} steps",
        run.steps
    );
    assert_eq!(mailer.sent(), vec!["ada@example.com".to_owned()]);
}

#[test]
fn welcome_dead_letters_a_broken_mailbox_without_blocking_the_others() {
    let mailer = Arc::new(FakeMailer::default());
    mailer
        .broken
        .lock()
        .unwrap()
        .insert("ada@example.com".into());
    let run = given([ada()])
        .and(UserRegistered {
            user_id: "2".into(),
            email: "b@example.com".into(),
            username: "bob".into(),
        })
        .run_automation(Welcome::default(), mailer.clone() as Arc<dyn Mailer>, 50)
        .then([WelcomeEmailSent {
            user_id: "2".into(),
            email: "b@example.com".into(),
        }])
        .then_dead_letters(1);
    assert_eq!(run.dead_letters[0].attempts, 3);
    assert!(
        run.dead_letters[0].error.contains("unreachable"),
        "{:?}",
        run.dead_letters[0]
    );
    assert_eq!(mailer.sent(), vec!["b@example.com".to_owned()]);
}

#[test]
#[should_panic(expected = "events differ")]
fn harness_failure_shows_expected_and_actual() {
    nothing()
        .when(register("1", "ada@example.com"))
        .then([ada()]);
}
