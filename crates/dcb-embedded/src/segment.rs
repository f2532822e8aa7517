//! The segment log: the events, in append-only files of their own under `segments/`.
//!
//! ```text
//! segments/BBBBBBBBBBBBBBBBBBBB.seg   events from position B (20 decimal digits) on
//!   header  "FWSG" | version u32 LE (1) | base u64 LE | crc32 of the 16 bytes before u32 LE | 0u32
//!   frames, one per commit group, back to back:
//!     "FWFR" | body_len u32 | first u64 | count u32 | body_crc u32 | header_crc u32   (28 bytes,
//!              little endian; header_crc covers the 24 bytes before it, body_crc the body)
//!     body = tracking count u16 | (name_len u8 | consumer | position 12 bytes BE)*
//!            | record* (count of them: len u32 | crc32(position u64 LE ++ bytes) u32 | bytes)
//! segments/BBBBBBBBBBBBBBBBBBBB.off   the offset table of a sealed segment
//!   "FWOF" | version u32 (2) | base u64 | count u64 | data_len u64 | entries_crc u32
//!          | header_crc u32
//!   then `count` varints (LEB128): the byte offset of each record (of its 8-byte record
//!   header), each as its distance from the one before (the first: from 0); 1-2 bytes each.
//!   A version-1 table (4-byte entries) is rebuilt from its segment when it is first opened.
//! segments/BBBBBBBBBBBBBBBBBBBB.idx   the type, tag and id index of a sealed segment (layout in
//!   `segindex`), written before the segment is sealed, checked and rebuilt like `.off`
//! ```
//!
//! A group is appended as one frame and `fdatasync`'d before it is acknowledged: the frame is the
//! journal and the data at once, so each event's bytes reach the disk once. Positions are dense
//! from 1, so an event is located by position alone: the segment whose base is the greatest at or
//! below it, then its offset in the segment's table (in memory for the active segment, in the
//! `.off` file for sealed ones). A record's checksum includes its position, so a record read
//! through a wrong offset is detected, never returned.
//!
//! At open the active (last) segment is scanned frame by frame. A damaged or incomplete frame
//! with no intact frame after it is a torn write that was never acknowledged (each frame is
//! synced before the next is written) and is truncated; a damaged frame followed by intact ones,
//! or any damage in a sealed segment, is [`StoreError::Corrupted`]. A sealed segment's `.off`
//! file is checked at open (header and checksum) and rebuilt from the segment when it is missing
//! or damaged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use bytes::Bytes;
use dcb_core::{Position, StoreError};

use crate::blockfmt::{Cursor, put_varint};

/// The directory of the segment files, inside the data directory.
pub const DIR: &str = "segments";
/// The default size at which the active segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
/// The largest segment size allowed (record offsets are 32-bit).
const MAX_SEGMENT_BYTES: u64 = 1 << 30;

const SEG_MAGIC: &[u8; 4] = b"FWSG";
const OFF_MAGIC: &[u8; 4] = b"FWOF";
const FRAME_MAGIC: &[u8; 4] = b"FWFR";
const VERSION: u32 = 1;
/// Version of the `.off` files (1: 4-byte entries, rebuilt from the segment when met).
const OFF_VERSION: u32 = 2;
const SEG_HEADER: u64 = 24;
const FRAME_HEADER: usize = 28;
const OFF_HEADER: u64 = 40;
const RECORD_HEADER: usize = 8;
/// Records closer together than this are fetched with one read (copying a page costs less than
/// a second read). It bounds a read's buffer too: at most this much beside each record, so a
/// chunk of a read holds at most `READ_CHUNK` × (4 KiB + record) bytes.
const GAP: u64 = 4 * 1024;
/// Most bytes one coalesced read covers.
const MAX_RUN: u64 = 1 << 20;

/// Checkpoint moves: (consumer, new checkpoint), in order.
pub(crate) type Moves = Vec<(String, Position)>;

/// The checkpoint moves carried by one frame, with the frame's last position.
pub(crate) type FrameTracking = (u64, Moves);

fn corrupt(msg: String) -> StoreError {
    StoreError::Corrupted(msg)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::storage(e)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn record_crc(position: u64, bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&position.to_le_bytes());
    h.update(bytes);
    h.finalize()
}

fn seg_name(base: u64) -> String {
    format!("{base:020}.seg")
}

fn off_name(base: u64) -> String {
    format!("{base:020}.off")
}

