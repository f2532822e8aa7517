//! `fairway backup DEST`, `fairway backup --verify DEST` and `fairway restore SRC`: online,
//! consistent, self-checking copies of the embedded store.
//!
//! A backup is an embedded store directory holding every event up to one head and every
//! consumer's checkpoint and state at that head (`dcb_transfer::copy` over the store's
//! consumer snapshot, so writes pause for at most one commit), plus `fairway-backup.json`, the
//! manifest: head, counts and the CRC-32 of the copy's export. It is written as `DEST.partial`
//! and renamed to `DEST` only once the copy has been read back and matches the source, so a
//! `DEST` that exists is complete. It opens as a store as it is; `restore` checks it against
//! its manifest and installs it into an empty data directory.
//!
//! While `fairway serve` runs it holds the data directory's lock, so `fairway backup` asks it
//! through the console listener (`POST /console/api/backup`, with the admin token from the
//! data directory's secrets); when no server runs it opens the data directory itself.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use dcb_core::{EventStore, Position, StoreError};
use dcb_embedded::EmbeddedStore;
use dcb_transfer::{ImportOptions, Progress};
use fairway_console::{BackupRefused, BackupService};
use fairway_runtime::Runtime;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::Backend;
use crate::transfer::{progress_bar, report_to};

/// The manifest's file name inside a backup.
pub const MANIFEST: &str = "fairway-backup.json";
/// The manifest format this build writes and reads.
const MANIFEST_VERSION: u32 = 1;

/// `fairway backup`'s flags.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The backup directory to create (it must not exist yet); with `--verify`, the backup to
    /// check.
    dest: PathBuf,
    /// Check the backup at DEST against its manifest instead of making one.
    #[arg(long)]
    verify: bool,
    /// The console of the running server, used when the data directory is in use by one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    console: SocketAddr,
}

/// `fairway restore`'s flags.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup directory (made by `fairway backup`).
    src: PathBuf,
}

/// What a backup holds, written next to the copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    fairway_backup: u32,
    head: Option<Position>,
    events: u64,
    state_entries: u64,
    checkpoints: u64,
    /// CRC-32 of the copy's export (see `dcb_transfer::format`).
    crc32: String,
    created_at_unix: u64,
}

/// Where a backup is built before it is complete.
fn partial_of(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

/// The disk space the files under `dir` take (allocated blocks: fjall preallocates its journal
/// sparsely, so the apparent size overstates it).
fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.blocks() * 512;
            }
        }
    }
    Ok(total)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Closes an embedded store off the async workers (closing joins its writer thread).
async fn close(store: EmbeddedStore) {
    let _ = tokio::task::spawn_blocking(move || drop(store)).await;
}

/// Reads a whole store back as its export would be and returns the export's summary.
async fn read_back(store: &EmbeddedStore) -> Result<dcb_transfer::Summary, StoreError> {
    dcb_transfer::export(store, std::io::sink(), &mut |_| {})
        .await
        .map_err(|e| StoreError::Corrupted(e.to_string()))
}

