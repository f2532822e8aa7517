//! Scale mode (`fairway-bench --scale --sizes 1m,10m`): how each cost grows with the log.
//!
//! For each size, each round and each store (alternating, the starting store rotating per round),
//! in a fresh data directory:
//!
//! 1. a **populate child** process opens the store, appends `n` events in 1 000-event appends
//!    (one type, a random tag of ~100 events each, and on every 100th event also the hot tag
//!    [`HOT_TAG`]), closes it, and reports populate events/s and the bytes the process wrote
//!    (`/proc/self/io` `write_bytes` and `wchar`, from before the open to after the close, so
//!    background flushes, compactions and close-time snapshots count) plus the directory size;
//! 2. a **read child** process opens the same directory (open time, then `VmRSS`: the memory of
//!    the loaded log), reads [`TAG_READS`] random tags (p50/p99 latency, each count checked
//!    against the populate's exact tag counts), reads the hot tag [`HOT_READS`] times (events/s)
//!    and scans everything [`SCANS`] times (the median events/s, each count checked); it starts
//!    once the populate's writes are on disk (`syncfs`), so no store's reads compete with its
//!    own writeback;
//! 3. the directory is deleted, and the next store starts once the deletion is on disk.
//!
//! One process per phase attributes I/O and memory to one store alone, and the read child starts
//! from a fresh open as a restarted service would (the page cache stays warm for both stores).
//! Each figure is the median over rounds; ratios are the median of per-round ratios against
//! Tephra, oriented so that > 1 means Fairway is better.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::measure::{IoCounters, dir_size, load_average, reset_peak_rss, settle, status_kib};
use crate::stats::{median, percentile_us};
use crate::workloads::payload;
use crate::{BenchError, BenchEvent, BenchStore, Kind, Outcome, open};

/// Events per append while populating.
pub const BATCH: usize = 1_000;
/// Average events per random tag.
pub const EVENTS_PER_TAG: usize = 100;
/// The tag carried by every 100th event (1 % of the log).
pub const HOT_TAG: &str = "hot";
/// Random tags read per round (latency percentiles).
pub const TAG_READS: usize = 1_000;
/// Reads of the hot tag per round (throughput).
pub const HOT_READS: usize = 3;
/// Full scans per round: the figure is their median (one scan of 1M events lasts about 0.1 s,
/// short enough for one hiccup of the machine to halve it).
pub const SCANS: usize = 3;
/// The seed of the tag assignment and of the read sample.
pub const SEED: u64 = 0x5CA1_E000_F417_3A75;

/// Parses a size list such as `1m,10m,250k,5000` into event counts.
pub fn parse_sizes(list: &str) -> Result<Vec<usize>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_size)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.is_empty() {
                Err("no sizes given".into())
            } else {
                Ok(v)
            }
        })
}

fn parse_size(s: &str) -> Result<usize, String> {
    let lower = s.to_ascii_lowercase();
    let (digits, factor) = match lower.strip_suffix('m') {
        Some(d) => (d, 1_000_000),
        None => match lower.strip_suffix('k') {
            Some(d) => (d, 1_000),
            None => (lower.as_str(), 1),
        },
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("size {s:?}: expected a count such as 1m, 250k or 5000"))?;
    match n.checked_mul(factor) {
        Some(0) | None => Err(format!("size {s:?}: must be between 1 and usize::MAX")),
        Some(v) => Ok(v),
    }
}

/// A size for humans: `1M`, `250k`, `5000`.
pub fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The number of random tags for `n` events (~[`EVENTS_PER_TAG`] each).
pub fn tag_count(n: usize) -> u64 {
    (n / EVENTS_PER_TAG).max(1) as u64
}

/// The random tag (an index below [`tag_count`]) of event `j` of an `n`-event log.
pub fn tag_of(j: u64, n: usize) -> u64 {
    splitmix64(SEED ^ j) % tag_count(n)
}

/// Whether event `j` carries [`HOT_TAG`].
pub fn is_hot(j: u64) -> bool {
    j.is_multiple_of(100)
}

fn tag_name(t: u64) -> String {
    format!("t:{t}")
}

/// Event `j` of the scale log.
pub fn scale_event(j: u64, n: usize) -> BenchEvent {
    let mut tags = vec![tag_name(tag_of(j, n))];
    if is_hot(j) {
        tags.push(HOT_TAG.to_owned());
    }
    BenchEvent::new("Loaded", tags, payload(j))
}

