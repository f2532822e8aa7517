//! The open data directory: the segment log (events) and fjall (consumer checkpoints and state,
//! metadata), made consistent with each other at open, and the one-time migration of a data
//! directory of schema version 1 (events in a fjall keyspace).

use std::collections::HashMap;
use std::path::Path;

use dcb_core::{Position, StoreError};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::index::Index;
use crate::keys;
use crate::segment::{self, Log};
use crate::store::fjall_err;
use crate::writer;

/// Events indexed per step when the indexes are built from the log.
const SCAN_CHUNK: u64 = 4096;
/// Most events (and bytes) per frame written by the migration.
const MIGRATE_FRAME_EVENTS: usize = 4096;
const MIGRATE_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Where the migration writes the segment log before renaming it into place.
const MIGRATING: &str = "segments.migrating";

/// The open database, its keyspaces and the segment log. Replaced as a whole when the writer
/// reopens the store after a storage failure.
pub(crate) struct Disk {
    /// First, so that it is dropped first: closing the log cuts the active segment to its
    /// frames, which must happen while fjall still holds the directory's lock (once it is
    /// released, another process may open the directory and append).
    pub(crate) log: Log,
    pub(crate) db: Database,
    pub(crate) consumers: Keyspace,
    pub(crate) meta: Keyspace,
}

fn read_u64(meta: &Keyspace, key: &[u8]) -> Result<u64, StoreError> {
    match meta.get(key).map_err(fjall_err)? {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupted("applied-position record is not 8 bytes".into())),
    }
}

/// Marks the directory of `db` with this build's schema version, durably.
fn mark(db: &Database, meta: &Keyspace) -> Result<(), StoreError> {
    meta.insert(keys::SCHEMA_KEY, keys::SCHEMA_VERSION.to_be_bytes())
        .map_err(fjall_err)?;
    db.persist(PersistMode::SyncData).map_err(fjall_err)
}

impl Disk {
    /// Marks the directory with this build's schema version, durably, unless it is already:
    /// called before a segment of the current version is started, so that a directory of
    /// schema 2 (whose segments a build from before reads) becomes schema 3 only once it holds
    /// a segment that such a build could not check, and that build then refuses it by its
    /// schema version.
    pub(crate) fn mark_schema(&self) -> Result<(), StoreError> {
        let current = self.meta.get(keys::SCHEMA_KEY).map_err(fjall_err)?;
        if current.as_deref() == Some(&keys::SCHEMA_VERSION.to_be_bytes()[..]) {
            return Ok(());
        }
        mark(&self.db, &self.meta)
    }

