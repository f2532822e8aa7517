//! Index snapshots: the in-memory part of the indexes (the active segment's postings and ids)
//! written to one file, so that opening a store reads the snapshot and indexes only the events
//! after it instead of scanning the whole active segment. Sealed segments' postings are in their
//! own index files (`segments/*.idx`), never in the snapshot.
//!
//! ```text
//! index.snapshot = "FWIX" | version u32 BE (2) | crc32 of body u32 BE | body
//! body           = postcard(SnapshotV1 { head, count, types, tags, ids })
//!                  posting lists delta-encoded (first position, then differences)
//! ```
//!
//! A snapshot covers positions `head + 1 - count ..= head` (positions are dense, so its first
//! position is implied). Version 1 (the same body) covered the whole log, when every posting was
//! in memory; this build ignores a version-1 snapshot (and indexes the active segment from the
//! log), and a version-1 build ignores a version-2 one (and rebuilds from the whole log), so
//! neither takes the other's partial indexes for complete ones.
//!
//! The snapshot is derived data: the segment log stays the only truth. It is written atomically
//! (temporary file, fsync, rename, fsync of the directory) when the store closes and every
//! `Options::index_snapshot_every` events. At open it is used only if it is intact, covers the
//! active segment from its first position and its head is an event the store holds; anything
//! else (missing, damaged, from another store, written before the last seal, a newer format) is
//! ignored with a log line and the active segment's events are indexed from the log.

use std::io::Write;
use std::path::{Path, PathBuf};

use dcb_core::Uuid;
use serde::{Deserialize, Serialize};

use crate::index::Index;

const MAGIC: &[u8; 4] = b"FWIX";
const VERSION: u32 = 2;
/// The snapshot's file name in the data directory.
pub const FILE: &str = "index.snapshot";

#[derive(Serialize, Deserialize)]
struct SnapshotV1 {
    head: u64,
    count: u64,
    types: Vec<(String, Vec<u64>)>,
    tags: Vec<(String, Vec<u64>)>,
    ids: Vec<([u8; 16], u64)>,
}

fn deltas(list: &[u64]) -> Vec<u64> {
    let mut prev = 0;
    list.iter()
        .map(|&p| {
            let d = p - prev;
            prev = p;
            d
        })
        .collect()
}

fn undeltas(list: Vec<u64>) -> Option<Vec<u64>> {
    // The index never holds an empty posting list, so a snapshot never does either.
    if list.is_empty() {
        return None;
    }
    let mut prev = 0u64;
    let mut out = Vec::with_capacity(list.len());
    for d in list {
        // Positions strictly increase: every delta but a first position of 0... is positive.
        if d == 0 {
            return None;
        }
        prev = prev.checked_add(d)?;
        out.push(prev);
    }
    Some(out)
}

/// The snapshot file of data directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes the in-memory part of `index` as the snapshot of `dir`, atomically.
pub(crate) fn write(dir: &Path, index: &Index) -> std::io::Result<()> {
    let (types, tags, ids) = index.parts();
    let body = SnapshotV1 {
        head: index.head,
        count: index.count,
        types: types.map(|(k, v)| (k.to_owned(), deltas(v))).collect(),
        tags: tags.map(|(k, v)| (k.to_owned(), deltas(v))).collect(),
        ids: ids.map(|(id, p)| (*id.as_bytes(), p)).collect(),
    };
    let body = postcard::to_stdvec(&body).map_err(std::io::Error::other)?;
    let bytes = frame(&body);
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Wraps a snapshot body in the file's header (magic, version, checksum). The store writes
/// files this way; tests and the fuzz target use it to reach the body decoder past the
/// checksum.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(12 + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_be_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// Reads the snapshot of `dir`: `Ok(None)` when there is none, `Err` with the reason when it
/// cannot be used.
pub(crate) fn read(dir: &Path) -> Result<Option<Index>, String> {
    let bytes = match std::fs::read(path(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    decode(&bytes).map(Some)
}

/// What a snapshot file holds, once decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The last position the snapshot indexes.
    pub head: u64,
    /// The number of events it indexes.
    pub count: u64,
    /// Distinct event types.
    pub types: usize,
    /// Distinct tags.
    pub tags: usize,
    /// Event ids.
    pub ids: usize,
}

/// Decodes and checks the bytes of a snapshot file (header, checksum, body, every posting list
/// strictly increasing and at or below the head) without opening a store: the reason when they
/// cannot be used. Untrusted bytes get an error, never a panic.
pub fn inspect(bytes: &[u8]) -> Result<SnapshotSummary, String> {
    let index = decode(bytes)?;
    let (types, tags, ids) = index.parts();
    Ok(SnapshotSummary {
        head: index.head,
        count: index.count,
        types: types.count(),
        tags: tags.count(),
        ids: ids.count(),
    })
}

fn decode(bytes: &[u8]) -> Result<Index, String> {
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        return Err("not an index snapshot".into());
    }
    let version = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(format!(
            "snapshot format {version}, this build reads {VERSION}"
        ));
    }
    let crc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let body = &bytes[12..];
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    let snap: SnapshotV1 = postcard::from_bytes(body).map_err(|e| e.to_string())?;
    if snap.count > snap.head {
        return Err("more events than positions up to the snapshot's head".into());
    }
    // The first position the snapshot covers.
    let base = (snap.head - snap.count)
        .checked_add(1)
        .ok_or("a head past the last position there can be")?;
    let mut index = Index::continuing_after(0);
    for (k, v) in snap.types {
        let v = undeltas(v).ok_or("an empty posting list or positions out of order")?;
        if v.last().is_some_and(|&p| p > snap.head) {
            return Err("a position past the snapshot's head".into());
        }
        if v.first().is_some_and(|&p| p < base) {
            return Err("a position before the first event the snapshot covers".into());
        }
        index.put_type(k, v);
    }
    for (k, v) in snap.tags {
        let v = undeltas(v).ok_or("an empty posting list or positions out of order")?;
        if v.last().is_some_and(|&p| p > snap.head) {
            return Err("a position past the snapshot's head".into());
        }
        if v.first().is_some_and(|&p| p < base) {
            return Err("a position before the first event the snapshot covers".into());
        }
        index.put_tag(k, v);
    }
    for (id, p) in snap.ids {
        if p == 0 || p > snap.head {
            return Err("an event id at a position past the snapshot's head".into());
        }
        if p < base {
            return Err("an event id before the first event the snapshot covers".into());
        }
        index.ids.insert(Uuid::from_bytes(id), p);
    }
    index.head = snap.head;
    index.count = snap.count;
    Ok(index)
}
