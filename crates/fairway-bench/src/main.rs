//! `fairway-bench`: runs every workload against Fairway, Tephra and UmaDB, alternating the
//! stores round by round, and prints a table plus one JSON line per result.
//!
//! ```text
//! cargo run --release -p fairway-bench -- --quick     # < 3 minutes
//! cargo run --release -p fairway-bench                # full run
//! cargo run --release -p fairway-bench -- --invoices  # 50 concurrent gapless invoices, 5 rounds
//! cargo run --release -p fairway-bench -- --scale --sizes 1m,10m  # cost growth with the log
//! cargo run --release -p fairway-bench -- --framework-events 1m   # what ids and metadata cost
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use fairway_bench::measure::{load_average, reset_peak_rss, status_kib};
use fairway_bench::stats::median;
use fairway_bench::workloads::{self, Better, Metric, Sizes, WORKLOADS};
use fairway_bench::{Kind, open, scale};
use serde_json::json;

/// Side-by-side DCB store benchmarks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Small sizes: finishes in well under three minutes.
    #[arg(long)]
    quick: bool,
    /// Rounds (each store runs each workload once per round).
    #[arg(long)]
    rounds: Option<usize>,
    /// Only these workloads (comma-separated; also "rss").
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these stores (comma-separated: fairway, tephra, umadb, and the opt-in baselines
    /// fairway-nocache and fairway-nopool); ratios need fairway and a peer.
    #[arg(long, value_delimiter = ',')]
    stores: Vec<String>,
    /// Parent directory for the temporary data directories (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run only the gapless-invoice contention workload (concurrent `CreateInvoice` commands
    /// through fairway-runtime on the embedded store; 5 rounds unless `--rounds`).
    #[arg(long)]
    invoices: bool,
    /// Concurrent commands per round of `--invoices`.
    #[arg(long, default_value_t = 50)]
    invoice_clients: usize,
    /// Scale mode: for each of `--sizes`, populate (1 000-event appends, random tags of ~100
    /// events, a hot tag on 1%) and measure bytes written, open time, RSS, tag and hot-tag reads
    /// and a full scan, per store in child processes (Fairway and Tephra unless `--stores`;
    /// 3 rounds unless `--rounds`); one table per size.
    #[arg(long)]
    scale: bool,
    /// Sizes for `--scale`, comma-separated (`1m`, `250k`, `5000`).
    #[arg(long, default_value = "1m,10m")]
    sizes: String,
    /// Framework-shaped scan: this many events (`1m`, `250k`, ...) of the scale log's shape in
    /// two fresh embedded stores, the second's with the id and `recorded_at_ms` metadata every
    /// framework event carries; both scanned, alternating, once per round (10 unless
    /// `--rounds`: the first rounds run while the fresh logs are still being written back).
    #[arg(long)]
    framework_events: Option<String>,
    /// Internal: one phase of `--scale` (`populate` or `read`) in this process.
    #[arg(long, hide = true)]
    scale_child: Option<String>,
    /// Internal: the store of `--scale-child`.
    #[arg(long, hide = true)]
    scale_store: Option<String>,
    /// Internal: the log size of `--scale-child`.
    #[arg(long, hide = true, default_value_t = 0)]
    scale_events: usize,
    /// Internal: the data directory of `--scale-child`.
    #[arg(long, hide = true)]
    scale_dir: Option<PathBuf>,
    /// Internal: run the peak-RSS read for one store in this process and print one JSON line.
    #[arg(long, hide = true)]
    rss_child: Option<String>,
    /// Internal: events for `--rss-child`.
    #[arg(long, hide = true, default_value_t = 0)]
    rss_events: usize,
}

fn tempdir(parent: &Option<PathBuf>) -> anyhow::Result<tempfile::TempDir> {
    let b = tempfile::Builder::new().prefix("fairway-bench-").to_owned();
    Ok(match parent {
        Some(p) => b.tempdir_in(p)?,
        None => b.tempdir()?,
    })
}