    /// Opens the data directory `path`: fjall (creating the keyspaces, checking the schema
    /// version, migrating a version-1 directory), then the segment log (truncating a torn tail),
    /// then replays into fjall the checkpoint moves of frames fjall had not made durable yet.
    pub(crate) fn open(path: &Path, segment_bytes: u64) -> Result<Disk, StoreError> {
        clear_incomplete_creation(path)?;
        let db = open_fjall(path)?;
        let consumers = db
            .keyspace(keys::CONSUMERS, KeyspaceCreateOptions::default)
            .map_err(fjall_err)?;
        let meta = db
            .keyspace(keys::META, KeyspaceCreateOptions::default)
            .map_err(fjall_err)?;
        let version = match meta.get(keys::SCHEMA_KEY).map_err(fjall_err)? {
            Some(v) => <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| {
                    StoreError::Corrupted("schema version record is not 4 bytes".into())
                })?,
            // Version 1 created its events keyspace before writing its version.
            None if db.keyspace_exists(keys::EVENTS) => 1,
            None => {
                mark(&db, &meta)?;
                keys::SCHEMA_VERSION
            }
        };
        if version == 1 {
            if let Err(e) = migrate_v1(path, &db, &meta, segment_bytes) {
                // Version 1 stays the truth; what was written so far is dropped.
                let _ = std::fs::remove_dir_all(path.join(MIGRATING));
                return Err(e);
            }
        } else if version == keys::SCHEMA_VERSION_2 {
            // The same layout, its segments all of version 1: read as they are. It is marked
            // schema 3 when it first holds a segment of version 2 (see `Disk::mark_schema`).
        } else if version != keys::SCHEMA_VERSION {
            return Err(StoreError::Corrupted(format!(
                "data directory has schema version {version}, this build reads versions 1 (migrated at open), 2 and {}",
                keys::SCHEMA_VERSION
            )));
        }
        let (log, frames) = Log::open(&path.join(segment::DIR), segment_bytes)?;
        if version == keys::SCHEMA_VERSION_2 && log.holds_current_segments() {
            // Only when its segments had been removed, so that the log started a new one.
            mark(&db, &meta)?;
        }
        let applied = read_u64(&meta, keys::APPLIED_KEY)?;
        let head = log.head();
        if applied > head {
            return Err(StoreError::Corrupted(format!(
                "consumer checkpoints were written after position {applied}, but the event log ends at {head}"
            )));
        }
        // Checkpoint moves of tracked appends are durable in their frame; fjall gets them without
        // a sync of its own, so the frames after its last durable point are replayed here.
        let pending: Vec<_> = frames
            .into_iter()
            .filter(|(last, _)| *last > applied)
            .collect();
        if !pending.is_empty() {
            let mut batch = db.batch().durability(Some(PersistMode::SyncData));
            for (_, moves) in &pending {
                for (consumer, p) in moves {
                    batch.insert(&consumers, keys::checkpoint_key(consumer), p.to_bytes());
                }
            }
            batch.insert(&meta, keys::APPLIED_KEY, head.to_be_bytes());
            batch.commit().map_err(fjall_err)?;
            tracing::debug!(
                frames = pending.len(),
                "checkpoint moves replayed from the log"
            );
        }
        Ok(Disk {
            db,
            consumers,
            meta,
            log,
        })
    }

    /// Adds every event after `index.head` to `index`, checking the records on the way.
    pub(crate) fn scan_into(&self, index: &mut Index) -> Result<(), StoreError> {
        let head = self.log.head();
        let mut p = index.head.saturating_add(1);
        while p <= head {
            let n = (head - p + 1).min(SCAN_CHUNK);
            let positions: Vec<u64> = (p..p + n).collect();
            let records = self.log.read(&positions)?;
            for (&q, r) in positions.iter().zip(&records) {
                let k = writer::decode_keys(q, r)?;
                index.add_keys(q, k.event_type, k.tags, k.id);
            }
            p += n;
        }
        Ok(())
    }

    /// The index snapshot of `dir` when it is usable for this store (it covers the active
    /// segment from its first position, and its head is an event held here), else an empty
    /// index continuing before the active segment; the reason a snapshot was not used is logged.
    pub(crate) fn load_snapshot(&self, dir: &Path, enabled: bool) -> Result<Index, StoreError> {
        let base = self.log.active_base();
        let empty = Index::continuing_after(base - 1);
        if !enabled {
            return Ok(empty);
        }
        match crate::snapshot::read(dir) {
            Ok(None) => Ok(empty),
            Ok(Some(ix)) if ix.head > self.log.head() => {
                tracing::warn!(
                    head = ix.head,
                    "index snapshot is ahead of the events; rebuilding the indexes"
                );
                Ok(empty)
            }
            Ok(Some(ix)) if ix.base() != base => {
                // Written before the last seal (or by a version that indexed the whole log).
                tracing::info!(
                    from = ix.base(),
                    active = base,
                    "index snapshot does not cover the active segment; indexing it from the log"
                );
                Ok(empty)
            }
            Ok(Some(ix)) => Ok(ix),
            Err(reason) => {
                tracing::warn!(%reason, "index snapshot unusable; rebuilding the indexes");
                Ok(empty)
            }
        }
    }

    /// Every stored consumer checkpoint.
    pub(crate) fn checkpoints(&self) -> Result<HashMap<String, Position>, StoreError> {
        let mut checkpoints = HashMap::new();
        for kv in self.consumers.prefix(b"c") {
            let (k, v) = kv.into_inner().map_err(fjall_err)?;
            let (name, p) = decode_checkpoint(&k, &v)?;
            checkpoints.insert(name, p);
        }
        Ok(checkpoints)
    }
}

/// Moves the events of a schema-1 directory (fjall keyspace `events`) into the segment log:
/// written to `segments.migrating`, read back and compared, renamed to `segments`, then the
/// schema version is set to 2 (the commit point) and the old keyspace dropped. A crash at any
/// step leaves version 1 and the old keyspace intact, and the next open starts over.
fn migrate_v1(
    path: &Path,
    db: &Database,
    meta: &Keyspace,
    segment_bytes: u64,
) -> Result<(), StoreError> {
    let events = db
        .keyspace(keys::EVENTS, KeyspaceCreateOptions::default)
        .map_err(fjall_err)?;
    let tmp = path.join(MIGRATING);
    let dir = path.join(segment::DIR);
    for d in [&tmp, &dir] {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(StoreError::storage)?;
        }
    }
    tracing::info!(path = %path.display(), "migrating the data directory from schema version 1 to 2 (events into the segment log)");
    let (log, _) = Log::open(&tmp, segment_bytes)?;
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    let mut next = 1u64;
    let flush = |records: &mut Vec<Vec<u8>>, bytes: &mut usize| -> Result<(), StoreError> {
        if !records.is_empty() {
            log.append(records, &[])?;
            records.clear();
            *bytes = 0;
            if log.is_full() {
                log.roll()?;
            }
        }
        Ok(())
    };
    for kv in events.iter() {
        let (k, v) = kv.into_inner().map_err(fjall_err)?;
        let p = keys::event_position(&k)
            .ok_or_else(|| StoreError::Corrupted(format!("event key of {} bytes", k.len())))?;
        if p != next {
            return Err(StoreError::Corrupted(format!(
                "schema-1 events are not numbered 1, 2, 3...: found position {p} where {next} was expected; cannot migrate"
            )));
        }
        writer::decode_keys(p, &v)?;
        bytes += v.len();
        records.push(v.to_vec());
        next += 1;
        if records.len() >= MIGRATE_FRAME_EVENTS || bytes >= MIGRATE_FRAME_BYTES {
            flush(&mut records, &mut bytes)?;
        }
    }
    flush(&mut records, &mut bytes)?;
    let head = next - 1;
    // Verify: every record reads back from the log exactly as fjall holds it.
    if log.head() != head {
        return Err(StoreError::Corrupted(format!(
            "migration wrote {} events of {head}",
            log.head()
        )));
    }
    let mut p = 1u64;
    while p <= head {
        let n = (head - p + 1).min(SCAN_CHUNK);
        let positions: Vec<u64> = (p..p + n).collect();
        let got = log.read(&positions)?;
        for (&q, r) in positions.iter().zip(&got) {
            let old = events
                .get(keys::event_key(q))
                .map_err(fjall_err)?
                .ok_or_else(|| {
                    StoreError::Corrupted(format!("event {q} vanished during migration"))
                })?;
            if old.as_ref() != r.as_ref() {
                return Err(StoreError::Corrupted(format!(
                    "migrated event {q} reads back differently"
                )));
            }
        }
        p += n;
    }
    drop(log);
    std::fs::rename(&tmp, &dir).map_err(StoreError::storage)?;
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::storage)?;
    let mut batch = db.batch().durability(Some(PersistMode::SyncData));
    batch.insert(meta, keys::SCHEMA_KEY, keys::SCHEMA_VERSION.to_be_bytes());
    batch.insert(meta, keys::APPLIED_KEY, head.to_be_bytes());
    batch.commit().map_err(fjall_err)?;
    db.delete_keyspace(events).map_err(fjall_err)?;
    tracing::info!(events = head, "migration to schema version 2 done");
    Ok(())
}

