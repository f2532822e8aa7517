//! `transfer`: the 1M-event run of `dcb-transfer` (the debug-build test uses 20 000 events).
//!
//! ```text
//! cargo run --release -p fairway-bench --bin transfer            # 1 000 000 events
//! cargo run --release -p fairway-bench --bin transfer -- --events 200000
//! ```
//!
//! Fills an embedded store (100 events per tag, ids on half, metadata on a quarter, raw bytes
//! on a seventh), gives it consumers, then measures: a backup as `fairway backup` makes it (a
//! copy into a new embedded store, read back and checked), an export, an import into
//! `KvStore<SimKv>` (FoundationDB's engine on its in-memory simulator), the export of that
//! store and its import into a fresh embedded store. It checks that the logs are identical
//! (types, tags, data, metadata, ids, order; embedded positions), that checkpoints were mapped,
//! and that the final export is byte for byte the first one; prints one line per phase with
//! events/s and the peak RSS growth, and one JSON line at the end.

use std::io::{BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use dcb_core::{Event, EventStore, Position, Query, ReadOptions, StateCommit, Uuid};
use dcb_embedded::EmbeddedStore;
use dcb_kv::{KvOptions, KvStore, SimKv};
use dcb_transfer::{ImportOptions, Summary};
use fairway_bench::measure::{dir_size, reset_peak_rss, status_kib};
use futures::StreamExt as _;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "1M-event export, import, copy and backup figures of dcb-transfer")]
struct Args {
    /// Events in the log.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Parent directory for the temporary stores and files (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn event(i: u64) -> Event {
    let data = if i.is_multiple_of(7) {
        let mut d = vec![0u8, 0xff, b'\n'];
        d.extend_from_slice(&i.to_le_bytes());
        d
    } else {
        format!(
            "{{\"i\":{i},\"pad\":\"{}\"}}",
            "x".repeat((i % 50) as usize)
        )
        .into_bytes()
    };
    let mut e = Event::new(format!("T{}", i % 5), data).tag(format!("k:{}", i / 100));
    if i.is_multiple_of(10) {
        e = e.tag(format!("m:{}", i % 3));
    }
    if i.is_multiple_of(4) {
        e = e.meta("at", format!("{i}"));
    }
    if i.is_multiple_of(2) {
        e = e.with_id(Uuid::from_u128(u128::from(i) + 1));
    }
    e
}

/// Runs `f`, printing its time, events/s and peak RSS growth; returns its value and seconds.
async fn phase<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    name: &str,
    events: u64,
    f: F,
) -> anyhow::Result<(T, f64, u64)> {
    let before = status_kib("VmRSS")?;
    reset_peak_rss()?;
    let t = Instant::now();
    let v = f.await?;
    let s = t.elapsed().as_secs_f64();
    let growth = status_kib("VmHWM")?.saturating_sub(before);
    println!(
        "{name:<28} {events:>9} events in {s:>7.2} s = {:>9.0} events/s, peak RSS +{} MiB",
        events as f64 / s,
        growth / 1024
    );
    Ok((v, s, growth))
}

async fn export_to(store: &dyn EventStore, path: &Path) -> anyhow::Result<Summary> {
    let file = std::fs::File::create(path)?;
    Ok(dcb_transfer::export(store, file, &mut |_| {}).await?)
}

async fn import_from(
    store: &dyn EventStore,
    path: &Path,
) -> anyhow::Result<dcb_transfer::Imported> {
    Ok(dcb_transfer::import_from(
        store,
        || std::fs::File::open(path).map(|f| BufReader::with_capacity(1 << 20, f)),
        ImportOptions::default(),
        &mut |_| {},
    )
    .await?)
}

/// Compares two logs event by event, streaming; `same_positions` also compares positions.
/// Returns the positions of `b` at the given 0-based indexes.
async fn compare(
    a: &dyn EventStore,
    b: &dyn EventStore,
    same_positions: bool,
    at: &[u64],
) -> anyhow::Result<Vec<Position>> {
    let mut ra = a.read(Query::All, ReadOptions::new()).await?;
    let mut rb = b.read(Query::All, ReadOptions::new()).await?;
    let mut i = 0u64;
    let mut found = Vec::new();
    loop {
        match (ra.next().await, rb.next().await) {
            (None, None) => return Ok(found),
            (Some(x), Some(y)) => {
                let (x, y) = (x?, y?);
                ensure!(x.event == y.event, "event {i} differs");
                ensure!(
                    !same_positions || x.position == y.position,
                    "position {i} differs"
                );
                if at.contains(&i) {
                    found.push(y.position);
                }
            }
            _ => bail!("the logs have different lengths (at {i})"),
        }
        i += 1;
    }
}

