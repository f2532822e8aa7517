//! The segment log: the events, in append-only files of their own under `segments/`.
//!
//! ```text
//! segments/BBBBBBBBBBBBBBBBBBBB.seg   events from position B (20 decimal digits) on
//!   header  "FWSG" | version u32 LE (2) | base u64 LE | crc32 of the 16 bytes before u32 LE | 0u32
//!   frames, one per commit group, back to back:
//!     "FWFR" | body_len u32 | first u64 | count u32 | body_crc u32 | header_crc u32   (28 bytes,
//!              little endian; header_crc covers the 24 bytes before it, body_crc (crc32) the body)
//!     body = tracking count u16 | (name_len u8 | consumer | position 12 bytes BE)*
//!            | record* (count of them: len u32 | check u32 | bytes)
//!     check = the low 32 bits of xxh3_64(bytes) ^ xxh3_64(position u64 LE)   (version 2)
//!           = crc32(position u64 LE ++ bytes)                                 (version 1)
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
//! Each record is checked each time it is read, so its check is a fast hash (xxh3: 2.5-3x faster
//! than CRC-32 on records of up to 128 bytes, a little faster up to about 1 KiB, slower on records
//! of several KiB); the frame's CRC-32 over its whole body, checked at open and whenever a segment
//! is scanned, is the one with CRC-32's guarantees for short bursts of damage. Segments of version
//! 1 (written before, with CRC-32 record checks) are read as they are: an active segment of version
//! 1 is appended to as version 1 until it is sealed, and every segment started after it is of
//! version 2. A segment of an unknown version (from a newer build) refuses to open.
//!
//! The active segment's file is extended 4 MiB at a time with `fallocate` (its size set, its
//! space allocated), so that an append's `fdatasync` does not also commit a new file size; the
//! space not written yet reads as zeros. It is cut to its frames when the segment is sealed and
//! when the log is closed; after a crash the zero tail stays, and the next appends go into it.
//!
//! At open the active (last) segment is scanned frame by frame. Zeros from the end of the last
//! frame to the end of the file are that allocated space. A damaged or incomplete frame with no
//! intact frame after it is a torn write that was never acknowledged (each frame is synced
//! before the next is written) and is truncated (the zeros after it with it); a damaged frame
//! followed by intact ones, or any damage in a sealed segment, is [`StoreError::Corrupted`]. A
//! sealed segment's `.off` file is checked at open (header and checksum) and rebuilt from the
//! segment when it is missing or damaged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock, RwLockReadGuard};

use bytes::Bytes;
use dcb_core::{Position, StoreError};

mod frame;
mod offsets;
mod read;

use frame::{encode_frame, intact_frame_after, scan};
use offsets::{check_off, write_off};
pub(crate) use read::Spans;

/// The directory of the segment files, inside the data directory.
pub const DIR: &str = "segments";
/// The default size at which the active segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
/// The largest segment size allowed (record offsets are 32-bit).
const MAX_SEGMENT_BYTES: u64 = 1 << 30;

const SEG_MAGIC: &[u8; 4] = b"FWSG";
const OFF_MAGIC: &[u8; 4] = b"FWOF";
const FRAME_MAGIC: &[u8; 4] = b"FWFR";
/// The version of the segments this build starts ([`Check::Xxh3`] record checks); it reads
/// version 1 too ([`Check::Crc32`]).
const VERSION: u32 = 2;
/// Version of the `.off` files (1: 4-byte entries, rebuilt from the segment when met).
const OFF_VERSION: u32 = 2;
const SEG_HEADER: u64 = 24;
const FRAME_HEADER: usize = 28;
const OFF_HEADER: u64 = 40;
const RECORD_HEADER: usize = 8;
/// Records closer together than this are fetched with one read (copying a page costs less than
/// a second read). It bounds a read's buffer too: at most this much beside each record, so a
/// step of a read holds at most its records (4 MiB, `read::STEP_BYTES`) and 4 KiB beside each.
const GAP: u64 = 4 * 1024;
/// Most bytes one coalesced read covers.
const MAX_RUN: u64 = 1 << 20;
/// The active segment's file is extended this much at a time, its space allocated and its size
/// set (`fallocate`), so that an append's `fdatasync` does not also have to commit a new file
/// size (on ext4 that makes it about 1.2-1.4x faster). The unwritten tail reads as zeros: at
/// open it is told from a torn write by being all zeros, and a segment is cut to its frames when
/// it is sealed and when the log is closed.
const PREALLOC: u64 = 4 * 1024 * 1024;

