//! The CI-sized load test: the real binary, 64 concurrent connections for 5 seconds (bounded
//! in time and in requests per connection) on loopback. No response other than a 2xx or an
//! expected 409, no transport error, every acknowledged write stored, no invariant broken.
//! Latency percentiles and the server's VmRSS are printed (this is a debug build: the figures
//! that count come from `cargo run --release -p fairway-reliability --bin load -- --seconds 30`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fairway_reliability::check;
use fairway_reliability::client::Client;
use fairway_reliability::load;
use fairway_reliability::server::{Server, ServerOptions, fairway_bin};
use fairway_reliability::workload::{Mix, Worker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_connections_for_five_seconds() {
    let bin = tokio::task::spawn_blocking(fairway_bin)
        .await
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&ServerOptions::new(
        &bin,
        &data,
        &dir.path().join("server.log"),
    ))
    .unwrap();
    let client = Client::new(server.addr, 64);
    // Registrations hash passwords with argon2, very slow in a debug build: one in a hundred.
    let mix = Mix {
        register: 1,
        ..Mix::default()
    };
    let workers = (0..64).map(|i| Worker::new("ci", i, 11, mix)).collect();
    let (report, _) = load::run(
        &client,
        workers,
        Duration::from_secs(5),
        2_000,
        Arc::new(AtomicBool::new(false)),
        server.pid(),
    )
    .await;
    eprintln!("load (CI, debug build): {}", report.summary());
    assert_eq!(report.unexpected_count, 0, "{:#?}", report.unexpected);
    assert_eq!(
        report.transport_errors, 0,
        "{:#?}",
        report.transport_samples
    );
    assert!(
        report.responses > 100,
        "only {} responses",
        report.responses
    );
    let status = server.stop(Duration::from_secs(30)).unwrap();
    assert!(status.success());
    let model = check::verify_store(&data, &report.acks).await.unwrap();
    assert!(model.violations.is_empty(), "{:#?}", model.violations);
    assert_eq!(model.acks_verified, report.acks.len());
}
