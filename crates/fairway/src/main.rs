//! `fairway`: the host binary. `fairway serve` serves every module linked in
//! [`modules::all`] over HTTP and runs their views and automations; the other subcommands are
//! operator tools on the same data directory (`events`, `dlq`, `views rebuild`, `status`).
//!
//! Layer: the top. It picks the backend (the embedded store by default, FoundationDB with the
//! `fdb` feature) and the services modules get (an outbox mailer, persisted secrets). Nothing
//! depends on it; it must not hold business logic (that lives in `modules/`).
//!
//! ```text
//! fairway serve --listen 127.0.0.1:8080 --data-dir ./fairway-data
//! fairway events --type ListCreated --last 10
//! fairway status
//! ```

mod layers;
mod modules;
mod ops;
mod serve;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The Fairway host and its operator commands.
#[derive(Debug, Parser)]
#[command(name = "fairway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives (shared by every subcommand).
#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// Data directory: the embedded store, the mail outbox and the secrets.
    #[arg(long, global = true, default_value = "./fairway-data")]
    data_dir: PathBuf,
    /// Use FoundationDB with this cluster file instead of the embedded store (needs a build with
    /// the `fdb` feature).
    #[arg(long, global = true)]
    fdb_cluster_file: Option<PathBuf>,
    /// The key namespace of this deployment inside FoundationDB.
    #[arg(long, global = true, default_value = "fairway")]
    fdb_namespace: String,
}

impl StoreArgs {
    fn backend(&self) -> store::Backend {
        store::Backend::choose(
            &self.data_dir,
            self.fdb_cluster_file.as_deref(),
            &self.fdb_namespace,
        )
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API and run views and automations until SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on (port 0 picks a free port; the startup line shows it).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Largest accepted request body, in bytes (bigger ones get 413).
        #[arg(long, default_value_t = fairway_runtime::DEFAULT_BODY_LIMIT)]
        body_limit: usize,
        /// Do not serve the dev console under /console.
        #[arg(long)]
        no_console: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Print events as JSON lines, filtered by type and tag; `--follow` keeps printing new ones.
    Events {
        #[command(flatten)]
        filter: ops::EventFilter,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// The dead-letter queues of automations.
    Dlq {
        #[command(subcommand)]
        action: ops::DlqAction,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Materialized views.
    Views {
        #[command(subcommand)]
        action: ops::ViewsAction,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Head position, event count, and how far each view and automation is behind.
    Status {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            body_limit,
            no_console,
            store,
        } => {
            let options = serve::ServeOptions {
                listen,
                body_limit,
                console: !no_console,
            };
            serve::run(options, &store.data_dir, &store.backend()).await
        }
        Command::Events { filter, store } => ops::events(&store.backend(), filter).await,
        Command::Dlq { action, store } => ops::dlq(&store.backend(), action).await,
        Command::Views { action, store } => ops::views(&store.backend(), action).await,
        Command::Status { json, store } => ops::status(&store.backend(), json).await,
    }
}
