//! The offset tables of sealed segments (`.off` files): written at a seal, checked at open.

use super::*;
use crate::blockfmt::{Cursor, put_varint};

pub(super) fn write_off(
    dir: &Path,
    base: u64,
    offsets: &[u32],
    len: u64,
) -> Result<(), StoreError> {
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
pub(super) fn check_off(
    off: &File,
    base: u64,
    count: u64,
    file_len: u64,
) -> Result<(u64, Vec<u32>), String> {
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
