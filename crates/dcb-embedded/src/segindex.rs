//! Segment index files: the type, tag and id indexes of a sealed segment, immutable, on disk.
//!
//! When a segment is sealed, the postings of its events move out of memory into
//! `segments/BBBBBBBBBBBBBBBBBBBB.idx` (B: the segment's base, as for `.seg` and `.off`). In
//! memory stays a small summary per sealed segment: the block directory (the first key of each
//! ~1 KiB block) and a bloom filter over its keys and ids, so that a key absent from a segment
//! costs no read. The blocks of the newest sealed segments are held in memory too, as many
//! segments' as fit in `Options::index_memory_bytes` ([`keep_newest`]): loaded whole, every block
//! checked, when the store opens and when a segment is sealed. Lookups in other segments `pread`
//! the blocks they need, through the operating system's page cache.
//!
//! ```text
//! segments/BBBBBBBBBBBBBBBBBBBB.idx   (all integers little endian)
//!   header (64 bytes): "FWSX" | version u32 (1) | base u64 | count u64 | postings u64 | ids u64
//!                      | blocks_len u64 | dir_len u64 | dir_crc u32 | header_crc u32
//!                      (header_crc covers the 60 bytes before it)
//!   blocks (blocks_len bytes from byte 64): the posting blocks, then the id blocks, back to back
//!     posting block = run*, each run: kind u8 (0 type, 1 tag) | key_len varint | key
//!                     | n varint | body_len varint | body = first varint | (n - 1) deltas varint
//!                     positions relative to the base; runs sorted by (kind, key, first), at most
//!                     RUN positions each (a long list is split into several runs)
//!     id block      = (uuid 16 bytes | position relative to the base varint)*, sorted by uuid
//!   directory (dir_len bytes after the blocks; crc32 dir_crc):
//!     bloom: k u8 | words u32 | words u64*   (keys: kind byte ++ key, and b'i' ++ uuid; blocked:
//!            a key's k bits lie in one 512-bit block, see `blockfmt::Bloom`)
//!     posting blocks u32 | (len u32 | crc32 u32 | kind u8 | first u32 | key_len u16 | key)*
//!                          (the first run of each block)
//!     id blocks u32      | (len u32 | crc32 u32 | first uuid 16 bytes)*
//! ```
//!
//! The file is derived data: written atomically (temporary file, fsync, rename, fsync of the
//! directory) from the in-memory postings before the segment is sealed, checked at open (header
//! and directory checksums, sizes) and rebuilt from the segment's events, with a warning, when it
//! is missing or damaged. A block is checked (crc32) each time it is read: a damaged block found
//! after open is [`StoreError::Corrupted`], never a wrong answer.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use dcb_core::{StoreError, Uuid};

use crate::blockfmt::{Bloom, Cursor, put_varint};
use crate::index::{Index, Kind};
use crate::segment::Log;

const MAGIC: &[u8; 4] = b"FWSX";
const VERSION: u32 = 1;
const HEADER: usize = 64;
/// A block is closed once it holds this many bytes.
const BLOCK: usize = 1024;
/// Most positions in one run of a posting list.
const RUN: usize = 512;
/// Events read per step when an index file is rebuilt from its segment.
const REBUILD_CHUNK: u64 = 4096;

/// The file name of the index of the segment starting at `base`.
pub(crate) fn idx_name(base: u64) -> String {
    format!("{base:020}.idx")
}

fn corrupt(base: u64, what: &str) -> StoreError {
    StoreError::Corrupted(format!("segment index {}: {what}", idx_name(base)))
}