/// Appends the `n` events of the scale log in [`BATCH`]-event appends.
pub fn populate(store: &dyn BenchStore, n: usize) -> Result<(), BenchError> {
    let mut j = 0u64;
    while (j as usize) < n {
        let k = BATCH.min(n - j as usize) as u64;
        let batch = (j..j + k).map(|i| scale_event(i, n)).collect();
        if store.append(batch, None)? == Outcome::Conflict {
            return Err(BenchError::Check("populate: unexpected conflict".into()));
        }
        j += k;
    }
    Ok(())
}

/// Events per random tag in an `n`-event log, computed without a store.
pub fn expected_counts(n: usize) -> Vec<u32> {
    let mut counts = vec![0u32; tag_count(n) as usize];
    for j in 0..n as u64 {
        if let Some(c) = usize::try_from(tag_of(j, n))
            .ok()
            .and_then(|t| counts.get_mut(t))
        {
            *c += 1;
        }
    }
    counts
}

/// Events carrying the hot tag in an `n`-event log.
pub fn expected_hot(n: usize) -> u64 {
    (n as u64).div_ceil(100)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64().max(1e-9)
}

/// The populate phase, in this process: opens `dir`, populates, closes; one JSON object.
pub fn populate_child(kind: Kind, n: usize, dir: &Path) -> Result<Value, BenchError> {
    let io0 = IoCounters::now()?;
    let t = Instant::now();
    let store = open(kind, dir)?;
    populate(store.as_ref(), n)?;
    let appended = t.elapsed();
    drop(store);
    let closed = t.elapsed();
    let io = IoCounters::now()?.since(&io0);
    let (apparent, allocated) = dir_size(dir)?;
    let nf = n as f64;
    Ok(json!({
        "phase": "populate", "store": kind.name(), "events": n,
        "populate_events_per_s": nf / secs(appended),
        "close_s": (closed - appended).as_secs_f64(),
        "write_bytes_per_event": io.write_bytes as f64 / nf,
        "wchar_per_event": io.wchar as f64 / nf,
        "dir_apparent_per_event": apparent as f64 / nf,
        "dir_allocated_per_event": allocated as f64 / nf,
        "rss_after_populate_kib": status_kib("VmRSS")?,
    }))
}

/// The read phase, in this process: a fresh open of the populated `dir`, then the reads.
pub fn read_child(kind: Kind, n: usize, dir: &Path) -> Result<Value, BenchError> {
    let counts = expected_counts(n);
    let rss0 = status_kib("VmRSS")?;
    let t = Instant::now();
    let store = open(kind, dir)?;
    let open_s = t.elapsed().as_secs_f64();
    let rss_open = status_kib("VmRSS")?;
    reset_peak_rss()?;

    let mut x = SEED;
    let mut lat = Vec::with_capacity(TAG_READS);
    let mut tag_events = 0u64;
    let t = Instant::now();
    for _ in 0..TAG_READS {
        x = splitmix64(x);
        let tag = x % tag_count(n);
        let expect = counts.get(tag as usize).copied().unwrap_or(0);
        let t1 = Instant::now();
        let r = store.read_tag(&tag_name(tag))?;
        lat.push(t1.elapsed());
        if r.events != u64::from(expect) {
            return Err(BenchError::Check(format!(
                "{}: tag {tag}: {} events, expected {expect}",
                kind.name(),
                r.events
            )));
        }
        tag_events += r.events;
    }
    let tag_s = secs(t.elapsed());

    let hot = expected_hot(n);
    let t = Instant::now();
    for _ in 0..HOT_READS {
        let r = store.read_tag(HOT_TAG)?;
        if r.events != hot {
            return Err(BenchError::Check(format!(
                "{}: hot tag: {} events, expected {hot}",
                kind.name(),
                r.events
            )));
        }
    }
    let hot_s = secs(t.elapsed());

    let mut scans = Vec::with_capacity(SCANS);
    for _ in 0..SCANS {
        let t = Instant::now();
        let scan = store.scan()?;
        scans.push(n as f64 / secs(t.elapsed()));
        if scan.events != n as u64 {
            return Err(BenchError::Check(format!(
                "{}: scan: {} events, expected {n}",
                kind.name(),
                scan.events
            )));
        }
    }
    let peak = status_kib("VmHWM")?;
    drop(store);
    Ok(json!({
        "phase": "read", "store": kind.name(), "events": n,
        "open_s": open_s,
        "rss_before_open_kib": rss0,
        "rss_after_open_kib": rss_open,
        "peak_rss_during_reads_kib": peak,
        "tag_read_p50_us": percentile_us(&mut lat, 50.0),
        "tag_read_p99_us": percentile_us(&mut lat, 99.0),
        "tag_reads_per_s": TAG_READS as f64 / tag_s,
        "tag_read_events_per_s": tag_events as f64 / tag_s,
        "hot_tag_events": hot,
        "hot_tag_events_per_s": (hot * HOT_READS as u64) as f64 / hot_s,
        "scan_events_per_s": median(&scans).unwrap_or(0.0),
        "scan_events_per_s_each": scans,
    }))
}