/// Makes a backup of `source` at `dest` and returns its report.
pub async fn make(
    source: &dyn EventStore,
    dest: &Path,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Value, BackupRefused> {
    let started = Instant::now();
    if dest.exists() {
        return Err(BackupRefused::Destination(format!(
            "{} exists already: a backup goes into a new directory",
            dest.display()
        )));
    }
    let partial = partial_of(dest);
    if partial.exists() {
        return Err(BackupRefused::Destination(format!(
            "{} exists: another backup is being made there, or one was interrupted (remove it)",
            partial.display()
        )));
    }
    let result = build(source, dest, &partial, progress).await;
    if result.is_err() && partial.exists() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    let manifest = result?;
    let bytes = dir_bytes(dest).map_err(|e| BackupRefused::Failed(e.to_string()))?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(dest = %dest.display(), events = manifest.events, bytes, seconds, "backup made");
    Ok(json!({
        "dest": dest.display().to_string(),
        "head": manifest.head,
        "events": manifest.events,
        "state_entries": manifest.state_entries,
        "checkpoints": manifest.checkpoints,
        "crc32": manifest.crc32,
        "bytes": bytes,
        "seconds": seconds,
    }))
}

async fn build(
    source: &dyn EventStore,
    dest: &Path,
    partial: &Path,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Manifest, BackupRefused> {
    let failed = |e: &dyn std::fmt::Display| BackupRefused::Failed(e.to_string());
    if let Some(parent) = partial.parent() {
        std::fs::create_dir_all(parent).map_err(|e| failed(&e))?;
    }
    let target = EmbeddedStore::open(partial).map_err(|e| failed(&e))?;
    let copied = dcb_transfer::copy(source, &target, ImportOptions::default(), progress).await;
    let copied = match copied {
        Ok(c) => c,
        Err(dcb_transfer::TransferError::Store(StoreError::Unsupported(m))) => {
            close(target).await;
            return Err(BackupRefused::Unsupported(format!(
                "this store cannot take a consistent snapshot ({m}); on FoundationDB use fdbbackup"
            )));
        }
        Err(e) => {
            close(target).await;
            return Err(failed(&e));
        }
    };
    let back = read_back(&target).await;
    close(target).await;
    let back = back.map_err(|e| failed(&e))?;
    let same = back.events == copied.source.events
        && back.state_entries == copied.source.state_entries
        && back.head == copied.head
        && (!copied.same_positions || back.crc32 == copied.source.crc32);
    if !same {
        return Err(BackupRefused::Failed(format!(
            "the copy read back differs from the source ({back:?} against {:?})",
            copied.source
        )));
    }
    let manifest = Manifest {
        fairway_backup: MANIFEST_VERSION,
        head: back.head,
        events: back.events,
        state_entries: back.state_entries,
        checkpoints: back.checkpoints,
        crc32: dcb_transfer::format::crc_text(back.crc32),
        created_at_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| failed(&e))?;
    let mut file = std::fs::File::create(partial.join(MANIFEST)).map_err(|e| failed(&e))?;
    file.write_all(&text).map_err(|e| failed(&e))?;
    file.sync_all().map_err(|e| failed(&e))?;
    std::fs::rename(partial, dest).map_err(|e| failed(&e))?;
    if let Some(parent) = dest.parent() {
        fsync_dir(parent).map_err(|e| failed(&e))?;
    }
    Ok(manifest)
}

/// Checks the backup at `dir` against its manifest: opens it and reads everything back.
async fn verify(dir: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read(dir.join(MANIFEST))
        .with_context(|| format!("{} is not a fairway backup (no {MANIFEST})", dir.display()))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("the manifest of {} is damaged", dir.display()))?;
    if manifest.fairway_backup != MANIFEST_VERSION {
        bail!(
            "{} is a backup of format {}, this build reads format {MANIFEST_VERSION}",
            dir.display(),
            manifest.fairway_backup
        );
    }
    let store = EmbeddedStore::open(dir)
        .with_context(|| format!("cannot open the backup {}", dir.display()))?;
    let back = read_back(&store).await;
    close(store).await;
    let back = back.with_context(|| format!("cannot read the backup {}", dir.display()))?;
    let found = (
        back.head,
        back.events,
        back.state_entries,
        dcb_transfer::format::crc_text(back.crc32),
    );
    let expected = (
        manifest.head,
        manifest.events,
        manifest.state_entries,
        manifest.crc32.clone(),
    );
    if found != expected {
        bail!(
            "the backup {} does not match its manifest: it holds (head, events, state entries, \
             crc32) {found:?}, the manifest says {expected:?}",
            dir.display()
        );
    }
    Ok(manifest)
}

/// The service `fairway serve` registers so that the console can make backups of `store`.
pub fn with_service(rt: Runtime, store: Arc<dyn EventStore>, backend: &Backend) -> Runtime {
    let embedded = matches!(backend, Backend::Embedded(_));
    rt.with_service(BackupService::new(move |dest: PathBuf| {
        let store = store.clone();
        Box::pin(async move {
            if !embedded {
                return Err(BackupRefused::Unsupported(
                    "backups of FoundationDB are made with fdbbackup (docs/operations.md)".into(),
                ));
            }
            make(&*store, &dest, &mut |_| {}).await
        })
    }))
}

fn print_report(report: &Value) {
    eprintln!(
        "backup of {} events (head {}) written to {}: {} bytes in {:.1} s",
        report["events"],
        report["head"].as_str().unwrap_or("none"),
        report["dest"].as_str().unwrap_or("?"),
        report["bytes"],
        report["seconds"].as_f64().unwrap_or(0.0),
    );
    println!("{report}");
}

/// `fairway backup DEST` / `fairway backup --verify DEST`.
pub async fn backup(backend: &Backend, data_dir: &Path, args: &BackupArgs) -> anyhow::Result<()> {
    let dest = std::path::absolute(&args.dest)
        .with_context(|| format!("bad destination {}", args.dest.display()))?;
    if args.verify {
        let m = verify(&dest).await?;
        eprintln!(
            "backup {} is intact: {} events up to head {}, {} consumer checkpoints, {} state entries",
            dest.display(),
            m.events,
            m.head.map_or_else(|| "none".to_owned(), |h| h.to_string()),
            m.checkpoints,
            m.state_entries
        );
        return Ok(());
    }
    let Backend::Embedded(dir) = backend else {
        bail!(
            "backups of FoundationDB are made with FoundationDB's fdbbackup; `fairway events \
             export` writes the log as a file (see docs/operations.md)"
        );
    };
    if !dir.exists() {
        bail!("there is no store at {}", dir.display());
    }
    let report = match EmbeddedStore::open(dir) {
        Ok(store) => {
            let bar = progress_bar("backup");
            let made = make(&store, &dest, &mut report_to(&bar)).await;
            bar.finish_and_clear();
            close(store).await;
            made.map_err(|e| anyhow!(e))?
        }
        Err(StoreError::Locked(_)) => ask_server(data_dir, args.console, &dest).await?,
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", dir.display())),
    };
    print_report(&report);
    Ok(())
}

/// Asks the running server's console to make the backup.
async fn ask_server(data_dir: &Path, console: SocketAddr, dest: &Path) -> anyhow::Result<Value> {
    let secrets = data_dir.join("secrets.json");
    if !secrets.exists() {
        bail!(
            "the data directory is in use, but {} is missing",
            secrets.display()
        );
    }
    let secrets = fairway_runtime::Secrets::load_or_create(secrets)?;
    let token = fairway_console::AdminToken::from_secrets(&secrets)?;
    eprintln!("the data directory is in use by a running server: asking its console at {console}");
    let body = serde_json::to_vec(&json!({ "dest": dest.display().to_string() }))?;
    let request = format!(
        "POST /console/api/backup HTTP/1.1\r\nHost: {console}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        token.reveal(),
        body.len()
    );
    let bar = progress_bar("backup (by the server)");
    let response = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut stream = std::net::TcpStream::connect(console)?;
        stream.write_all(request.as_bytes())?;
        stream.write_all(&body)?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out)?;
        Ok(out)
    })
    .await?
    .with_context(|| {
        format!(
            "cannot reach the server's console at {console} (is it on another address? pass \
             --console ADDR, as printed at its start)"
        )
    })?;
    bar.finish_and_clear();
    let (status, body) = parse_response(&response)
        .ok_or_else(|| anyhow!("the console answered something that is not HTTP"))?;
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status != 200 {
        bail!(
            "the server refused the backup ({status}): {}",
            json["error"]["message"].as_str().map_or_else(
                || String::from_utf8_lossy(&body).into_owned(),
                str::to_owned
            )
        );
    }
    Ok(json)
}