fn key_bytes(kind: Kind, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(kind as u8);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The bloom filter hash of an event id.
pub(crate) fn id_hash(id: &Uuid) -> u128 {
    Bloom::hash(&id_key(id))
}

fn id_key(id: &Uuid) -> [u8; 17] {
    let mut k = [b'i'; 17];
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// Whether the block read from byte `at` of the file matches its checksum: the reason when not.
fn check_block(block: &[u8], at: u64, crc: u32) -> Result<(), String> {
    if crc32fast::hash(block) == crc {
        Ok(())
    } else {
        Err(format!("block at byte {at} is damaged"))
    }
}

/// How many of the newest sealed segments have their blocks held in memory: the longest run of
/// them, from the newest back, whose blocks (`lens`, newest first) fit in `budget` bytes
/// together. The one rule for what is held, at open ([`load_all`]) and at a seal
/// ([`keep_newest`]).
pub(crate) fn held_run(lens: impl IntoIterator<Item = u64>, budget: u64) -> usize {
    let mut held = 0u64;
    lens.into_iter()
        .take_while(|&len| {
            held = held.saturating_add(len);
            held <= budget
        })
        .count()
}

/// The first run of a posting block: where it starts in (kind, key, position) order.
struct PostingBlock {
    at: u64,
    len: u32,
    crc: u32,
    kind: u8,
    first: u32,
    key: Box<str>,
}

/// The kind and the first 7 bytes of a key (zero-padded), as one integer: comparing two of them
/// orders the keys as comparing the keys does, except when they are equal (then compare keys).
fn prefix(kind: u8, key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[0] = kind;
    let n = key.len().min(7);
    b[1..1 + n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

impl PostingBlock {
    fn first_cmp(&self, kind: Kind, key: &str, rel: u32) -> std::cmp::Ordering {
        (self.kind, &*self.key, self.first).cmp(&(kind as u8, key, rel))
    }
}

struct IdBlock {
    at: u64,
    len: u32,
    crc: u32,
    first: [u8; 16],
}

/// A sealed segment's index file, for lookups: its in-memory summary and, for the newest
/// segments (see [`keep_newest`]), its blocks.
pub(crate) struct SegIndex {
    s: Arc<Summary>,
    /// The blocks region (every block checked once, when it was loaded): lookups then read no
    /// file and check no checksum. `None`: blocks are `pread` (and checked) as needed.
    blocks: Option<Box<[u8]>>,
}

/// The in-memory summary of a sealed segment's index file, and the file.
struct Summary {
    base: u64,
    count: u64,
    postings: u64,
    file: File,
    bloom: Bloom,
    pblocks: Vec<PostingBlock>,
    /// [`prefix`] of each posting block's first key, contiguous: the directory search reads
    /// these and looks at a block's key only on a tie.
    prefixes: Vec<u64>,
    iblocks: Vec<IdBlock>,
    /// Bytes of the blocks region (from byte [`HEADER`] of the file).
    blocks_len: u64,
}

/// Builds the blocks and directory of an index file from the in-memory postings of one segment.
fn encode(base: u64, count: u64, index: &Index) -> Result<Vec<u8>, StoreError> {
    let (types, tags, ids) = index.parts();
    let mut lists: Vec<(Kind, &str, &[u64])> = types
        .map(|(k, v)| (Kind::Type, k, v))
        .chain(tags.map(|(k, v)| (Kind::Tag, k, v)))
        .collect();
    lists.sort_unstable_by(|a, b| (a.0 as u8, a.1).cmp(&(b.0 as u8, b.1)));
    let mut ids: Vec<([u8; 16], u64)> = ids.map(|(id, p)| (*id.as_bytes(), p)).collect();
    ids.sort_unstable();
    let mut bloom = Bloom::with_keys(lists.len() + ids.len());
    let end = base + count;
    let rel = |p: u64| -> Result<u64, StoreError> {
        if p < base || p >= end {
            return Err(StoreError::Corrupted(format!(
                "indexed position {p} lies outside segment {base}..{end}"
            )));
        }
        Ok(p - base)
    };
    let mut blocks = Vec::new();
    let mut dir_p = Vec::new();
    let mut n_p = 0u32;
    let mut block = Vec::new();
    let mut block_first: Option<(u8, u32, &str)> = None;
    let mut postings = 0u64;
    let close_p = |block: &mut Vec<u8>,
                   first: &mut Option<(u8, u32, &str)>,
                   blocks: &mut Vec<u8>,
                   dir: &mut Vec<u8>,
                   n: &mut u32| {
        if let Some((kind, f, key)) = first.take() {
            dir.extend_from_slice(&(block.len() as u32).to_le_bytes());
            dir.extend_from_slice(&crc32fast::hash(block).to_le_bytes());
            dir.push(kind);
            dir.extend_from_slice(&f.to_le_bytes());
            dir.extend_from_slice(&(key.len() as u16).to_le_bytes());
            dir.extend_from_slice(key.as_bytes());
            blocks.extend_from_slice(block);
            block.clear();
            *n += 1;
        }
    };
    for (kind, key, list) in &lists {
        bloom.insert(&key_bytes(*kind, key));
        postings += list.len() as u64;
        for run in list.chunks(RUN) {
            let first = rel(run[0])?;
            if block_first.is_none() {
                block_first = Some((*kind as u8, first as u32, key));
            }
            block.push(*kind as u8);
            put_varint(&mut block, key.len() as u64);
            block.extend_from_slice(key.as_bytes());
            put_varint(&mut block, run.len() as u64);
            let mut body = Vec::with_capacity(run.len() * 2 + 4);
            put_varint(&mut body, first);
            for w in run.windows(2) {
                rel(w[1])?;
                put_varint(&mut body, w[1] - w[0]);
            }
            put_varint(&mut block, body.len() as u64);
            block.extend_from_slice(&body);
            if block.len() >= BLOCK {
                close_p(
                    &mut block,
                    &mut block_first,
                    &mut blocks,
                    &mut dir_p,
                    &mut n_p,
                );
            }
        }
    }
    close_p(
        &mut block,
        &mut block_first,
        &mut blocks,
        &mut dir_p,
        &mut n_p,
    );
    let mut dir_i = Vec::new();
    let mut n_i = 0u32;
    let mut first_id: Option<[u8; 16]> = None;
    let close_i = |block: &mut Vec<u8>,
                   first: &mut Option<[u8; 16]>,
                   blocks: &mut Vec<u8>,
                   dir: &mut Vec<u8>,
                   n: &mut u32| {
        if let Some(f) = first.take() {
            dir.extend_from_slice(&(block.len() as u32).to_le_bytes());
            dir.extend_from_slice(&crc32fast::hash(block).to_le_bytes());
            dir.extend_from_slice(&f);
            blocks.extend_from_slice(block);
            block.clear();
            *n += 1;
        }
    };
    for (id, p) in &ids {
        bloom.insert(&id_key(&Uuid::from_bytes(*id)));
        if first_id.is_none() {
            first_id = Some(*id);
        }
        block.extend_from_slice(id);
        put_varint(&mut block, rel(*p)?);
        if block.len() >= BLOCK {
            close_i(&mut block, &mut first_id, &mut blocks, &mut dir_i, &mut n_i);
        }
    }
    close_i(&mut block, &mut first_id, &mut blocks, &mut dir_i, &mut n_i);
    let mut dir = Vec::with_capacity(13 + bloom.words.len() * 8 + dir_p.len() + dir_i.len());
    dir.push(bloom.k);
    dir.extend_from_slice(&(bloom.words.len() as u32).to_le_bytes());
    for w in &bloom.words {
        dir.extend_from_slice(&w.to_le_bytes());
    }
    dir.extend_from_slice(&n_p.to_le_bytes());
    dir.extend_from_slice(&dir_p);
    dir.extend_from_slice(&n_i.to_le_bytes());
    dir.extend_from_slice(&dir_i);
    let mut out = Vec::with_capacity(HEADER + blocks.len() + dir.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&postings.to_le_bytes());
    out.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    out.extend_from_slice(&(blocks.len() as u64).to_le_bytes());
    out.extend_from_slice(&(dir.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&dir).to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&blocks);
    out.extend_from_slice(&dir);
    Ok(out)
}

/// Writes the index file of the segment `base..base + count` in `dir` from `index`, whose
/// postings must all lie in that segment. Atomic: temporary file, fsync, rename, fsync of `dir`.
pub(crate) fn write(dir: &Path, base: u64, count: u64, index: &Index) -> Result<(), StoreError> {
    let bytes = encode(base, count, index)?;
    let tmp = dir.join(format!("{}.tmp", idx_name(base)));
    {
        let mut f = File::create(&tmp).map_err(StoreError::storage)?;
        f.write_all(&bytes).map_err(StoreError::storage)?;
        f.sync_all().map_err(StoreError::storage)?;
    }
    std::fs::rename(&tmp, dir.join(idx_name(base))).map_err(StoreError::storage)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::storage)
}

impl SegIndex {
    /// Opens and checks the index file of the segment `base..base + count`: the reason when it
    /// cannot be used.
    pub(crate) fn open(dir: &Path, base: u64, count: u64) -> Result<SegIndex, String> {
        let file = File::open(dir.join(idx_name(base))).map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        let mut h = [0u8; HEADER];
        file.read_exact_at(&mut h, 0)
            .map_err(|_| "shorter than its header".to_string())?;
        if &h[..4] != MAGIC || h[4..8] != VERSION.to_le_bytes() {
            return Err("not a segment index of this version".into());
        }
        if crc32fast::hash(&h[..60]) != u32::from_le_bytes([h[60], h[61], h[62], h[63]]) {
            return Err("header checksum mismatch".into());
        }
        let mut c = Cursor::new(&h[8..]);
        let field = |c: &mut Cursor<'_>| c.u64().ok_or_else(|| "short header".to_string());
        let (fbase, fcount, postings, ids) = (
            field(&mut c)?,
            field(&mut c)?,
            field(&mut c)?,
            field(&mut c)?,
        );
        let (blocks_len, dir_len) = (field(&mut c)?, field(&mut c)?);
        let dir_crc = c.u32().ok_or("short header")?;
        if fbase != base || fcount != count {
            return Err("for another segment or another event count".into());
        }
        if ids > count || postings < count {
            return Err("more ids than events, or fewer postings".into());
        }
        let total = (HEADER as u64)
            .checked_add(blocks_len)
            .and_then(|x| x.checked_add(dir_len));
        if total != Some(size) || dir_len > 1 << 32 {
            return Err("wrong size".into());
        }
        let mut dirb = vec![0u8; dir_len as usize];
        file.read_exact_at(&mut dirb, HEADER as u64 + blocks_len)
            .map_err(|e| e.to_string())?;
        if crc32fast::hash(&dirb) != dir_crc {
            return Err("directory checksum mismatch".into());
        }
        let bad = || "malformed directory".to_string();
        let mut c = Cursor::new(&dirb);
        let k = c.u8().ok_or_else(bad)?;
        let nwords = c.u32().ok_or_else(bad)? as usize;
        let wb = c
            .bytes(nwords.checked_mul(8).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if nwords == 0 || !nwords.is_multiple_of(8) {
            return Err("malformed bloom filter".into());
        }
        let words = wb
            .chunks_exact(8)
            .map(|w| {
                let mut a = [0u8; 8];
                a.copy_from_slice(w);
                u64::from_le_bytes(a)
            })
            .collect();
        let mut at = HEADER as u64;
        let np = c.u32().ok_or_else(bad)?;
        let mut pblocks = Vec::with_capacity((np as usize).min(dirb.len()));
        for _ in 0..np {
            let len = c.u32().ok_or_else(bad)?;
            let crc = c.u32().ok_or_else(bad)?;
            let kind = c.u8().ok_or_else(bad)?;
            let first = c.u32().ok_or_else(bad)?;
            let klen = c.u16().ok_or_else(bad)?;
            let key = std::str::from_utf8(c.bytes(usize::from(klen)).ok_or_else(bad)?)
                .map_err(|_| bad())?;
            let b = PostingBlock {
                at,
                len,
                crc,
                kind,
                first,
                key: key.into(),
            };
            if pblocks
                .last()
                .is_some_and(|p: &PostingBlock| p.first_cmp_block(&b) != std::cmp::Ordering::Less)
            {
                return Err("posting blocks out of order".into());
            }
            at += u64::from(len);
            pblocks.push(b);
        }
        let ni = c.u32().ok_or_else(bad)?;
        let mut iblocks: Vec<IdBlock> = Vec::with_capacity((ni as usize).min(dirb.len()));
        for _ in 0..ni {
            let len = c.u32().ok_or_else(bad)?;
            let crc = c.u32().ok_or_else(bad)?;
            let mut first = [0u8; 16];
            first.copy_from_slice(c.bytes(16).ok_or_else(bad)?);
            if iblocks.last().is_some_and(|b| b.first >= first) {
                return Err("id blocks out of order".into());
            }
            iblocks.push(IdBlock {
                at,
                len,
                crc,
                first,
            });
            at += u64::from(len);
        }
        if !c.done() || at != HEADER as u64 + blocks_len {
            return Err("directory does not match the blocks".into());
        }
        Ok(SegIndex {
            s: Arc::new(Summary {
                base,
                count,
                postings,
                file,
                bloom: Bloom { k, words },
                prefixes: pblocks
                    .iter()
                    .map(|b| prefix(b.kind, b.key.as_bytes()))
                    .collect(),
                pblocks,
                iblocks,
                blocks_len,
            }),
            blocks: None,
        })
    }

    /// The same index with its blocks in memory: the blocks region read whole and every block
    /// checked. The reason when it cannot be (the file is then to be rebuilt, as at open).
    pub(crate) fn with_blocks(&self) -> Result<SegIndex, String> {
        let len = usize::try_from(self.s.blocks_len).map_err(|_| "too large".to_string())?;
        let mut b = vec![0u8; len];
        self.s
            .file
            .read_exact_at(&mut b, HEADER as u64)
            .map_err(|e| e.to_string())?;
        let extents = self
            .s
            .pblocks
            .iter()
            .map(|p| (p.at, p.len, p.crc))
            .chain(self.s.iblocks.iter().map(|i| (i.at, i.len, i.crc)));
        for (at, len, crc) in extents {
            let a = (at - HEADER as u64) as usize;
            let block = b
                .get(a..a + len as usize)
                .ok_or("a block past the blocks")?;
            check_block(block, at, crc)?;
        }
        Ok(SegIndex {
            s: self.s.clone(),
            blocks: Some(b.into_boxed_slice()),
        })
    }

    /// The same index with its blocks read from the file as needed.
    pub(crate) fn without_blocks(&self) -> SegIndex {
        SegIndex {
            s: self.s.clone(),
            blocks: None,
        }
    }

    /// Bytes of blocks this index holds in memory.
    pub(crate) fn resident(&self) -> u64 {
        self.blocks.as_ref().map_or(0, |b| b.len() as u64)
    }

    /// Bytes of blocks in the file (what [`SegIndex::with_blocks`] would hold).
    pub(crate) fn blocks_len(&self) -> u64 {
        self.s.blocks_len
    }

    /// The first position of the segment.
    pub(crate) fn base(&self) -> u64 {
        self.s.base
    }

    /// The position after the segment's last.
    pub(crate) fn end(&self) -> u64 {
        self.s.base + self.s.count
    }

    /// Type and tag postings in the file.
    pub(crate) fn postings(&self) -> u64 {
        self.s.postings
    }

    /// The block at byte `at` of the file: from memory when the blocks are held, else read
    /// and checked.
    fn read_block(&self, at: u64, len: u32, crc: u32) -> Result<Cow<'_, [u8]>, StoreError> {
        if let Some(blocks) = &self.blocks {
            let a = (at - HEADER as u64) as usize;
            return blocks
                .get(a..a + len as usize)
                .map(Cow::Borrowed)
                .ok_or_else(|| corrupt(self.s.base, &format!("no block at byte {at}")));
        }
        let mut b = vec![0u8; len as usize];
        self.s
            .file
            .read_exact_at(&mut b, at)
            .map_err(StoreError::storage)?;
        check_block(&b, at, crc).map_err(|what| corrupt(self.s.base, &what))?;
        Ok(Cow::Owned(b))
    }

    /// The positions of `key` in `lo..=hi` (absolute, inside this segment), ascending. With
    /// `cap`, only the first `cap` of them (the last `cap` when `backwards`) are sure to be
    /// there; the caller takes at most that many.
    pub(crate) fn list(
        &self,
        kind: Kind,
        key: &str,
        lo: u64,
        hi: u64,
        cap: Option<usize>,
        backwards: bool,
    ) -> Result<Vec<u64>, StoreError> {
        let (lo, hi) = (lo.max(self.s.base), hi.min(self.end().saturating_sub(1)));
        if lo > hi || !self.s.bloom.may_contain(&key_bytes(kind, key)) {
            return Ok(Vec::new());
        }
        let (rlo, rhi) = ((lo - self.s.base) as u32, (hi - self.s.base) as u32);
        let tp = prefix(kind as u8, key.as_bytes());
        // Whether block `i` starts at or before (kind, key, rel).
        let le = |i: usize, rel: u32| match self.s.prefixes[i].cmp(&tp) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => self.s.pblocks[i].first_cmp(kind, key, rel).is_le(),
        };
        let n = self.s.pblocks.len();
        // The first block in `a..b` starting past (kind, key, rel) (blocks are sorted).
        let first_past = |(mut a, mut b): (usize, usize), rel: u32| {
            while a < b {
                let mid = a + (b - a) / 2;
                if le(mid, rel) {
                    a = mid + 1;
                } else {
                    b = mid;
                }
            }
            a
        };
        // The last block starting at or before (kind, key, rlo): the key's runs in the span
        // start there or later.
        let start = first_past((0, n), rlo).saturating_sub(1);
        // They end at the first block starting past (kind, key, rhi): usually the next one, so
        // search onward from `start` in growing steps.
        let (mut lo, mut hi) = (start, start + 1);
        while hi <= n && le(hi - 1, rhi) {
            lo = hi;
            hi = start + 2 * (hi - start);
        }
        let end = first_past((lo, hi.min(n)), rhi);
        let mut per_block: Vec<Vec<u64>> = Vec::new();
        let mut got = 0usize;
        let order: Box<dyn Iterator<Item = usize>> = if backwards {
            Box::new((start..end).rev())
        } else {
            Box::new(start..end)
        };
        for i in order {
            let b = &self.s.pblocks[i];
            let bytes = self.read_block(b.at, b.len, b.crc)?;
            let found = self.runs_of(&bytes, kind, key, rlo, rhi)?;
            got += found.len();
            per_block.push(found);
            if cap.is_some_and(|c| got >= c) {
                break;
            }
        }
        if backwards {
            per_block.reverse();
        }
        Ok(per_block.concat())
    }

    /// The positions of `key` in `rlo..=rhi` (relative) found in one posting block, absolute.
    fn runs_of(
        &self,
        block: &[u8],
        kind: Kind,
        key: &str,
        rlo: u32,
        rhi: u32,
    ) -> Result<Vec<u64>, StoreError> {
        let bad = || corrupt(self.s.base, "malformed posting block");
        let mut c = Cursor::new(block);
        let mut out = Vec::new();
        while !c.done() {
            let k = c.u8().ok_or_else(bad)?;
            let klen = c.varint().ok_or_else(bad)?;
            let kb = c
                .bytes(usize::try_from(klen).map_err(|_| bad())?)
                .ok_or_else(bad)?;
            // Runs are sorted: past the key, nothing more of it in this block.
            let order = (k, kb).cmp(&(kind as u8, key.as_bytes()));
            if order == std::cmp::Ordering::Greater {
                break;
            }
            let n = c.varint().ok_or_else(bad)?;
            let len = usize::try_from(c.varint().ok_or_else(bad)?).map_err(|_| bad())?;
            let body = c.bytes(len).ok_or_else(bad)?;
            if order == std::cmp::Ordering::Less {
                // Another key's run: skipped whole.
                continue;
            }
            let mut r = Cursor::new(body);
            let mut p = r.varint().ok_or_else(bad)?;
            for i in 0..n {
                if i > 0 {
                    let d = r.varint().ok_or_else(bad)?;
                    if d == 0 {
                        return Err(bad());
                    }
                    p = p.checked_add(d).ok_or_else(bad)?;
                }
                if p >= self.s.count {
                    return Err(bad());
                }
                if p > u64::from(rhi) {
                    break;
                }
                if p >= u64::from(rlo) {
                    out.push(self.s.base + p);
                }
            }
        }
        Ok(out)
    }

    /// The position of the event with id `id` in this segment, if any.
    /// `hash` is [`id_hash`] of `id`, computed once for all the segments asked.
    pub(crate) fn id(&self, id: &Uuid, hash: u128) -> Result<Option<u64>, StoreError> {
        if !self.s.bloom.may_contain_hash(hash) {
            return Ok(None);
        }
        let want = id.as_bytes();
        let i = self.s.iblocks.partition_point(|b| &b.first <= want);
        let Some(b) = i.checked_sub(1).and_then(|i| self.s.iblocks.get(i)) else {
            return Ok(None);
        };
        let bytes = self.read_block(b.at, b.len, b.crc)?;
        let bad = || corrupt(self.s.base, "malformed id block");
        let mut c = Cursor::new(&bytes);
        while !c.done() {
            let u = c.bytes(16).ok_or_else(bad)?;
            let p = c.varint().ok_or_else(bad)?;
            if p >= self.s.count {
                return Err(bad());
            }
            if u == want {
                return Ok(Some(self.s.base + p));
            }
        }
        Ok(None)
    }
}

impl PostingBlock {
    fn first_cmp_block(&self, other: &PostingBlock) -> std::cmp::Ordering {
        (self.kind, &*self.key, self.first).cmp(&(other.kind, &*other.key, other.first))
    }
}

/// The in-memory index of the events of the segment `base..base + count`, read from the log.
fn index_segment(log: &Log, base: u64, count: u64) -> Result<Index, StoreError> {
    let mut ix = Index::continuing_after(base - 1);
    let end = base + count;
    let mut p = base;
    while p < end {
        let n = (end - p).min(REBUILD_CHUNK);
        let positions: Vec<u64> = (p..p + n).collect();
        let records = log.read(&positions)?;
        for (&q, r) in positions.iter().zip(&records) {
            let k = crate::writer::decode_keys(q, r)?;
            ix.add_keys(q, k.event_type, k.tags, k.id);
        }
        p += n;
    }
    Ok(ix)
}

/// The summaries of every sealed segment's index file in `dir`, in position order: each file
/// checked, and rebuilt from its segment when missing or damaged. A stale file of the active
/// segment (from a seal that did not complete) is removed. The newest segments' blocks are
/// loaded into memory, `budget` bytes at most (see [`keep_newest`]); a damaged block found
/// while loading them is a damaged file, rebuilt too.
pub(crate) fn load_all(
    dir: &Path,
    log: &Log,
    budget: u64,
) -> Result<Vec<Arc<SegIndex>>, StoreError> {
    let stale = dir.join(idx_name(log.active_base()));
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(StoreError::storage)?;
    }
    let rebuild = |base: u64, count: u64, reason: &str| -> Result<SegIndex, StoreError> {
        tracing::warn!(segment = %idx_name(base), %reason, "segment index unusable; rebuilding it from the segment");
        let ix = index_segment(log, base, count)?;
        write(dir, base, count, &ix)?;
        SegIndex::open(dir, base, count).map_err(|r| corrupt(base, &r))
    };
    let mut out = Vec::new();
    for (base, count) in log.sealed_segments() {
        let seg = match SegIndex::open(dir, base, count) {
            Ok(s) => s,
            Err(reason) => rebuild(base, count, &reason)?,
        };
        out.push(seg);
    }
    let held = held_run(out.iter().rev().map(SegIndex::blocks_len), budget);
    for seg in out.iter_mut().rev().take(held) {
        *seg = match seg.with_blocks() {
            Ok(s) => s,
            Err(reason) => {
                let (base, count) = (seg.base(), seg.end() - seg.base());
                rebuild(base, count, &reason)?
                    .with_blocks()
                    .map_err(|r| corrupt(base, &r))?
            }
        };
    }
    Ok(out.into_iter().map(Arc::new).collect())
}

/// Lets go of the blocks of the sealed segments (`sealed`, in position order) past the
/// newest ones whose blocks fit in `budget` bytes together: the blocks held in memory are
/// always those of a run of the newest segments, at most `budget` bytes. Readers that hold an
/// index let go of its blocks when they are done with it.
pub(crate) fn keep_newest(sealed: &mut [Arc<SegIndex>], budget: u64) {
    let held = held_run(sealed.iter().rev().map(|s| s.blocks_len()), budget);
    for seg in sealed.iter_mut().rev().skip(held) {
        if seg.resident() > 0 {
            *seg = Arc::new(seg.without_blocks());
        }
    }
}

/// Bytes of index blocks `sealed` holds in memory.
pub(crate) fn resident(sealed: &[Arc<SegIndex>]) -> u64 {
    sealed.iter().map(|s| s.resident()).sum()
}

#[cfg(test)]
mod tests;