fn same_file(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let (mut fa, mut fb) = (
        BufReader::new(std::fs::File::open(a)?),
        BufReader::new(std::fs::File::open(b)?),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let na = fa.read(&mut ba)?;
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na])?;
            if n == 0 {
                return Ok(false);
            }
            nb += n;
        }
        if na == 0 {
            return Ok(fb.read(&mut bb)? == 0);
        }
        if ba[..na] != bb[..na] {
            return Ok(false);
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let n = args.events;
    let b = tempfile::Builder::new()
        .prefix("fairway-transfer-")
        .to_owned();
    let dir = match &args.dir {
        Some(p) => b.tempdir_in(p)?,
        None => b.tempdir()?,
    };
    let a = EmbeddedStore::open(dir.path().join("a"))?;
    phase("fill embedded (1000/append)", n, async {
        let mut i = 1;
        while i <= n {
            let end = (i + 999).min(n);
            a.append((i..=end).map(event).collect(), vec![]).await?;
            i = end + 1;
        }
        Ok(())
    })
    .await?;
    let cp_a = Position::from_u64(n / 2);
    let writes = (0..1000u32)
        .map(|k| (k.to_be_bytes().to_vec(), Some(format!("v{k}").into_bytes())))
        .collect();
    a.commit_state(StateCommit {
        consumer: "view-a".into(),
        writes,
        checkpoint: Some(cp_a),
        ..Default::default()
    })
    .await?;
    let head = a.head().await?.context("empty log")?;
    a.commit_state(StateCommit {
        consumer: "auto-b".into(),
        checkpoint: Some(head),
        ..Default::default()
    })
    .await?;

    // The backup: what `fairway backup` does (copy into a new embedded store, read it back).
    let backup_dir = dir.path().join("backup");
    let (backed, backup_s, _) = phase("backup (copy + read back)", n, async {
        let target = EmbeddedStore::open(&backup_dir)?;
        let copied = dcb_transfer::copy(&a, &target, ImportOptions::default(), &mut |_| {}).await?;
        let back = dcb_transfer::export(&target, std::io::sink(), &mut |_| {}).await?;
        ensure!(
            copied.same_positions && back.crc32 == copied.source.crc32,
            "backup differs"
        );
        tokio::task::spawn_blocking(move || drop(target)).await?;
        Ok(back)
    })
    .await?;
    let (backup_apparent, backup_allocated) = dir_size(&backup_dir)?;
    println!(
        "backup size: {} MiB allocated ({} MiB apparent; fjall preallocates its journal)",
        backup_allocated >> 20,
        backup_apparent >> 20
    );

    let file_a = dir.path().join("a.jsonl");
    let (exported, export_s, export_rss) =
        phase("export embedded", n, export_to(&a, &file_a)).await?;
    ensure!(
        exported.crc32 == backed.crc32,
        "the backup's export differs from the source's"
    );
    let kv = KvStore::open(SimKv::new(), "moved", KvOptions::new()).await?;
    let (into_kv, import_kv_s, import_kv_rss) =
        phase("import into KvStore<SimKv>", n, import_from(&kv, &file_a)).await?;
    let at = compare(&a, &kv, false, &[n / 2 - 1]).await?;
    ensure!(
        kv.checkpoint("view-a").await? == at.first().copied(),
        "view-a not mapped"
    );
    ensure!(
        kv.checkpoint("auto-b").await? == kv.head().await?,
        "auto-b not mapped"
    );
    ensure!(
        into_kv.checkpoints.len() == 2,
        "checkpoints: {:?}",
        into_kv.checkpoints
    );

    let file_kv = dir.path().join("kv.jsonl");
    let (_, export_kv_s, _) = phase("export KvStore<SimKv>", n, export_to(&kv, &file_kv)).await?;
    let c = EmbeddedStore::open(dir.path().join("c"))?;
    let (_, import_c_s, import_c_rss) =
        phase("import into embedded", n, import_from(&c, &file_kv)).await?;
    compare(&a, &c, true, &[]).await?;
    ensure!(c.checkpoint("view-a").await? == Some(cp_a), "view-a");
    let file_c = dir.path().join("c.jsonl");
    export_to(&c, &file_c).await?;
    ensure!(
        same_file(&file_a, &file_c)?,
        "the round trip's export differs from the first"
    );
    println!(
        "round trip embedded -> KvStore<SimKv> -> embedded: identical logs, byte-identical exports"
    );
    let rate = |s: f64| (n as f64 / s).round();
    println!(
        "{}",
        json!({
            "events": n,
            "export_bytes": exported.bytes,
            "backup_seconds": backup_s,
            "backup_bytes_allocated": backup_allocated,
            "backup_bytes_apparent": backup_apparent,
            "export_embedded_events_per_s": rate(export_s),
            "export_embedded_peak_rss_growth_kib": export_rss,
            "import_kv_events_per_s": rate(import_kv_s),
            "import_kv_peak_rss_growth_kib": import_kv_rss,
            "export_kv_events_per_s": rate(export_kv_s),
            "import_embedded_events_per_s": rate(import_c_s),
            "import_embedded_peak_rss_growth_kib": import_c_rss,
        })
    );
    for s in [a, c] {
        tokio::task::spawn_blocking(move || drop(s)).await?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}
