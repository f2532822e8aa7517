//! `load`: a bounded load test of the `fairway` host on loopback.
//!
//! Starts `fairway serve` (built in this profile) on a fresh data directory, runs
//! `--connections` concurrent keep-alive connections sending the todo, library and users mix for
//! `--seconds` (each connection stops after `--max-requests`), samples the server's VmRSS, then
//! stops the server, checks every acknowledged write and the invariants against the store, and
//! prints the figures. Exits non-zero on any response other than 2xx or an expected 409, any
//! transport error, a broken invariant, or growing memory.
//!
//! ```text
//! cargo run --release -p fairway-reliability --bin load -- --seconds 30
//! ```

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use fairway_reliability::check;
use fairway_reliability::client::Client;
use fairway_reliability::load;
use fairway_reliability::server::{Server, ServerOptions, fairway_bin};
use fairway_reliability::workload::{Mix, Worker};

/// Bounded load against a fresh `fairway serve` on loopback.
#[derive(Debug, Parser)]
struct Args {
    /// How long to send requests.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// At most this many requests per connection.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Weight of registrations (argon2-heavy) in the mix of 100.
    #[arg(long, default_value_t = 5)]
    register_weight: u64,
    /// Seed of the request generators.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.seconds == 0 || args.seconds > 3600 {
        bail!("--seconds must be between 1 and 3600");
    }
    let bin = fairway_bin().context("building the fairway binary")?;
    let dir = std::env::temp_dir().join(format!("fairway-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let data = dir.join("data");
    let log = dir.join("server.log");
    let server = Server::start(&ServerOptions::new(&bin, &data, &log))?;
    println!(
        "load: {} connections for {} s against {} (pid {:?}, {})",
        args.connections,
        args.seconds,
        server.addr,
        server.pid(),
        bin.display()
    );
    let client = Client::new(server.addr, args.connections);
    let mix = Mix {
        register: args.register_weight,
        ..Mix::default()
    };
    let workers = (0..args.connections)
        .map(|i| Worker::new("load", i, args.seed, mix))
        .collect();
    let (report, _) = load::run(
        &client,
        workers,
        Duration::from_secs(args.seconds),
        args.max_requests,
        Arc::new(AtomicBool::new(false)),
        server.pid(),
    )
    .await;
    println!("{}", report.summary());
    for ((op, status), n) in &report.statuses {
        println!("  {op:<14} {status}  {n}");
    }
    if let Some((mid, last)) = report.rss_thirds() {
        println!("  VmRSS median: middle third {mid} KiB, last third {last} KiB");
    }
    for u in &report.unexpected {
        println!("  unexpected: {u}");
    }
    for t in &report.transport_samples {
        println!("  transport: {t}");
    }
    let status = server.stop(Duration::from_secs(30))?;
    let model = check::verify_store(&data, &report.acks).await?;
    println!(
        "store: {} events, {} acknowledged writes verified, {} violations (server exit: {status})",
        model.events,
        model.acks_verified,
        model.violations.len()
    );
    for v in model.violations.iter().take(20) {
        println!("  violation: {v}");
    }
    let flat = report.memory_flat();
    let _ = std::fs::remove_dir_all(&dir);
    if report.unexpected_count > 0
        || report.transport_errors > 0
        || !model.violations.is_empty()
        || !flat
        || !status.success()
    {
        bail!(
            "load test failed: {} unexpected, {} transport errors, {} violations, memory flat: {flat}",
            report.unexpected_count,
            report.transport_errors,
            model.violations.len()
        );
    }
    println!("load: OK");
    Ok(())
}