/// Separate places (runs) a read step's records must lie in before its `pread`s are split
/// among the read pool's threads, each of which then takes at least half this many: below it,
/// the hand-off costs more than it saves. Waking a read thread took about as long as 50 `pread`s
/// of scattered records here: a read by tag of 100 events was 1.1-1.3x faster fetched by its own
/// thread than split in two, one of 200 or more faster split (1M and 10M events, 2026-12-02).
pub(crate) const FAN_OUT_RUNS: usize = 128;

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

/// How the records of a segment are checked, by the segment's format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    /// Version 1: CRC-32 of the position (u64 LE) followed by the record's bytes.
    Crc32,
    /// Version 2: the low 32 bits of XXH3-64 of the record's bytes XOR XXH3-64 of the position
    /// (u64 LE). Not XXH3 seeded with the position: on records over 240 bytes that derives a
    /// secret from the seed for each record, which made the check slower than CRC-32's.
    Xxh3,
}

impl Check {
    /// The check of segments this build starts.
    const CURRENT: Check = Check::Xxh3;

    /// The check of segment format `version`, `None` when this build does not know it.
    fn of_version(version: u32) -> Option<Check> {
        match version {
            1 => Some(Check::Crc32),
            VERSION => Some(Check::Xxh3),
            _ => None,
        }
    }

    /// The segment format version whose records are checked this way.
    fn version(self) -> u32 {
        match self {
            Check::Crc32 => 1,
            Check::Xxh3 => VERSION,
        }
    }

    /// The checksum of the record at `position` whose bytes are `bytes`.
    #[inline]
    fn record(self, position: u64, bytes: &[u8]) -> u32 {
        match self {
            Check::Xxh3 => {
                use xxhash_rust::xxh3::xxh3_64;
                (xxh3_64(bytes) ^ xxh3_64(&position.to_le_bytes())) as u32
            }
            Check::Crc32 => {
                // `Hasher::new` looks up the CPU's features on every call, which costs about as
                // much as hashing a short record: a copy of one made once does not.
                static NEW: LazyLock<crc32fast::Hasher> = LazyLock::new(crc32fast::Hasher::new);
                let mut h = NEW.clone();
                h.update(&position.to_le_bytes());
                h.update(bytes);
                h.finalize()
            }
        }
    }
}

fn seg_name(base: u64) -> String {
    format!("{base:020}.seg")
}

fn off_name(base: u64) -> String {
    format!("{base:020}.off")
}

/// The header of the segment from `base` of format `version`.
fn segment_header(base: u64, version: u32) -> [u8; SEG_HEADER as usize] {
    let mut h = [0u8; SEG_HEADER as usize];
    h[..4].copy_from_slice(SEG_MAGIC);
    h[4..8].copy_from_slice(&version.to_le_bytes());
    h[8..16].copy_from_slice(&base.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

fn read_exact(file: &File, at: u64, len: usize) -> Result<Vec<u8>, StoreError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at).map_err(io)?;
    Ok(buf)
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
    /// How its records are checked (its format version).
    check: Check,
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
    /// The end of its last frame.
    len: u64,
    /// The file's size: `len`, or more when space was allocated ahead ([`PREALLOC`]).
    allocated: u64,
    /// How its records are checked (its format version, kept until it is sealed).
    check: Check,
}

