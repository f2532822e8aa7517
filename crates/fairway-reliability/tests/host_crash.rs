//! Host-level crash test: the real `fairway` binary serves the todo, library and users apps
//! under concurrent HTTP load and is killed with SIGKILL at random moments, again and again.
//! After each kill, every write acknowledged with a 2xx must be in the store (at the position
//! the response named) and no invariant may be broken (unique usernames and emails, one
//! borrower per book, at most five books per borrower, one recorded welcome email per user, no
//! item added twice or completed twice). After each restart the views must show exactly what
//! the events say, and at the end the welcome automation must have caught up with every user.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fairway_reliability::check::{self, Model};
use fairway_reliability::client::Client;
use fairway_reliability::load;
use fairway_reliability::server::{Server, ServerOptions, fairway_bin};
use fairway_reliability::workload::{Ack, Mix, Worker};

/// SIGKILLs per run (`FAIRWAY_CRASH_KILLS` overrides, for longer campaigns).
fn kills() -> usize {
    std::env::var("FAIRWAY_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

const CONNECTIONS: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_write_and_breaks_no_invariant() {
    let started = Instant::now();
    let bin = tokio::task::spawn_blocking(fairway_bin)
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let options = ServerOptions::new(&bin, &data, &dir.path().join("server.log"));
    let mix = Mix {
        reads: 20,
        todo: 40,
        library: 34,
        register: 6,
    };
    let mut workers: Vec<Worker> = (0..CONNECTIONS)
        .map(|i| Worker::new("crash", i, 0xc4a5, mix))
        .collect();
    let mut acks: Vec<Ack> = Vec::new();
    let mut model = Model::default();
    let mut rng = 0x9e37_79b9_u64;
    let mut responses = 0u64;
    let mut unknown = 0u64;
    let mut views_compared = 0usize;
    for kill in 1..=kills() {
        let server = Server::start(&options).unwrap();
        let client = Client::new(server.addr, CONNECTIONS);
        if kill > 1 {
            // The restarted host's views show exactly what the events say.
            let mut violations = Vec::new();
            views_compared += check::verify_views(&client, &model, &mut violations)
                .await
                .unwrap();
            assert!(
                violations.is_empty(),
                "after restart {kill}: {violations:#?}"
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let running = {
            let (client, stop) = (client.clone(), stop.clone());
            let workers = std::mem::take(&mut workers);
            tokio::spawn(async move {
                load::run(
                    &client,
                    workers,
                    Duration::from_secs(60),
                    u64::MAX,
                    stop,
                    None,
                )
                .await
            })
        };
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // Mostly short runs; every third one long enough for registrations (argon2, slow in
        // debug builds) to complete and their welcome emails to be in flight.
        let delay = if kill.is_multiple_of(3) {
            Duration::from_millis(3000 + rng % 2000)
        } else {
            Duration::from_millis(400 + rng % 1200)
        };
        tokio::time::sleep(delay).await;
        server.kill().unwrap();
        stop.store(true, Ordering::Relaxed);
        let (report, back) = running.await.unwrap();
        workers = back;
        responses += report.responses;
        unknown += report.transport_errors;
        assert_eq!(
            report.unexpected_count, 0,
            "kill {kill}: unexpected responses {:#?}",
            report.unexpected
        );
        acks.extend(report.acks);
        model = check::verify_store(&data, &acks).await.unwrap();
        assert!(
            model.violations.is_empty(),
            "after kill {kill} ({} ms into the load): {:#?}",
            delay.as_millis(),
            model.violations
        );
        assert_eq!(model.acks_verified, acks.len());
    }

    // Last restart: views, then the welcome automation catches up with every user.
    let server = Server::start(&options).unwrap();
    let client = Client::new(server.addr, 4);
    let mut violations = Vec::new();
    views_compared += check::verify_views(&client, &model, &mut violations)
        .await
        .unwrap();
    assert!(
        violations.is_empty(),
        "after the last restart: {violations:#?}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let outbox = check::outbox(&data);
        let missing: Vec<&String> = model
            .users
            .iter()
            .filter(|u| !outbox.contains_key(&format!("welcome:{u}")))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the welcome automation did not resume: no email for {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = server.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "graceful stop: {status}");
    let last = check::verify_store(&data, &acks).await.unwrap();
    assert!(last.violations.is_empty(), "{:#?}", last.violations);
    for user in &last.users {
        assert_eq!(
            last.welcomed.get(user),
            Some(&1),
            "welcome email of {user} recorded once"
        );
    }
    let outbox = check::outbox(&data);
    let resent = outbox.values().filter(|n| **n > 1).count();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert!(
        !log.contains("panicked"),
        "a panic in the server log:\n{log}"
    );
    eprintln!(
        "host crash: {} SIGKILLs survived; {responses} responses, {unknown} requests cut off \
         by a kill; {} acknowledged writes verified in the store after every kill; {} events; \
         {} users, {} welcome emails recorded once each, {resent} re-sent across a kill \
         (at-least-once towards the mailer); {views_compared} view reads compared; {:.1} s",
        kills(),
        last.acks_verified,
        last.events,
        last.users.len(),
        last.welcomed.len(),
        started.elapsed().as_secs_f64()
    );
}