fn segment_header(base: u64) -> [u8; SEG_HEADER as usize] {
    let mut h = [0u8; SEG_HEADER as usize];
    h[..4].copy_from_slice(SEG_MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes one frame: the records of positions `first..` and the tracking updates. Returns the
/// bytes and the offset of each record inside them.
pub(crate) fn encode_frame(
    first: u64,
    records: &[Vec<u8>],
    tracking: &[(String, Position)],
) -> (Vec<u8>, Vec<u32>) {
    let size = FRAME_HEADER
        + 2
        + tracking.iter().map(|(c, _)| 13 + c.len()).sum::<usize>()
        + records
            .iter()
            .map(|r| RECORD_HEADER + r.len())
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    // A group holds at most MAX_GROUP requests, and consumer names are at most 128 bytes.
    out.extend_from_slice(&(tracking.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
    for (consumer, p) in tracking.iter().take(usize::from(u16::MAX)) {
        let name = &consumer.as_bytes()[..consumer.len().min(255)];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&p.to_bytes());
    }
    let mut offsets = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        offsets.push(out.len() as u32);
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(&record_crc(first + i as u64, r).to_le_bytes());
        out.extend_from_slice(r);
    }
    let body_len = (out.len() - FRAME_HEADER) as u32;
    let body_crc = crc32fast::hash(&out[FRAME_HEADER..]);
    out[..4].copy_from_slice(FRAME_MAGIC);
    out[4..8].copy_from_slice(&body_len.to_le_bytes());
    out[8..16].copy_from_slice(&first.to_le_bytes());
    out[16..20].copy_from_slice(&(records.len() as u32).to_le_bytes());
    out[20..24].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&out[..24]);
    out[24..28].copy_from_slice(&header_crc.to_le_bytes());
    (out, offsets)
}

/// A frame header that passed its checksum.
struct FrameHeader {
    body_len: u64,
    first: u64,
    count: u64,
    body_crc: u32,
}

fn parse_header(h: &[u8]) -> Option<FrameHeader> {
    if h.len() < FRAME_HEADER || &h[..4] != FRAME_MAGIC {
        return None;
    }
    if crc32fast::hash(&h[..24]) != u32_at(h, 24) {
        return None;
    }
    Some(FrameHeader {
        body_len: u64::from(u32_at(h, 4)),
        first: u64_at(h, 8),
        count: u64::from(u32_at(h, 16)),
        body_crc: u32_at(h, 20),
    })
}

/// Parses a checked frame body: the tracking updates and each record's offset in the body.
fn parse_body(first: u64, count: u64, body: &[u8]) -> Result<(Moves, Vec<u32>), String> {
    let short = || "frame body ends early".to_string();
    let mut at = 0usize;
    let n = u16::from_le_bytes(
        body.get(0..2)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?,
    );
    at += 2;
    let mut tracking = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let len = usize::from(*body.get(at).ok_or_else(short)?);
        at += 1;
        let name = body.get(at..at + len).ok_or_else(short)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| "consumer name is not UTF-8".to_string())?
            .to_owned();
        at += len;
        let p = Position::from_bytes(body.get(at..at + 12).ok_or_else(short)?)
            .map_err(|e| format!("tracking position: {e}"))?;
        at += 12;
        tracking.push((name, p));
    }
    let mut offsets = Vec::with_capacity(count as usize);
    for i in 0..count {
        let h = body.get(at..at + RECORD_HEADER).ok_or_else(short)?;
        let len = u32_at(h, 0) as usize;
        let crc = u32_at(h, 4);
        let data = body
            .get(at + RECORD_HEADER..at + RECORD_HEADER + len)
            .ok_or_else(short)?;
        if record_crc(first + i, data) != crc {
            return Err(format!(
                "record checksum mismatch at position {}",
                first + i
            ));
        }
        offsets.push(at as u32);
        at += RECORD_HEADER + len;
    }
    if at != body.len() {
        return Err("bytes after the frame's last record".into());
    }
    Ok((tracking, offsets))
}

/// What a segment scan found.
struct Scanned {
    /// Offsets of the records in the file.
    offsets: Vec<u32>,
    /// The end of the last intact frame.
    len: u64,
    tracking: Vec<FrameTracking>,
    /// Where the first damaged or incomplete frame starts, if any.
    damaged_at: Option<(u64, String)>,
}

fn read_exact(file: &File, at: u64, len: usize) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at).map_err(io)?;
    Ok(buf)
}