/// The segment log of a data directory.
pub(crate) struct Log {
    dir: PathBuf,
    cap: u64,
    sealed: RwLock<Vec<Arc<Sealed>>>,
    active: RwLock<Active>,
    failed: AtomicBool,
    /// Whether the file system allocates space ahead (cleared at the first refusal).
    prealloc: AtomicBool,
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

/// The record check of the segment from `base` whose file of `len` bytes is `file`, by its
/// header: `None` when the header is not intact (too short, or not this segment's header); an
/// intact header of a version this build does not read is an error.
fn header_check(file: &File, base: u64, len: u64) -> Result<Option<Check>, StoreError> {
    if len < SEG_HEADER {
        return Ok(None);
    }
    let h = read_exact(file, 0, SEG_HEADER as usize)?;
    let version = u32_at(&h, 4);
    if h != segment_header(base, version) {
        return Ok(None);
    }
    Check::of_version(version).map(Some).ok_or_else(|| {
        corrupt(format!(
            "segment {}: format version {version}, this build reads versions 1 and {VERSION}",
            seg_name(base)
        ))
    })
}

fn create_segment(dir: &Path, base: u64, check: Check) -> Result<File, StoreError> {
    let path = dir.join(seg_name(base));
    let mut file = open_noatime(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true),
        &path,
    )?;
    file.write_all(&segment_header(base, check.version()))
        .map_err(io)?;
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
            if header_check(&file, last, len)?.is_some() {
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
            create_segment(dir, 1, Check::CURRENT)?;
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
        let Some(check) = header_check(&file, base, file_len)? else {
            return Err(corrupt(format!(
                "segment {}: damaged header",
                seg_name(base)
            )));
        };
        // The active segment's offset table lives in memory; a leftover file is stale.
        let stale = dir.join(off_name(base));
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(io)?;
        }
        let scanned = scan(&file, base, file_len, check)?;
        // Zeros to the end of the file are space allocated ahead and never written, not a torn
        // write.
        let free_tail = match &scanned.damaged_at {
            Some((at, _)) if scanned.len < file_len => zeros(&file, *at, file_len)?,
            _ => false,
        };
        let allocated = if free_tail { file_len } else { scanned.len };
        if let Some((at, why)) = scanned.damaged_at.as_ref().filter(|_| allocated < file_len) {
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
                allocated,
                check,
            }),
            failed: AtomicBool::new(false),
            prealloc: AtomicBool::new(true),
        };
        Ok((log, scanned.tracking))
    }

    fn open_sealed(dir: &Path, base: u64, count: u64) -> Result<Sealed, StoreError> {
        let (file, file_len) = open_segment(dir, base)?;
        let Some(check) = header_check(&file, base, file_len)? else {
            return Err(corrupt(format!(
                "segment {}: damaged header",
                seg_name(base)
            )));
        };
        let off_path = dir.join(off_name(base));
        let checked = match File::open(&off_path) {
            Ok(off) => check_off(&off, base, count, file_len),
            Err(e) => Err(e.to_string()),
        };
        let (len, offsets) = match checked {
            Ok(x) => x,
            Err(reason) => {
                tracing::warn!(segment = %seg_name(base), %reason, "offset table unusable; rebuilding it from the segment");
                let s = scan(&file, base, file_len, check)?;
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
            check,
        })
    }

    fn active(&self) -> RwLockReadGuard<'_, Active> {
        self.active.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a segment of the version this build starts is among the log's.
    pub(crate) fn holds_current_segments(&self) -> bool {
        self.active().check == Check::CURRENT
            || self
                .sealed
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|s| s.check == Check::CURRENT)
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
        let (file, at, first, allocated, check) = {
            let a = self.active();
            (
                a.file.clone(),
                a.len,
                a.base + a.offsets.len() as u64,
                a.allocated,
                a.check,
            )
        };
        let (frame, rel) = encode_frame(first, records, tracking, check);
        let end = at + frame.len() as u64;
        if u32::try_from(end).is_err() {
            return Err(StoreError::storage_msg("segment exceeds 4 GiB"));
        }
        let allocated = self.allocate(&file, allocated, end);
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
        a.allocated = allocated.max(end);
        Ok(out)
    }

    /// Makes room up to `end` in `file`, whose size is `allocated`, by allocating the next
    /// [`PREALLOC`] bytes when `end` lies past it; returns the file's size. A file system that
    /// refuses is not asked again: the file then grows with each append.
    fn allocate(&self, file: &File, allocated: u64, end: u64) -> u64 {
        if end <= allocated || !self.prealloc.load(Ordering::Relaxed) {
            return allocated;
        }
        let to = (end / PREALLOC + 1) * PREALLOC;
        match rustix::fs::fallocate(
            file,
            rustix::fs::FallocateFlags::empty(),
            allocated,
            to - allocated,
        ) {
            Ok(()) => to,
            Err(e) => {
                tracing::debug!(error = %e, "the file system does not allocate ahead; segments grow per append");
                self.prealloc.store(false, Ordering::Relaxed);
                allocated
            }
        }
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
        let (base, offsets, len, check) = {
            let a = self.active();
            trim(&a)?;
            (a.base, a.offsets.clone(), a.len, a.check)
        };
        if offsets.is_empty() {
            return Ok(());
        }
        write_off(&self.dir, base, &offsets, len)?;
        let next = base + offsets.len() as u64;
        let file = create_segment(&self.dir, next, Check::CURRENT)?;
        let (seg, _) = open_segment(&self.dir, base)?;
        let mut sealed = self.sealed.write().unwrap_or_else(|p| p.into_inner());
        let mut a = self.active.write().unwrap_or_else(|p| p.into_inner());
        sealed.push(Arc::new(Sealed {
            base,
            len,
            file: seg,
            offsets,
            check,
        }));
        *a = Active {
            base: next,
            file: Arc::new(file),
            offsets: Vec::new(),
            len: SEG_HEADER,
            allocated: SEG_HEADER,
            check: Check::CURRENT,
        };
        Ok(())
    }
}