/// Child mode: load `events`, then stream them all and report the peak RSS of the read.
fn rss_child(kind: Kind, events: usize, parent: &Option<PathBuf>) -> anyhow::Result<()> {
    let dir = tempdir(parent)?;
    let store = open(kind, dir.path())?;
    let t = Instant::now();
    workloads::populate(store.as_ref(), events, 10_000)?;
    let load_s = t.elapsed().as_secs_f64();
    let rss_before = status_kib("VmRSS")?;
    reset_peak_rss().context("resetting VmHWM via /proc/self/clear_refs")?;
    let t = Instant::now();
    let scan = store.scan()?;
    let scan_s = t.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM")?;
    if scan.events != events as u64 {
        bail!(
            "{}: scan returned {} events, expected {events}",
            kind.name(),
            scan.events
        );
    }
    println!(
        "{}",
        json!({"rss_child": kind.name(), "events": events, "rss_before_kib": rss_before, "peak_kib": peak,
               "read_growth_kib": peak.saturating_sub(rss_before), "scan_events_per_s": events as f64 / scan_s.max(1e-9),
               "load_s": load_s})
    );
    Ok(())
}

/// The stores to run: the three by default, or those named with `--stores` (which may include
/// the extra baselines), in a fixed order.
fn chosen(args: &Args) -> Vec<Kind> {
    if args.stores.is_empty() {
        return Kind::ALL.to_vec();
    }
    Kind::ALL
        .into_iter()
        .chain(Kind::EXTRA)
        .filter(|k| args.stores.iter().any(|s| s == k.name()))
        .collect()
}