/// Scans the frames of a segment from its header on.
fn scan(file: &File, base: u64, file_len: u64) -> Result<Scanned, StoreError> {
    let mut out = Scanned {
        offsets: Vec::new(),
        len: SEG_HEADER,
        tracking: Vec::new(),
        damaged_at: None,
    };
    let mut at = SEG_HEADER;
    let mut next = base;
    while at < file_len {
        if file_len - at < FRAME_HEADER as u64 {
            out.damaged_at = Some((at, "incomplete frame header".into()));
            break;
        }
        let h = read_exact(file, at, FRAME_HEADER)?;
        let Some(h) = parse_header(&h) else {
            out.damaged_at = Some((at, "damaged frame header".into()));
            break;
        };
        if h.first != next {
            // An intact header naming the wrong positions is not a torn write.
            return Err(corrupt(format!(
                "segment {}: frame at byte {at} starts at position {}, expected {next}",
                seg_name(base),
                h.first
            )));
        }
        let body_at = at + FRAME_HEADER as u64;
        if file_len - body_at < h.body_len {
            out.damaged_at = Some((at, "incomplete frame".into()));
            break;
        }
        let body = read_exact(file, body_at, h.body_len as usize)?;
        if crc32fast::hash(&body) != h.body_crc {
            out.damaged_at = Some((at, "frame checksum mismatch".into()));
            break;
        }
        let (tracking, offsets) = match parse_body(h.first, h.count, &body) {
            Ok(x) => x,
            Err(e) => {
                out.damaged_at = Some((at, e));
                break;
            }
        };
        for o in offsets {
            let abs = body_at + u64::from(o);
            out.offsets.push(
                u32::try_from(abs).map_err(|_| {
                    corrupt(format!("segment {} larger than 4 GiB", seg_name(base)))
                })?,
            );
        }
        next += h.count;
        at = body_at + h.body_len;
        out.len = at;
        if h.count > 0 || !tracking.is_empty() {
            out.tracking.push((next - 1, tracking));
        }
    }
    Ok(out)
}

