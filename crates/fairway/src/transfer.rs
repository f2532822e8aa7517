//! `fairway events export` and `fairway events import`: the whole log as JSON lines, to move it
//! between data directories or from the embedded store to FoundationDB (see
//! docs/operations.md and `dcb_transfer`).

use std::io::{BufReader, IsTerminal as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use dcb_transfer::{ImportOptions, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::store::{self, Backend};

/// `fairway events export`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Write the export to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// `fairway events import`'s flags.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The export file (read twice: checked whole first, then imported).
    file: PathBuf,
    /// Most events per append.
    #[arg(long, default_value_t = ImportOptions::default().batch_events)]
    batch_events: usize,
}

/// A progress bar on standard error, drawn only when it is a terminal.
pub fn progress_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        None,
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style = ProgressStyle::with_template(
        "{msg} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events ({per_sec}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A callback that moves `bar`.
pub fn report_to(bar: &ProgressBar) -> impl FnMut(Progress) + Send + '_ {
    move |p: Progress| {
        if let Some(total) = p.total {
            bar.set_length(total.max(p.events));
        }
        bar.set_position(p.events);
    }
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// `fairway events export [--out FILE]`.
pub async fn export(backend: &Backend, args: &ExportArgs) -> anyhow::Result<()> {
    let opened = store::open(backend).await?;
    let bar = progress_bar("export");
    let started = Instant::now();
    let summary = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let result = dcb_transfer::export(&*opened.store, file, &mut report_to(&bar)).await;
            if result.is_err() {
                // Never leave a file that looks like an export but is not one (an import would
                // refuse it anyway: it has no trailer).
                let _ = std::fs::remove_file(path);
            }
            result?
        }
        None => {
            dcb_transfer::export(&*opened.store, std::io::stdout(), &mut report_to(&bar)).await?
        }
    };
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    eprintln!(
        "exported {} events (head {}), {} consumer checkpoints and {} state entries from {}: \
         {} bytes in {:.1} s ({:.0} events/s){}",
        summary.events,
        summary
            .head
            .map_or_else(|| "none".to_owned(), |h| h.to_string()),
        summary.checkpoints,
        summary.state_entries,
        backend.describe(),
        summary.bytes,
        elapsed.as_secs_f64(),
        rate(summary.events, elapsed),
        if summary.consumers {
            ""
        } else {
            "; this backend offers no consistent consumer snapshot, so no consumers were exported"
        }
    );
    Ok(())
}

/// `fairway events import FILE`.
pub async fn import(backend: &Backend, args: &ImportArgs) -> anyhow::Result<()> {
    let opened = store::open(backend).await?;
    let bar = progress_bar("import");
    let started = Instant::now();
    let path = &args.file;
    let options = ImportOptions {
        batch_events: args.batch_events,
        ..ImportOptions::default()
    };
    let imported = dcb_transfer::import_from(
        &*opened.store,
        || std::fs::File::open(path).map(|f| BufReader::with_capacity(1 << 20, f)),
        options,
        &mut report_to(&bar),
    )
    .await
    .with_context(|| format!("cannot import {}", path.display()))?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    eprintln!(
        "imported {} events and {} state entries into {} in {:.1} s ({:.0} events/s); head {}; \
         {}; checkpoints: {}",
        imported.source.events,
        imported.source.state_entries,
        backend.describe(),
        elapsed.as_secs_f64(),
        rate(imported.source.events, elapsed),
        imported
            .head
            .map_or_else(|| "none".to_owned(), |h| h.to_string()),
        if imported.same_positions {
            "every event kept its position"
        } else {
            "events have new positions; checkpoints were mapped to them"
        },
        if imported.checkpoints.is_empty() {
            "none".to_owned()
        } else {
            imported
                .checkpoints
                .iter()
                .map(|(c, p)| format!("{c} at {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    Ok(())
}