/// The status and (de-chunked) body of an HTTP/1.1 response read to its end.
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &raw[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
        rest = rest.get(line_end + 2..)?;
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// Copies the files of `from` into the new directory `to`.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
    while let Some((src, dst)) = pending.pop() {
        std::fs::create_dir(&dst)?;
        for entry in std::fs::read_dir(&src)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let target = dst.join(entry.file_name());
            if kind.is_dir() {
                pending.push((entry.path(), target));
            } else if kind.is_file() {
                std::fs::copy(entry.path(), &target)?;
                std::fs::File::open(&target)?.sync_all()?;
            }
        }
        fsync_dir(&dst)?;
    }
    Ok(())
}

/// `fairway restore SRC --data-dir DIR`.
pub async fn restore(backend: &Backend, data_dir: &Path, args: &RestoreArgs) -> anyhow::Result<()> {
    let Backend::Embedded(store_dir) = backend else {
        bail!("restore installs an embedded store; for FoundationDB use fdbrestore");
    };
    let started = Instant::now();
    let m = verify(&args.src).await?;
    let occupied = std::fs::read_dir(store_dir).is_ok_and(|mut d| d.next().is_some());
    if occupied {
        bail!(
            "{} holds a store already: restore installs a backup into an empty data directory \
             only (move the old store away first)",
            store_dir.display()
        );
    }
    crate::store::secure_data_dir(data_dir)?;
    if store_dir.exists() {
        std::fs::remove_dir(store_dir)?;
    }
    let staging = partial_of(store_dir);
    if staging.exists() {
        bail!(
            "{} exists from an interrupted restore: remove it",
            staging.display()
        );
    }
    copy_tree(&args.src, &staging)
        .with_context(|| format!("cannot copy the backup into {}", staging.display()))?;
    // The installed copy must read back exactly as the backup did.
    if let Err(e) = verify(&staging).await {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e.context("the restored copy does not match the backup"));
    }
    std::fs::rename(&staging, store_dir)?;
    fsync_dir(data_dir)?;
    eprintln!(
        "restored {} events (head {}), {} consumer checkpoints and {} state entries into {} in {:.1} s",
        m.events,
        m.head.map_or_else(|| "none".to_owned(), |h| h.to_string()),
        m.checkpoints,
        m.state_entries,
        store_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