/// Whether an intact frame header appears anywhere after byte `from`.
fn intact_frame_after(file: &File, from: u64, file_len: u64) -> Result<bool, StoreError> {
    let start = from + 1;
    if start >= file_len {
        return Ok(false);
    }
    let rest = read_exact(file, start, (file_len - start) as usize)?;
    let mut i = 0;
    while i + FRAME_HEADER <= rest.len() {
        match rest[i..].windows(4).position(|w| w == FRAME_MAGIC) {
            None => return Ok(false),
            Some(k) => {
                let at = i + k;
                if parse_header(&rest[at..]).is_some() {
                    return Ok(true);
                }
                i = at + 1;
            }
        }
    }
    Ok(false)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

/// A sealed segment: immutable; its offset table loaded from its `.off` file.
struct Sealed {
    base: u64,
    len: u64,
    file: File,
    offsets: Vec<u32>,
}

impl Sealed {
    fn count(&self) -> u64 {
        self.offsets.len() as u64
    }
}

/// The segment being appended to: its offsets in memory.
struct Active {
    base: u64,
    file: Arc<File>,
    offsets: Vec<u32>,
    len: u64,
}

/// The segment log of a data directory.
pub(crate) struct Log {
    dir: PathBuf,
    cap: u64,
    sealed: RwLock<Vec<Arc<Sealed>>>,
    active: RwLock<Active>,
    failed: AtomicBool,
}

/// One segment's part of a read, ready to fetch without holding any lock.
struct Part {
    file: Arc<FileRef>,
    base: u64,
    /// (index into the request, position, start, end), ascending by position.
    items: Vec<(usize, u64, u64, u64)>,
}

/// A segment file shared by a read: the active segment's `Arc<File>` or a sealed segment.
enum FileRef {
    Active(Arc<File>),
    Sealed(Arc<Sealed>),
}

impl FileRef {
    fn file(&self) -> &File {
        match self {
            FileRef::Active(f) => f,
            FileRef::Sealed(s) => &s.file,
        }
    }
}

fn write_off(dir: &Path, base: u64, offsets: &[u32], len: u64) -> Result<(), StoreError> {
    // Each offset as its distance from the one before (the first: from 0), a varint: records are
    // mostly under 16 KiB apart, so an entry takes 1 or 2 bytes instead of 4.
    let mut entries = Vec::with_capacity(offsets.len() * 2);
    let mut prev = 0u32;
    for &o in offsets {
        put_varint(&mut entries, u64::from(o - prev));
        prev = o;
    }
    let mut h = Vec::with_capacity(OFF_HEADER as usize + entries.len());
    h.extend_from_slice(OFF_MAGIC);
    h.extend_from_slice(&OFF_VERSION.to_le_bytes());
    h.extend_from_slice(&base.to_le_bytes());
    h.extend_from_slice(&(offsets.len() as u64).to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&crc32fast::hash(&entries).to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&entries);
    let tmp = dir.join(format!("{}.tmp", off_name(base)));
    {
        let mut f = File::create(&tmp).map_err(io)?;
        f.write_all(&h).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, dir.join(off_name(base))).map_err(io)?;
    sync_dir(dir)
}

/// Checks a `.off` file against its segment: `Err` with the reason when it cannot be used.
fn check_off(off: &File, base: u64, count: u64, file_len: u64) -> Result<(u64, Vec<u32>), String> {
    let h = read_exact(off, 0, OFF_HEADER as usize).map_err(|e| e.to_string())?;
    if &h[..4] != OFF_MAGIC || u32_at(&h, 4) != OFF_VERSION {
        return Err("not an offset table of this version".into());
    }
    if crc32fast::hash(&h[..36]) != u32_at(&h, 36) {
        return Err("header checksum mismatch".into());
    }
    if u64_at(&h, 8) != base || u64_at(&h, 16) != count {
        return Err("for another segment or another event count".into());
    }
    let len = u64_at(&h, 24);
    if len > file_len || len < SEG_HEADER {
        return Err("data length past the segment's end".into());
    }
    let size = off.metadata().map_err(|e| e.to_string())?.len();
    // Every entry is a varint of 1 to 5 bytes.
    let entries_len = size
        .checked_sub(OFF_HEADER)
        .ok_or("shorter than its header")?;
    if entries_len < count || entries_len > 5 * count {
        return Err("wrong size".into());
    }
    let entries = read_exact(off, OFF_HEADER, entries_len as usize).map_err(|e| e.to_string())?;
    if crc32fast::hash(&entries) != u32_at(&h, 32) {
        return Err("checksum mismatch".into());
    }
    let mut offsets = Vec::with_capacity(count as usize);
    let mut c = Cursor::new(&entries);
    let mut prev = 0u64;
    for _ in 0..count {
        let d = c.varint().ok_or("an entry is damaged")?;
        prev = prev.checked_add(d).ok_or("an offset is too large")?;
        offsets.push(u32::try_from(prev).map_err(|_| "an offset is too large")?);
    }
    if !c.done() {
        return Err("bytes after the last entry".into());
    }
    // Offsets strictly increase and stay inside the data.
    let ordered = offsets.windows(2).all(|w| w[0] < w[1])
        && offsets.first().is_none_or(|&o| u64::from(o) >= SEG_HEADER)
        && offsets
            .last()
            .is_none_or(|&o| u64::from(o) + (RECORD_HEADER as u64) <= len);
    if !ordered {
        return Err("offsets out of order or past the data".into());
    }
    Ok((len, offsets))
}

fn open_segment(dir: &Path, base: u64) -> Result<(File, u64), StoreError> {
    let path = dir.join(seg_name(base));
    let file = open_noatime(OpenOptions::new().read(true).write(true), &path)?;
    let len = file.metadata().map_err(io)?.len();
    Ok((file, len))
}

/// Opens `path` without access-time updates where the system allows it (a read then skips the
/// kernel's atime bookkeeping; only the file's owner may ask), else normally.
fn open_noatime(options: &OpenOptions, path: &Path) -> Result<File, StoreError> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut noatime = options.clone();
        noatime.custom_flags(libc::O_NOATIME);
        if let Ok(f) = noatime.open(path) {
            return Ok(f);
        }
    }
    options.open(path).map_err(io)
}

fn header_ok(file: &File, base: u64, len: u64) -> Result<bool, StoreError> {
    if len < SEG_HEADER {
        return Ok(false);
    }
    let h = read_exact(file, 0, SEG_HEADER as usize)?;
    Ok(h == segment_header(base))
}

fn create_segment(dir: &Path, base: u64) -> Result<File, StoreError> {
    let path = dir.join(seg_name(base));
    let mut file = open_noatime(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true),
        &path,
    )?;
    file.write_all(&segment_header(base)).map_err(io)?;
    file.sync_all().map_err(io)?;
    sync_dir(dir)?;
    Ok(file)
}