/// One figure of the table: which child field, its label, unit, scale and direction.
struct Figure {
    field: &'static str,
    label: &'static str,
    unit: &'static str,
    factor: f64,
    higher_is_better: bool,
    /// Whether a ratio means anything (not for Tephra's preallocated segment files).
    compared: bool,
}

const fn fig(
    field: &'static str,
    label: &'static str,
    unit: &'static str,
    factor: f64,
    higher_is_better: bool,
) -> Figure {
    Figure {
        field,
        label,
        unit,
        factor,
        higher_is_better,
        compared: true,
    }
}

const FIGURES: [Figure; 13] = [
    fig(
        "populate_events_per_s",
        "populate (1000-event appends)",
        "events/s",
        1.0,
        true,
    ),
    fig(
        "write_bytes_per_event",
        "bytes written per event (write_bytes)",
        "B",
        1.0,
        false,
    ),
    fig(
        "wchar_per_event",
        "bytes via write() per event (wchar)",
        "B",
        1.0,
        false,
    ),
    Figure {
        compared: false,
        ..fig(
            "dir_apparent_per_event",
            "data dir size per event (apparent)",
            "B",
            1.0,
            false,
        )
    },
    fig("open_s", "open time", "ms", 1000.0, false),
    fig(
        "rss_after_open_kib",
        "RSS after a fresh open",
        "MiB",
        1.0 / 1024.0,
        false,
    ),
    fig(
        "tag_read_p50_us",
        "tag read p50 (~100 events)",
        "us",
        1.0,
        false,
    ),
    fig(
        "tag_read_p99_us",
        "tag read p99 (~100 events)",
        "us",
        1.0,
        false,
    ),
    fig(
        "tag_reads_per_s",
        "tag reads/s (1 client)",
        "reads/s",
        1.0,
        true,
    ),
    fig(
        "hot_tag_events_per_s",
        "hot tag read (1% of events)",
        "events/s",
        1.0,
        true,
    ),
    fig("scan_events_per_s", "full scan", "events/s", 1.0, true),
    fig(
        "peak_rss_during_reads_kib",
        "peak RSS during the reads",
        "MiB",
        1.0 / 1024.0,
        false,
    ),
    fig("close_s", "close after populate", "ms", 1000.0, false),
];

/// What the scale run needs from the command line.
#[derive(Debug, Clone)]
pub struct ScaleArgs {
    /// Event counts to run, in order.
    pub sizes: Vec<usize>,
    /// Rounds per size.
    pub rounds: usize,
    /// Stores, in their base order (the start rotates per round).
    pub stores: Vec<Kind>,
    /// Parent of the temporary data directories.
    pub dir: Option<PathBuf>,
}

fn tempdir(parent: &Option<PathBuf>) -> Result<tempfile::TempDir, BenchError> {
    let b = tempfile::Builder::new()
        .prefix("fairway-bench-scale-")
        .to_owned();
    Ok(match parent {
        Some(p) => b.tempdir_in(p)?,
        None => b.tempdir()?,
    })
}