/// What [`inspect`] found in a directory of segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    /// The last position the log holds (0: none).
    pub head: u64,
    /// The records read back, each checked.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Opens the segment log in `dir` as a store's open does (a torn tail cut off, damage anywhere
/// else refused) and reads every record back, checked: what it holds, or the error. Untrusted
/// bytes get [`StoreError::Corrupted`], never a panic; the fuzz target `segment` drives it.
pub fn inspect(dir: &Path) -> Result<Inspected, StoreError> {
    let (log, _) = Log::open(dir, DEFAULT_SEGMENT_BYTES)?;
    let head = log.head();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut from = 1u64;
    while from <= head {
        let to = head.min(from + 1023);
        let positions: Vec<u64> = (from..=to).collect();
        for r in log.read(&positions)? {
            records += 1;
            bytes += r.len() as u64;
        }
        from = to + 1;
    }
    Ok(Inspected {
        head,
        records,
        bytes,
    })
}

/// The bytes of a segment file of format `version` holding positions `base..`, one frame per
/// list of `frames`, every checksum right (records checked as `version` checks them; a version
/// this build does not read is written with the current check): what tests and the fuzz
/// target start from.
pub fn segment_bytes(base: u64, version: u32, frames: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let check = Check::of_version(version).unwrap_or(Check::CURRENT);
    let mut out = segment_header(base, version).to_vec();
    let mut first = base;
    for records in frames {
        out.extend_from_slice(&encode_frame(first, records, &[], check).0);
        first += records.len() as u64;
    }
    out
}

/// The name of the segment file holding positions from `base` on.
pub fn file_name(base: u64) -> String {
    seg_name(base)
}

impl Drop for Log {
    fn drop(&mut self) {
        // A log that failed a write is left as it is (its next open decides what is in it).
        if !self.failed.load(Ordering::SeqCst) {
            let a = self.active.get_mut().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = trim(a) {
                tracing::warn!(error = %e, "could not give back the space allocated ahead");
            }
        }
    }
}

/// Cuts the active segment's file to its frames (space allocated ahead is given back).
fn trim(a: &Active) -> Result<(), StoreError> {
    if a.allocated > a.len {
        a.file.set_len(a.len).map_err(io)?;
        a.file.sync_all().map_err(io)?;
    }
    Ok(())
}

/// Whether `file` holds only zero bytes from `from` to `to`.
fn zeros(file: &File, from: u64, to: u64) -> Result<bool, StoreError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at).map_err(io)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