/// Opens fjall in `path`. fjall checks a damaged journal entry's lengths with a debug-build
/// assertion (a panic) before its checksum; such a panic during recovery is a damaged file, and is
/// reported as one instead of unwinding through the caller.
fn open_fjall(path: &Path) -> Result<Database, StoreError> {
    check_fjall_manifests(path)?;
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Database::builder(path).open()
    }));
    match opened {
        Ok(r) => r.map_err(fjall_err),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Err(StoreError::Corrupted(format!(
                "fjall could not recover its files (consumer state and metadata): {what}"
            )))
        }
    }
}

/// Checks each fjall keyspace's current manifest (`keyspaces/N/vM`) against the xxh3 checksum
/// its `current` file records. fjall parses the manifest without checking it first, and a
/// damaged length in it makes the process abort on a huge allocation; a mismatch here is a
/// damaged file, reported before fjall reads it.
fn check_fjall_manifests(path: &Path) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(path.join("keyspaces")) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(current) = std::fs::read(dir.join("current")) else {
            continue;
        };
        // version id u64 LE | xxh3-128 checksum u128 LE | checksum type u8 (0: xxh3)
        if current.len() != 25 || current[24] != 0 {
            return Err(StoreError::Corrupted(format!(
                "fjall manifest pointer {} is damaged",
                dir.join("current").display()
            )));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&current[..8]);
        let mut sum = [0u8; 16];
        sum.copy_from_slice(&current[8..24]);
        let manifest = dir.join(format!("v{}", u64::from_le_bytes(id)));
        let bytes = std::fs::read(&manifest).map_err(|e| {
            StoreError::Corrupted(format!("fjall manifest {}: {e}", manifest.display()))
        })?;
        if xxhash_rust::xxh3::xxh3_128(&bytes) != u128::from_le_bytes(sum) {
            return Err(StoreError::Corrupted(format!(
                "fjall manifest {} does not match its checksum",
                manifest.display()
            )));
        }
    }
    Ok(())
}

/// fjall writes its `version` marker last when it creates a database. A directory with fjall's
/// files but no marker is a creation that failed part-way (e.g. the disk was full): it holds no
/// data, and fjall would refuse to create over it ("File exists"). Remove exactly those files.
fn clear_incomplete_creation(path: &Path) -> Result<(), StoreError> {
    if path.join("version").exists() {
        return Ok(());
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let p = entry.path();
        let result = if name == "keyspaces" && p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else if name == "lock" || (name.ends_with(".jnl") && p.is_file()) {
            std::fs::remove_file(&p)
        } else {
            continue;
        };
        tracing::warn!(path = %p.display(), "removing a leftover of an incomplete store creation");
        result.map_err(StoreError::storage)?;
    }
    Ok(())
}

/// One stored checkpoint entry of the consumers keyspace (key `c<name>`, value a position) as
/// the consumer's name and its position.
pub(crate) fn decode_checkpoint(
    key: &[u8],
    value: &[u8],
) -> Result<(String, Position), StoreError> {
    let name = std::str::from_utf8(key.get(1..).unwrap_or_default())
        .map_err(|_| StoreError::Corrupted("consumer name is not UTF-8".into()))?
        .to_owned();
    let p = Position::from_bytes(value)
        .map_err(|e| StoreError::Corrupted(format!("checkpoint of {name}: {e}")))?;
    Ok((name, p))
}