impl Log {
    /// Opens (or creates) the log in directory `dir` with segments sealed at `cap` bytes. Returns
    /// the log and the tracking updates of the active segment's frames, in order (the caller
    /// makes the consumer checkpoints consistent with them).
    pub(crate) fn open(dir: &Path, cap: u64) -> Result<(Log, Vec<FrameTracking>), StoreError> {
        let cap = cap.clamp(4096, MAX_SEGMENT_BYTES);
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".seg") {
                match stem.parse::<u64>() {
                    Ok(b) if b > 0 && stem.len() == 20 => bases.push(b),
                    _ => {
                        return Err(corrupt(format!(
                            "unexpected segment file {name} in {}",
                            dir.display()
                        )));
                    }
                }
            } else if name.ends_with(".tmp") {
                // An offset table that was never renamed into place.
                std::fs::remove_file(entry.path()).map_err(io)?;
            }
        }
        bases.sort_unstable();
        // A segment created at a roll whose header never reached the disk holds nothing.
        while let Some(&last) = bases.last() {
            let (file, len) = open_segment(dir, last)?;
            if header_ok(&file, last, len)? {
                break;
            }
            let blank =
                len < SEG_HEADER || read_exact(&file, 0, len as usize)?.iter().all(|&b| b == 0);
            if !blank {
                return Err(corrupt(format!(
                    "segment {}: damaged header",
                    seg_name(last)
                )));
            }
            tracing::warn!(segment = %seg_name(last), "removing a segment whose creation did not complete");
            std::fs::remove_file(dir.join(seg_name(last))).map_err(io)?;
            sync_dir(dir)?;
            bases.pop();
        }
        if bases.is_empty() {
            create_segment(dir, 1)?;
            bases.push(1);
        }
        let mut sealed = Vec::with_capacity(bases.len());
        for w in bases.windows(2) {
            let (base, next) = (w[0], w[1]);
            if next <= base {
                return Err(corrupt(format!("segment {} is empty", seg_name(base))));
            }
            sealed.push(Arc::new(Log::open_sealed(dir, base, next - base)?));
        }
        let base = *bases.last().unwrap_or(&1);
        let (file, file_len) = open_segment(dir, base)?;
        if !header_ok(&file, base, file_len)? {
            return Err(corrupt(format!(
                "segment {}: damaged header",
                seg_name(base)
            )));
        }
        // The active segment's offset table lives in memory; a leftover file is stale.
        let stale = dir.join(off_name(base));
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(io)?;
        }
        let scanned = scan(&file, base, file_len)?;
        if let Some((at, why)) = &scanned.damaged_at {
            if intact_frame_after(&file, *at, file_len)? {
                return Err(corrupt(format!(
                    "segment {}: {why} at byte {at}, followed by intact frames",
                    seg_name(base)
                )));
            }
            tracing::warn!(segment = %seg_name(base), at, reason = %why, "truncating a torn write at the end of the log (never acknowledged)");
            file.set_len(*at).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let log = Log {
            dir: dir.to_path_buf(),
            cap,
            sealed: RwLock::new(sealed),
            active: RwLock::new(Active {
                base,
                file: Arc::new(file),
                offsets: scanned.offsets,
                len: scanned.len,
            }),
            failed: AtomicBool::new(false),
        };
        Ok((log, scanned.tracking))
    }

    fn open_sealed(dir: &Path, base: u64, count: u64) -> Result<Sealed, StoreError> {
        let (file, file_len) = open_segment(dir, base)?;
        if !header_ok(&file, base, file_len)? {
            return Err(corrupt(format!(
                "segment {}: damaged header",
                seg_name(base)
            )));
        }
        let off_path = dir.join(off_name(base));
        let checked = match File::open(&off_path) {
            Ok(off) => check_off(&off, base, count, file_len),
            Err(e) => Err(e.to_string()),
        };
        let (len, offsets) = match checked {
            Ok(x) => x,
            Err(reason) => {
                tracing::warn!(segment = %seg_name(base), %reason, "offset table unusable; rebuilding it from the segment");
                let s = scan(&file, base, file_len)?;
                if let Some((at, why)) = s.damaged_at {
                    return Err(corrupt(format!(
                        "sealed segment {}: {why} at byte {at}",
                        seg_name(base)
                    )));
                }
                if s.offsets.len() as u64 != count {
                    return Err(corrupt(format!(
                        "sealed segment {} holds {} events, expected {count}",
                        seg_name(base),
                        s.offsets.len()
                    )));
                }
                write_off(dir, base, &s.offsets, s.len)?;
                (s.len, s.offsets)
            }
        };
        Ok(Sealed {
            base,
            len,
            file,
            offsets,
        })
    }

    fn active(&self) -> RwLockReadGuard<'_, Active> {
        self.active.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The last position in the log (0: empty).
    pub(crate) fn head(&self) -> u64 {
        let a = self.active();
        a.base + a.offsets.len() as u64 - 1
    }

    /// Appends one frame (positions `head + 1 ..`) and syncs it. Returns the records as slices of
    /// the written buffer. After a failure the log refuses every further append (the file's state
    /// is unknown until it is reopened).
    pub(crate) fn append(
        &self,
        records: &[Vec<u8>],
        tracking: &[(String, Position)],
    ) -> Result<Vec<Bytes>, StoreError> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(StoreError::storage_msg(
                "the segment log refuses writes after a failed write until it is reopened",
            ));
        }
        let (file, at, first) = {
            let a = self.active();
            (a.file.clone(), a.len, a.base + a.offsets.len() as u64)
        };
        let (frame, rel) = encode_frame(first, records, tracking);
        let end = at + frame.len() as u64;
        if u32::try_from(end).is_err() {
            return Err(StoreError::storage_msg("segment exceeds 4 GiB"));
        }
        let written = file
            .write_all_at(&frame, at)
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            self.failed.store(true, Ordering::SeqCst);
            return Err(io(e));
        }
        let frame = Bytes::from(frame);
        let out = rel
            .iter()
            .zip(records)
            .map(|(&o, r)| {
                let s = o as usize + RECORD_HEADER;
                frame.slice(s..s + r.len())
            })
            .collect();
        let mut a = self.active.write().unwrap_or_else(|p| p.into_inner());
        a.offsets.extend(rel.iter().map(|&o| (at as u32) + o));
        a.len = end;
        Ok(out)
    }

    /// The directory of the segment files.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The first position of the active segment.
    pub(crate) fn active_base(&self) -> u64 {
        self.active().base
    }

    /// The sealed segments, in position order: (first position, number of events).
    pub(crate) fn sealed_segments(&self) -> Vec<(u64, u64)> {
        self.sealed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|s| (s.base, s.count()))
            .collect()
    }

    /// Whether the active segment has reached its size cap (and holds events).
    pub(crate) fn is_full(&self) -> bool {
        let a = self.active();
        a.len >= self.cap && !a.offsets.is_empty()
    }

    /// Seals the active segment (writes its offset table) and starts a new one.
    pub(crate) fn roll(&self) -> Result<(), StoreError> {
        let (base, offsets, len) = {
            let a = self.active();
            (a.base, a.offsets.clone(), a.len)
        };
        if offsets.is_empty() {
            return Ok(());
        }
        write_off(&self.dir, base, &offsets, len)?;
        let next = base + offsets.len() as u64;
        let file = create_segment(&self.dir, next)?;
        let (seg, _) = open_segment(&self.dir, base)?;
        let mut sealed = self.sealed.write().unwrap_or_else(|p| p.into_inner());
        let mut a = self.active.write().unwrap_or_else(|p| p.into_inner());
        sealed.push(Arc::new(Sealed {
            base,
            len,
            file: seg,
            offsets,
        }));
        *a = Active {
            base: next,
            file: Arc::new(file),
            offsets: Vec::new(),
            len: SEG_HEADER,
        };
        Ok(())
    }

    /// Groups `positions` by segment and finds each record's byte extent.
    fn plan(&self, positions: &[u64]) -> Result<Vec<Part>, StoreError> {
        let mut order: Vec<(u64, usize)> = positions.iter().copied().zip(0..).collect();
        order.sort_unstable();
        let sealed = self.sealed.read().unwrap_or_else(|p| p.into_inner());
        let active = self.active();
        let head = active.base + active.offsets.len() as u64 - 1;
        let mut parts = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let p = order[i].0;
            if p == 0 || p > head {
                return Err(corrupt(format!("indexed event at position {p} is missing")));
            }
            if p >= active.base {
                let items = order[i..]
                    .iter()
                    .map(|&(p, k)| {
                        let idx = (p - active.base) as usize;
                        let start = u64::from(active.offsets[idx]);
                        let end = active
                            .offsets
                            .get(idx + 1)
                            .map_or(active.len, |&o| u64::from(o));
                        (k, p, start, end)
                    })
                    .collect();
                parts.push(Part {
                    file: Arc::new(FileRef::Active(active.file.clone())),
                    base: active.base,
                    items,
                });
                break;
            }
            let s = match sealed.binary_search_by(|s| s.base.cmp(&p)) {
                Ok(k) => k,
                Err(k) => k.saturating_sub(1),
            };
            let seg = sealed
                .get(s)
                .ok_or_else(|| corrupt(format!("no segment holds position {p}")))?
                .clone();
            let end = seg.base + seg.count();
            let mut j = i;
            while j < order.len() && order[j].0 < end {
                j += 1;
            }
            let items = order[i..j]
                .iter()
                .map(|&(p, k)| {
                    let idx = (p - seg.base) as usize;
                    let start = u64::from(seg.offsets[idx]);
                    let end = seg.offsets.get(idx + 1).map_or(seg.len, |&o| u64::from(o));
                    (k, p, start, end)
                })
                .collect();
            parts.push(Part {
                base: seg.base,
                file: Arc::new(FileRef::Sealed(seg)),
                items,
            });
            i = j;
        }
        Ok(parts)
    }

    /// The records at `positions` (any order; each at most once), in the same order. Records
    /// closer together than [`GAP`] are fetched with one read; all the reads of a call land in
    /// one buffer, and the records are handed out as slices of it.
    pub(crate) fn read(&self, positions: &[u64]) -> Result<Vec<Bytes>, StoreError> {
        let parts = self.plan(positions)?;
        // Plan the runs first: (part, first item, last item, file start, file end).
        let mut runs = Vec::new();
        let mut total = 0usize;
        for (k, part) in parts.iter().enumerate() {
            let mut i = 0;
            while i < part.items.len() {
                let start = part.items[i].2;
                let mut j = i;
                while j + 1 < part.items.len()
                    && part.items[j + 1].2 <= part.items[j].3 + GAP
                    && part.items[j + 1].3 - start <= MAX_RUN
                {
                    j += 1;
                }
                let end = part.items[j].3;
                total += (end - start) as usize;
                runs.push((k, i, j, start, end));
                i = j + 1;
            }
        }
        let mut buf = vec![0u8; total];
        let mut at = 0usize;
        for &(k, _, _, start, end) in &runs {
            let len = (end - start) as usize;
            parts[k]
                .file
                .file()
                .read_exact_at(&mut buf[at..at + len], start)
                .map_err(io)?;
            at += len;
        }
        let buf = Bytes::from(buf);
        let mut out: Vec<Bytes> = vec![Bytes::new(); positions.len()];
        let mut at = 0usize;
        for &(k, i, j, start, end) in &runs {
            let part = &parts[k];
            for &(idx, p, a, b) in &part.items[i..=j] {
                let a = at + (a - start) as usize;
                let b = at + (b - start) as usize;
                out[idx] = record_in(&buf, a, b, p).ok_or_else(|| {
                    corrupt(format!(
                        "event at position {p}: record damaged in segment {}",
                        seg_name(part.base)
                    ))
                })?;
            }
            at += (end - start) as usize;
        }
        Ok(out)
    }
}

