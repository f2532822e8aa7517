//! `fairway events check`: decodes every stored event with the event types of the modules this
//! binary links, upcasters applied, and reports each event a module could not read, by type and
//! position. Run it against the data (or a backup of it) before deploying a build whose event
//! types changed; it exits non-zero when anything fails.

use std::io::Write as _;

use clap::Args;
use fairway_runtime::check::{CheckReport, check_events};
use fairway_runtime::{Host, Runtime};

use crate::modules;
use crate::store::{self, Backend};

/// `fairway events check`'s flags.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Print the whole report as one JSON object instead of lines for humans.
    #[arg(long)]
    pub json: bool,
    /// List at most this many failing events (the counts always cover all).
    #[arg(long, default_value_t = 100)]
    pub max_listed: usize,
}

/// Runs the check; `Ok(false)` when some event fails to decode.
pub async fn check(backend: &Backend, args: &CheckArgs) -> anyhow::Result<bool> {
    let opened = store::open(backend).await?;
    let store = opened.store.clone();
    let host = Host::new(Runtime::new(store.clone()), modules::all());
    let decoders = host.decoders();
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !args.json;
    let report = check_events(store.as_ref(), &decoders, args.max_listed, |n| {
        if interactive {
            eprint!("\rchecked {n} events");
        }
    })
    .await?;
    if interactive {
        eprintln!();
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
    } else {
        write_human(&mut out, &report)?;
    }
    out.flush()?;
    Ok(report.ok())
}

fn write_human(out: &mut impl std::io::Write, report: &CheckReport) -> std::io::Result<()> {
    let head = report
        .head
        .map_or_else(|| "empty".to_owned(), |p| p.to_string());
    for f in &report.failures {
        writeln!(
            out,
            "FAILED position {} {} (version {}), read by {}: {}",
            f.position,
            f.event_type,
            f.version,
            f.modules.join(", "),
            f.error
        )?;
    }
    if report.failures.len() < report.failed as usize {
        writeln!(
            out,
            "... and {} more failing events (raise --max-listed to list them)",
            report.failed as usize - report.failures.len()
        )?;
    }
    for (event_type, t) in &report.types {
        let readers = if t.readers.is_empty() {
            "no module reads it".to_owned()
        } else {
            format!("read by {}", t.readers.join(", "))
        };
        writeln!(
            out,
            "{event_type}: {} events, {} failed ({readers})",
            t.events, t.failed
        )?;
    }
    if report.ok() {
        writeln!(
            out,
            "ok: all {} events up to head {head} decode with this build's modules",
            report.events
        )
    } else {
        writeln!(
            out,
            "{} of {} events up to head {head} do not decode with this build's modules: add an \
             upcaster or make the change additive before deploying (docs/events.md)",
            report.failed, report.events
        )
    }
}