fn run_rss(events: usize, args: &Args, mode: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let exe = std::env::current_exe()?;
    let parent = &args.dir;
    let mut out = Vec::new();
    for kind in chosen(args) {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--rss-child",
            kind.name(),
            "--rss-events",
            &events.to_string(),
        ]);
        if let Some(p) = parent {
            cmd.arg("--dir").arg(p);
        }
        let o = cmd.output()?;
        if !o.status.success() {
            bail!(
                "rss child for {} failed: {}",
                kind.name(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let text = String::from_utf8_lossy(&o.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("{\""))
            .context("rss child printed no JSON")?;
        let mut v: serde_json::Value = serde_json::from_str(line)?;
        v["bench"] = json!("fairway-bench");
        v["mode"] = json!(mode);
        out.push(v);
    }
    Ok(out)
}

type Key = (&'static str, String);

struct Row {
    unit: &'static str,
    better: Better,
    /// Per store, per round.
    values: BTreeMap<&'static str, Vec<f64>>,
}

fn oriented_ratio(ours: f64, peer: f64, better: Better) -> f64 {
    match better {
        Better::Higher => ours / peer,
        Better::Lower => peer / ours,
    }
}

/// Median over rounds of the per-round ratio (>1: we are better).
fn ratio(row: &Row, peer: &str) -> Option<f64> {
    let ours = row.values.get("fairway")?;
    let theirs = row.values.get(peer)?;
    let per_round: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(&a, &b)| oriented_ratio(a, b, row.better))
        .collect();
    median(&per_round)
}

/// One phase of `--scale` in this process; prints its JSON line.
fn scale_child(args: &Args, phase: &str) -> anyhow::Result<()> {
    let name = args.scale_store.as_deref().context("--scale-store")?;
    let kind = Kind::from_name(name).context("unknown store")?;
    let dir = args.scale_dir.as_deref().context("--scale-dir")?;
    let n = args.scale_events;
    let v = match phase {
        "populate" => scale::populate_child(kind, n, dir)?,
        "read" => scale::read_child(kind, n, dir)?,
        other => bail!("unknown scale phase {other}"),
    };
    println!("{v}");
    Ok(())
}

/// `--invoices`: the rounds, one line and one JSON line each, then a summary; fails when any
/// round has a gap or a duplicate.
fn run_invoices(args: &Args) -> anyhow::Result<()> {
    let rounds = args.rounds.unwrap_or(5);
    let clients = args.invoice_clients;
    eprintln!(
        "fairway-bench invoices: {rounds} rounds of {clients} concurrent commands, load average before {}",
        load_average()
    );
    let mut all = Vec::new();
    for r in 1..=rounds {
        let dir = tempdir(&args.dir)?;
        let result = fairway_bench::invoices::round(dir.path(), clients)?;
        println!(
            "invoices round {r}: {}/{clients} succeeded, {} gaps, {} duplicates, attempts p50 {} max {}, {:.2} s",
            result.successes,
            result.gaps,
            result.duplicates,
            result.attempts_p50,
            result.attempts_max,
            result.seconds
        );
        println!("{}", result.to_json(r, clients));
        all.push(result);
    }
    let ok: usize = all.iter().map(|r| r.successes).sum();
    let bad: usize = all.iter().map(|r| r.gaps + r.duplicates).sum();
    let max = all.iter().map(|r| r.attempts_max).max().unwrap_or(0);
    let secs: Vec<f64> = all.iter().map(|r| r.seconds).collect();
    println!(
        "invoices: {ok}/{} succeeded, {bad} gaps or duplicates, attempts max {max}, median round {:.2} s; load average after {}",
        rounds * clients,
        median(&secs).unwrap_or(0.0),
        load_average()
    );
    if bad > 0 {
        bail!("{bad} gaps or duplicates among the invoice numbers");
    }
    Ok(())
}

/// `--framework-events`: one line and one JSON line per round, then the medians.
fn run_framework(args: &Args, size: &str) -> anyhow::Result<()> {
    use fairway_bench::framework;
    let n = *scale::parse_sizes(size)
        .map_err(anyhow::Error::msg)?
        .first()
        .context("--framework-events needs a size")?;
    let rounds = args.rounds.unwrap_or(10);
    let dir = tempdir(&args.dir)?;
    eprintln!(
        "fairway-bench framework events: {n} events, {rounds} rounds, load average before {}",
        load_average()
    );
    let plain = framework::populate(&dir.path().join("plain"), n, false)?;
    let with_meta = framework::populate(&dir.path().join("framework"), n, true)?;
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 1..=rounds {
        // Alternate which store is scanned first.
        let (p, f) = if r % 2 == 1 {
            let p = framework::scan(&plain)?;
            (p, framework::scan(&with_meta)?)
        } else {
            let f = framework::scan(&with_meta)?;
            (framework::scan(&plain)?, f)
        };
        if p.events != n as u64 || f.events != n as u64 || f.recorded != n as u64 {
            bail!("round {r}: {p:?} and {f:?}, expected {n} events each");
        }
        let ratio = f.per_s / p.per_s.max(1e-9);
        println!(
            "framework events round {r}: plain {:.2}M events/s, with id and metadata {:.2}M events/s ({ratio:.2}x)",
            p.per_s / 1e6,
            f.per_s / 1e6
        );
        println!(
            "{}",
            json!({"bench": "fairway-bench", "mode": "framework-events", "events": n, "round": r,
                   "plain_events_per_s": p.per_s, "framework_events_per_s": f.per_s,
                   "ratio_vs_plain": ratio})
        );
        a.push(p.per_s);
        b.push(f.per_s);
        ratios.push(ratio);
    }
    println!(
        "framework events: median plain {:.2}M events/s, with id and metadata {:.2}M events/s, median ratio {:.2}x; load average after {}",
        median(&a).unwrap_or(0.0) / 1e6,
        median(&b).unwrap_or(0.0) / 1e6,
        median(&ratios).unwrap_or(0.0),
        load_average()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(name) = &args.rss_child {
        let kind = Kind::from_name(name).context("unknown store")?;
        return rss_child(kind, args.rss_events, &args.dir);
    }
    if let Some(phase) = &args.scale_child {
        return scale_child(&args, phase);
    }
    if args.invoices {
        return run_invoices(&args);
    }
    if let Some(size) = &args.framework_events {
        return run_framework(&args, size);
    }
    if args.scale {
        let sizes = scale::parse_sizes(&args.sizes).map_err(anyhow::Error::msg)?;
        let stores = if args.stores.is_empty() {
            vec![Kind::Fairway, Kind::Tephra]
        } else {
            chosen(&args)
        };
        return Ok(scale::run(&scale::ScaleArgs {
            sizes,
            rounds: args.rounds.unwrap_or(3),
            stores,
            dir: args.dir.clone(),
        })?);
    }
    let sizes = if args.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let mode = if args.quick { "quick" } else { "full" };
    let rounds = args.rounds.unwrap_or(3);
    let selected = |w: &str| args.only.is_empty() || args.only.iter().any(|o| o == w);
    let started = Instant::now();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load_before = load_average();
    eprintln!(
        "fairway-bench {mode}: {rounds} rounds, nproc {nproc}, load average before {load_before}"
    );
    for k in chosen(&args) {
        eprintln!("  {}: {}", k.name(), k.settings());
    }

    let mut rows: BTreeMap<Key, Row> = BTreeMap::new();
    let mut order: Vec<Key> = Vec::new();
    for round in 0..rounds {
        for w in WORKLOADS.into_iter().filter(|w| selected(w)) {
            // Rotate the starting store each round: A B C, B C A, C A B.
            let mut kinds = chosen(&args);
            let n = kinds.len().max(1);
            kinds.rotate_left(round % n);
            for kind in kinds {
                let dir = tempdir(&args.dir)?;
                let t = Instant::now();
                let metrics: Vec<Metric> = {
                    let store = open(kind, dir.path())?;
                    workloads::run(w, store.as_ref(), dir.path(), &sizes)
                        .with_context(|| format!("{} on {}", w, kind.name()))?
                };
                // The store is closed; its directory goes now, and the next store starts once
                // the deletion and every write before it are on disk (no store pays for
                // another's writeback).
                let parent = dir.path().parent().map(std::path::Path::to_path_buf);
                dir.close()?;
                if let Some(parent) = parent {
                    fairway_bench::measure::settle(&parent)?;
                }
                eprintln!(
                    "  round {} {:<13} {:<8} {:>6.1}s",
                    round + 1,
                    w,
                    kind.name(),
                    t.elapsed().as_secs_f64()
                );
                for m in metrics {
                    let key = (m.workload, m.name.clone());
                    let row = rows.entry(key.clone()).or_insert_with(|| {
                        order.push(key.clone());
                        Row {
                            unit: m.unit,
                            better: m.better,
                            values: BTreeMap::new(),
                        }
                    });
                    row.values.entry(kind.name()).or_default().push(m.value);
                }
            }
        }
    }

    let rss = if selected("rss") {
        run_rss(sizes.rss_events, &args, mode)?
    } else {
        Vec::new()
    };
    let load_after = load_average();

    println!();
    println!(
        "{:<13} {:<48} {:>12} {:>12} {:>12} {:>9} {:>9} {:>10} {:>9}  unit",
        "workload",
        "metric",
        "fairway",
        "tephra",
        "umadb",
        "vs tephra",
        "vs umadb",
        "vs nocache",
        "vs nopool"
    );
    for key in &order {
        let Some(row) = rows.get(key) else { continue };
        let med = |s: &str| row.values.get(s).and_then(|v| median(v));
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let fmt_r = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}x"));
        println!(
            "{:<13} {:<48} {:>12} {:>12} {:>12} {:>9} {:>9} {:>10} {:>9}  {}",
            key.0,
            key.1,
            fmt(med("fairway")),
            fmt(med("tephra")),
            fmt(med("umadb")),
            fmt_r(ratio(row, "tephra")),
            fmt_r(ratio(row, "umadb")),
            fmt_r(ratio(row, "fairway-nocache")),
            fmt_r(ratio(row, "fairway-nopool")),
            row.unit
        );
    }
    for v in &rss {
        println!(
            "rss           {:<8} {} events: RSS before read {} KiB, peak during read {} KiB, growth {} KiB, scan {:.0} events/s",
            v["rss_child"].as_str().unwrap_or("?"),
            v["events"],
            v["rss_before_kib"],
            v["peak_kib"],
            v["read_growth_kib"],
            v["scan_events_per_s"].as_f64().unwrap_or(0.0)
        );
    }
    println!();
    for key in &order {
        let Some(row) = rows.get(key) else { continue };
        for (store, values) in &row.values {
            println!(
                "{}",
                json!({"bench": "fairway-bench", "mode": mode, "workload": key.0, "metric": key.1, "store": store,
                       "unit": row.unit, "higher_is_better": row.better == Better::Higher,
                       "median": median(values), "rounds": values,
                       "ratio_vs_tephra": if *store == "fairway" { ratio(row, "tephra") } else { None },
                       "ratio_vs_umadb": if *store == "fairway" { ratio(row, "umadb") } else { None }})
            );
        }
    }
    for v in &rss {
        println!("{v}");
    }
    println!(
        "{}",
        json!({"bench": "fairway-bench", "mode": mode, "rounds": rounds, "nproc": nproc,
               "load_before": load_before, "load_after": load_after, "seconds": started.elapsed().as_secs_f64()})
    );
    eprintln!(
        "done in {:.0}s; load average after {load_after}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