/// The checked record at `buf[a..b]` (record header included; `b` may lie past its end).
fn record_in(buf: &Bytes, a: usize, b: usize, position: u64) -> Option<Bytes> {
    let h = buf.get(a..a + RECORD_HEADER)?;
    let len = u32_at(h, 0) as usize;
    let crc = u32_at(h, 4);
    let s = a + RECORD_HEADER;
    if s + len > b {
        return None;
    }
    let data = buf.slice(s..s + len);
    (record_crc(position, &data) == crc).then_some(data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(p: u64) -> Vec<u8> {
        format!("record {p} {}", "x".repeat((p % 50) as usize)).into_bytes()
    }

    fn fill(log: &Log, from: u64, to: u64, per_frame: u64) {
        let mut p = from;
        while p <= to {
            let n = per_frame.min(to - p + 1);
            let records: Vec<Vec<u8>> = (p..p + n).map(rec).collect();
            log.append(&records, &[]).unwrap();
            p += n;
            if log.is_full() {
                log.roll().unwrap();
            }
        }
    }

    fn check_all(log: &Log, head: u64) {
        assert_eq!(log.head(), head);
        let all: Vec<u64> = (1..=head).collect();
        for (p, r) in all.iter().zip(log.read(&all).unwrap()) {
            assert_eq!(r.as_ref(), rec(*p).as_slice());
        }
        let back: Vec<u64> = (1..=head).rev().step_by(7).collect();
        for (p, r) in back.iter().zip(log.read(&back).unwrap()) {
            assert_eq!(r.as_ref(), rec(*p).as_slice());
        }
    }

    #[test]
    fn records_span_segments_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(dir.path(), 4096).unwrap();
            assert_eq!(log.head(), 0);
            fill(&log, 1, 500, 3);
            assert!(log.sealed.read().unwrap().len() > 3);
            check_all(&log, 500);
        }
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        check_all(&log, 500);
        fill(&log, 501, 600, 5);
        check_all(&log, 600);
    }

    #[test]
    fn a_torn_tail_is_truncated_and_tracking_is_returned() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(seg_name(1));
        let good_len;
        {
            let (log, _) = Log::open(dir.path(), 1 << 20).unwrap();
            let cp = Position::from_u64(9);
            log.append(&[rec(1), rec(2)], &[("view".into(), cp)])
                .unwrap();
            good_len = std::fs::metadata(&seg).unwrap().len();
            log.append(&[rec(3)], &[]).unwrap();
        }
        let full = std::fs::read(&seg).unwrap();
        for cut in [good_len + 1, good_len + 20, full.len() as u64 - 1] {
            let f = OpenOptions::new().write(true).open(&seg).unwrap();
            f.set_len(cut).unwrap();
            drop(f);
            let (log, tracking) = Log::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(log.head(), 2, "cut at {cut}");
            assert_eq!(
                tracking,
                vec![(2, vec![("view".to_string(), Position::from_u64(9))])]
            );
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
            drop(log);
            std::fs::write(&seg, &full).unwrap();
        }
        // Garbage (not zeros) after the last frame is a torn write too.
        let mut garbage = full.clone();
        garbage.extend_from_slice(b"FWFR\x10\0\0\0partial frame bytes");
        std::fs::write(&seg, &garbage).unwrap();
        let (log, _) = Log::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(log.head(), 3);
    }

    #[test]
    fn damage_before_intact_frames_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(dir.path(), 1 << 20).unwrap();
            fill(&log, 1, 20, 1);
        }
        let seg = dir.path().join(seg_name(1));
        let mut bytes = std::fs::read(&seg).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5A;
        std::fs::write(&seg, &bytes).unwrap();
        match Log::open(dir.path(), 1 << 20) {
            Err(StoreError::Corrupted(m)) => assert!(m.contains("followed by intact"), "{m}"),
            Err(e) => panic!("expected Corrupted, got {e:?}"),
            Ok(_) => panic!("a damaged frame in the middle of the log was accepted"),
        }
    }

    #[test]
    fn a_flipped_byte_in_a_sealed_segment_is_corruption_on_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(dir.path(), 4096).unwrap();
            fill(&log, 1, 200, 1);
        }
        let seg = dir.path().join(seg_name(1));
        let mut bytes = std::fs::read(&seg).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&seg, &bytes).unwrap();
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        let all: Vec<u64> = (1..=200).collect();
        match log.read(&all) {
            Err(StoreError::Corrupted(m)) => assert!(m.contains("damaged"), "{m}"),
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }

    #[test]
    fn an_offset_table_of_version_1_is_rebuilt_compact() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(dir.path(), 4096).unwrap();
            fill(&log, 1, 300, 4);
        }
        let off = dir.path().join(off_name(1));
        let v2 = std::fs::read(&off).unwrap();
        let count = u64_at(&v2, 16);
        assert!(count > 10, "the first segment holds {count} events");
        // Entries of one or two bytes, not four.
        assert!(
            v2.len() as u64 <= OFF_HEADER + 2 * count,
            "{} bytes",
            v2.len()
        );
        // The same table as version 1 wrote it: 4-byte entries.
        let offsets = {
            let (log, _) = Log::open(dir.path(), 4096).unwrap();
            log.sealed.read().unwrap()[0].offsets.clone()
        };
        let mut entries = Vec::new();
        for o in &offsets {
            entries.extend_from_slice(&o.to_le_bytes());
        }
        let mut v1 = v2[..OFF_HEADER as usize].to_vec();
        v1[4..8].copy_from_slice(&1u32.to_le_bytes());
        v1[32..36].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
        let crc = crc32fast::hash(&v1[..36]);
        v1[36..40].copy_from_slice(&crc.to_le_bytes());
        v1.extend_from_slice(&entries);
        std::fs::write(&off, &v1).unwrap();
        {
            let (log, _) = Log::open(dir.path(), 4096).unwrap();
            check_all(&log, 300);
            assert_eq!(log.sealed.read().unwrap()[0].offsets, offsets);
        }
        assert_eq!(std::fs::read(&off).unwrap(), v2, "rewritten as version 2");
    }

    #[test]
    fn missing_or_damaged_offset_tables_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _) = Log::open(dir.path(), 4096).unwrap();
            fill(&log, 1, 300, 4);
        }
        let off = dir.path().join(off_name(1));
        std::fs::remove_file(&off).unwrap();
        {
            let (log, _) = Log::open(dir.path(), 4096).unwrap();
            check_all(&log, 300);
        }
        assert!(off.exists());
        let mut bytes = std::fs::read(&off).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x10;
        std::fs::write(&off, &bytes).unwrap();
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        check_all(&log, 300);
    }
}
