//! `fairway`: the host binary. `fairway serve` serves every module linked in
//! [`modules::all`] over HTTP and runs their views and automations; the other subcommands are
//! operator tools on the same data directory (`events`, `events check`, `events export`,
//! `events import`, `backup`, `restore`, `dlq`, `views rebuild`, `status`).
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

mod backup;
mod check;
mod layers;
mod listen;
mod modules;
mod ops;
mod serve;
mod store;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// A duration flag: `500ms`, `10s`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if d.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(d)
}

/// A loopback address (the console serves on nothing else).
fn parse_loopback(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|e| format!("{text:?} is not an address like 127.0.0.1:8081: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: the console shows every event, so it listens on \
             loopback only (reach it from elsewhere through an SSH tunnel)"
        ));
    }
    Ok(addr)
}

/// `fairway serve`'s flags.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the startup line shows it).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Largest accepted request body, in bytes (bigger ones get 413).
    #[arg(long, default_value_t = fairway_runtime::DEFAULT_BODY_LIMIT)]
    body_limit: usize,
    /// Where the dev console listens: a loopback address only [default: 127.0.0.1 on the
    /// --listen port + 1, or a free port when --listen has port 0].
    #[arg(long, value_parser = parse_loopback)]
    console_listen: Option<SocketAddr>,
    /// Another name the console answers to in the Host header (repeatable), besides
    /// localhost, 127.0.0.1, `[::1]` and its listen address; any other Host gets 421.
    #[arg(long = "console-host", value_name = "NAME")]
    console_hosts: Vec<String>,
    /// Do not serve the dev console.
    #[arg(long)]
    no_console: bool,
    /// Most live tails (server-sent event streams) the console serves at once; more get 503.
    #[arg(long, default_value_t = fairway_console::DEFAULT_MAX_LIVE_TAILS)]
    max_live_tails: usize,
    /// Most connections open at once on the public listener; at the cap an idle one is closed
    /// to make room. Must leave room under the open-files limit (checked at start).
    #[arg(long, default_value_t = listen::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Time a client has to send a complete request head once it started [e.g. 500ms, 10s].
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    header_timeout: Duration,
    /// A connection with no request in progress and nothing received for this long is closed.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    idle_timeout: Duration,
    #[command(flatten)]
    store: StoreArgs,
}

impl ServeArgs {
    fn console_addr(&self) -> Option<SocketAddr> {
        if self.no_console {
            return None;
        }
        Some(self.console_listen.unwrap_or_else(|| {
            let port = match self.listen.port() {
                0 | u16::MAX => 0,
                p => p + 1,
            };
            SocketAddr::from(([127, 0, 0, 1], port))
        }))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API and run views and automations until SIGTERM or Ctrl-C.
    Serve(Box<ServeArgs>),
    /// Print events as JSON lines, filtered by type and tag; `--follow` keeps printing new ones.
    /// With a subcommand: operations on the whole log (`check`, `export`, `import`).
    #[command(args_conflicts_with_subcommands = true)]
    Events {
        #[command(subcommand)]
        action: Option<EventsAction>,
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
    /// A consistent, self-checking copy of the store while it serves (through the running
    /// server's console) or not: events up to one head, checkpoints and state at that head.
    Backup {
        #[command(flatten)]
        args: backup::BackupArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Check a backup and install it into an empty data directory.
    Restore {
        #[command(flatten)]
        args: backup::RestoreArgs,
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

/// `fairway events <subcommand>`.
#[derive(Debug, Subcommand)]
enum EventsAction {
    /// Decode every stored event with this build's modules (upcasters applied) and report each
    /// that fails, by type and position; exits 1 if any does. Run it before a deploy.
    Check(check::CheckArgs),
    /// Write the whole log as JSON lines (events, consumers' checkpoints and state, with a
    /// checksum), streaming, to move it to another store (docs/operations.md).
    Export(transfer::ExportArgs),
    /// Import an export into an empty store of the configured backend (the file is checked
    /// whole first; checkpoints are mapped to the new positions).
    Import(transfer::ImportArgs),
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
    // Everything this process creates (store files, secrets, outbox) is its user's only.
    store::private_umask();
    match cli.command {
        Command::Serve(args) => {
            let options = serve::ServeOptions {
                listen: args.listen,
                body_limit: args.body_limit,
                console: args.console_addr(),
                console_hosts: args.console_hosts.clone(),
                max_live_tails: args.max_live_tails,
                limits: listen::ConnLimits {
                    max_connections: args.max_connections,
                    header_timeout: args.header_timeout,
                    idle_timeout: args.idle_timeout,
                },
            };
            store::secure_data_dir(&args.store.data_dir)?;
            serve::run(options, &args.store.data_dir, &args.store.backend()).await
        }
        Command::Events {
            action: Some(EventsAction::Check(args)),
            store,
            ..
        } => {
            if check::check(&store.backend(), &args).await? {
                Ok(())
            } else {
                anyhow::bail!("some stored events do not decode with this build (listed above)")
            }
        }
        Command::Events {
            action: Some(EventsAction::Export(args)),
            store,
            ..
        } => transfer::export(&store.backend(), &args).await,
        Command::Events {
            action: Some(EventsAction::Import(args)),
            store,
            ..
        } => transfer::import(&store.backend(), &args).await,
        Command::Backup { args, store } => {
            backup::backup(&store.backend(), &store.data_dir, &args).await
        }
        Command::Restore { args, store } => {
            backup::restore(&store.backend(), &store.data_dir, &args).await
        }
        Command::Events {
            action: None,
            filter,
            store,
        } => ops::events(&store.backend(), filter).await,
        Command::Dlq { action, store } => ops::dlq(&store.backend(), action).await,
        Command::Views { action, store } => ops::views(&store.backend(), action).await,
        Command::Status { json, store } => ops::status(&store.backend(), json).await,
    }
}