fn run_child(phase: &str, kind: Kind, n: usize, dir: &Path) -> Result<Value, BenchError> {
    let exe = std::env::current_exe()?;
    let o = Command::new(exe)
        .args(["--scale-child", phase, "--scale-store", kind.name()])
        .args(["--scale-events", &n.to_string()])
        .arg("--scale-dir")
        .arg(dir)
        .output()?;
    if !o.status.success() {
        return Err(BenchError::Check(format!(
            "{phase} child for {} ({n} events) failed: {}",
            kind.name(),
            String::from_utf8_lossy(&o.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("{\""))
        .ok_or_else(|| BenchError::Check(format!("{phase} child printed no JSON")))?;
    serde_json::from_str(line).map_err(|e| BenchError::Check(format!("{phase} child JSON: {e}")))
}

/// Per store, per round: the merged populate and read objects.
type Results = BTreeMap<&'static str, Vec<Value>>;

fn value(v: &Value, f: &Figure) -> Option<f64> {
    v.get(f.field).and_then(Value::as_f64).map(|x| x * f.factor)
}

/// Median over rounds of the per-round ratio, > 1 when `ours` is better.
fn ratio(ours: &[Value], theirs: &[Value], f: &Figure) -> Option<f64> {
    let per_round: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .filter_map(|(a, b)| {
            let (a, b) = (value(a, f)?, value(b, f)?);
            Some(if f.higher_is_better { a / b } else { b / a })
        })
        .collect();
    median(&per_round)
}

fn store_median(rounds: &[Value], f: &Figure) -> Option<f64> {
    let v: Vec<f64> = rounds.iter().filter_map(|r| value(r, f)).collect();
    median(&v)
}

/// The table of one size, as text (one line per figure).
pub fn table(n: usize, results: &Results) -> String {
    let stores: Vec<&str> = results.keys().copied().collect();
    let mut out = format!("{:<40}", format!("scale {} events", size_label(n)));
    for s in &stores {
        out.push_str(&format!(" {s:>12}"));
    }
    let peer = results.contains_key("tephra") && results.contains_key("fairway");
    if peer {
        out.push_str(&format!(" {:>9}", "vs tephra"));
    }
    let nopool = results.contains_key("fairway-nopool") && results.contains_key("fairway");
    if nopool {
        out.push_str(&format!(" {:>9}", "vs nopool"));
    }
    out.push_str("  unit\n");
    for f in &FIGURES {
        out.push_str(&format!("{:<40}", f.label));
        for s in &stores {
            let v = results.get(s).and_then(|r| store_median(r, f));
            out.push_str(&format!(
                " {:>12}",
                v.map_or("-".into(), |v| format!("{v:.1}"))
            ));
        }
        for (shown, baseline) in [(peer, "tephra"), (nopool, "fairway-nopool")] {
            if !shown {
                continue;
            }
            let r = match (results.get("fairway"), results.get(baseline)) {
                (Some(a), Some(b)) if f.compared => ratio(a, b, f),
                _ => None,
            };
            out.push_str(&format!(
                " {:>9}",
                r.map_or("-".into(), |r| format!("{r:.2}x"))
            ));
        }
        out.push_str(&format!("  {}\n", f.unit));
    }
    out
}

/// JSON lines of one size: one per store and figure, with rounds, median and ratio.
pub fn json_lines(n: usize, rounds: usize, results: &Results) -> Vec<Value> {
    let mut out = Vec::new();
    for f in &FIGURES {
        for (store, values) in results {
            let per_round: Vec<Option<f64>> = values.iter().map(|v| value(v, f)).collect();
            let r = match (*store, results.get("tephra")) {
                ("fairway", Some(t)) if f.compared => ratio(values, t, f),
                _ => None,
            };
            out.push(json!({
                "bench": "fairway-bench", "mode": "scale", "events": n, "rounds": rounds,
                "metric": f.label, "field": f.field, "store": store, "unit": f.unit,
                "higher_is_better": f.higher_is_better,
                "median": store_median(values, f), "per_round": per_round,
                "ratio_vs_tephra": r,
            }));
        }
    }
    out
}

/// Runs the whole scale mode: every size, every round, every store; prints progress on stderr,
/// then per size a table and JSON lines on stdout.
pub fn run(args: &ScaleArgs) -> Result<(), BenchError> {
    let started = Instant::now();
    let load_before = load_average();
    eprintln!(
        "fairway-bench scale: sizes {}, {} rounds, stores {}, load average before {load_before}",
        args.sizes
            .iter()
            .map(|&n| size_label(n))
            .collect::<Vec<_>>()
            .join(","),
        args.rounds,
        args.stores
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(",")
    );
    for &n in &args.sizes {
        let mut results: Results = BTreeMap::new();
        for round in 0..args.rounds {
            let mut kinds = args.stores.clone();
            let len = kinds.len().max(1);
            kinds.rotate_left(round % len);
            for kind in kinds {
                let dir = tempdir(&args.dir)?;
                let t = Instant::now();
                let mut merged = run_child("populate", kind, n, dir.path())?;
                let populated = t.elapsed().as_secs_f64();
                // The reads start with the populate's writeback done.
                settle(dir.path())?;
                let read = run_child("read", kind, n, dir.path())?;
                // The data directory goes now, not at the end of the run, and the next store
                // starts once its deletion is on disk.
                let parent = dir.path().parent().map(Path::to_path_buf);
                dir.close()?;
                if let Some(parent) = parent {
                    settle(&parent)?;
                }
                if let (Some(m), Some(r)) = (merged.as_object_mut(), read.as_object()) {
                    m.extend(r.iter().map(|(k, v)| (k.clone(), v.clone())));
                    m.insert("round".into(), json!(round + 1));
                }
                eprintln!(
                    "  {} round {} {:<8} populate {:>6.1}s, reads {:>6.1}s, load {}",
                    size_label(n),
                    round + 1,
                    kind.name(),
                    populated,
                    t.elapsed().as_secs_f64() - populated,
                    load_average()
                );
                results.entry(kind.name()).or_default().push(merged);
            }
        }
        println!();
        print!("{}", table(n, &results));
        println!();
        for line in json_lines(n, args.rounds, &results) {
            println!("{line}");
        }
    }
    let load_after = load_average();
    println!(
        "{}",
        json!({"bench": "fairway-bench", "mode": "scale", "rounds": args.rounds,
               "sizes": args.sizes, "load_before": load_before, "load_after": load_after,
               "seconds": started.elapsed().as_secs_f64()})
    );
    eprintln!(
        "scale done in {:.0}s; load average after {load_after}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_reject_nonsense() {
        assert_eq!(parse_sizes("1m,10m"), Ok(vec![1_000_000, 10_000_000]));
        assert_eq!(parse_sizes("250k, 5000"), Ok(vec![250_000, 5_000]));
        assert!(parse_sizes("").is_err());
        assert!(parse_sizes("0").is_err());
        assert!(parse_sizes("ten").is_err());
        assert!(parse_sizes("99999999999999999999m").is_err());
        assert_eq!(size_label(10_000_000), "10M");
        assert_eq!(size_label(250_000), "250k");
        assert_eq!(size_label(1_234), "1234");
    }

    #[test]
    fn tags_hold_about_a_hundred_events_and_the_hot_tag_one_percent() {
        let n = 200_000;
        let counts = expected_counts(n);
        assert_eq!(counts.len(), 2_000);
        assert_eq!(counts.iter().map(|&c| c as usize).sum::<usize>(), n);
        // Random assignment: binomial around 100 (sd 10); nothing far off.
        assert!(
            counts.iter().all(|&c| (50..=160).contains(&c)),
            "{counts:?}"
        );
        let hot = (0..n as u64).filter(|&j| is_hot(j)).count() as u64;
        assert_eq!(hot, expected_hot(n));
        assert_eq!(hot, 2_000);
        let e = scale_event(300, n);
        assert_eq!(e.tags.len(), 2);
        assert_eq!(e.tags[1], HOT_TAG);
        assert_eq!(scale_event(301, n).tags.len(), 1);
    }

    #[test]
    fn a_tiny_populate_and_read_pass_their_own_checks_on_every_store() {
        for kind in [Kind::Fairway, Kind::Tephra] {
            let dir = tempfile::tempdir().unwrap();
            let p = populate_child(kind, 2_500, dir.path()).unwrap();
            assert!(p["populate_events_per_s"].as_f64().unwrap() > 0.0);
            assert!(p["write_bytes_per_event"].as_f64().is_some());
            let r = read_child(kind, 2_500, dir.path()).unwrap();
            assert_eq!(r["hot_tag_events"], 25);
            assert!(r["scan_events_per_s"].as_f64().unwrap() > 0.0);
            assert!(
                r["tag_read_p99_us"].as_f64().unwrap() >= r["tag_read_p50_us"].as_f64().unwrap()
            );
        }
    }

    #[test]
    fn ratios_are_oriented_per_round_medians() {
        let f = &FIGURES[0];
        let ours = vec![
            json!({"populate_events_per_s": 200.0}),
            json!({"populate_events_per_s": 90.0}),
            json!({"populate_events_per_s": 300.0}),
        ];
        let theirs = vec![
            json!({"populate_events_per_s": 100.0}),
            json!({"populate_events_per_s": 100.0}),
            json!({"populate_events_per_s": 100.0}),
        ];
        assert_eq!(ratio(&ours, &theirs, f), Some(2.0));
        let lower = FIGURES.iter().find(|f| f.field == "open_s").unwrap();
        let a = vec![json!({"open_s": 1.0})];
        let b = vec![json!({"open_s": 2.0})];
        assert_eq!(
            ratio(&a, &b, lower),
            Some(2.0),
            "lower is better: theirs/ours"
        );
        let results: Results = [("fairway", ours), ("tephra", theirs)].into();
        let t = table(1_000_000, &results);
        assert!(t.starts_with("scale 1M events"), "{t}");
        assert!(t.contains("2.00x"), "{t}");
        assert_eq!(json_lines(1_000_000, 3, &results).len(), 2 * FIGURES.len());
    }
}
