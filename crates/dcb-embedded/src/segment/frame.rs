//! Frames, the unit of the segment log: encoding a commit group, parsing and checking frame
//! headers and bodies, and scanning a segment frame by frame (at open, and to rebuild an offset
//! table).

use super::*;

/// Encodes one frame: the records of positions `first..` (checked by `check`, the segment's)
/// and the tracking updates. Returns the bytes and the offset of each record inside them.
pub(super) fn encode_frame(
    first: u64,
    records: &[Vec<u8>],
    tracking: &[(String, Position)],
    check: Check,
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
        out.extend_from_slice(&check.record(first + i as u64, r).to_le_bytes());
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
pub(super) struct FrameHeader {
    pub(super) body_len: u64,
    pub(super) first: u64,
    pub(super) count: u64,
    pub(super) body_crc: u32,
}

pub(super) fn parse_header(h: &[u8]) -> Option<FrameHeader> {
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

/// Parses a checked frame body, whose records are checked by `check`: the tracking updates and
/// each record's offset in the body.
pub(super) fn parse_body(
    first: u64,
    count: u64,
    body: &[u8],
    check: Check,
) -> Result<(Moves, Vec<u32>), String> {
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
        if check.record(first + i, data) != crc {
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
pub(super) struct Scanned {
    /// Offsets of the records in the file.
    pub(super) offsets: Vec<u32>,
    /// The end of the last intact frame.
    pub(super) len: u64,
    pub(super) tracking: Vec<FrameTracking>,
    /// Where the first damaged or incomplete frame starts, if any.
    pub(super) damaged_at: Option<(u64, String)>,
}

/// Scans the frames of a segment from its header on (its records checked by `check`).
pub(super) fn scan(
    file: &File,
    base: u64,
    file_len: u64,
    check: Check,
) -> Result<Scanned, StoreError> {
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
        let (tracking, offsets) = match parse_body(h.first, h.count, &body, check) {
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
pub(super) fn intact_frame_after(
    file: &File,
    from: u64,
    file_len: u64,
) -> Result<bool, StoreError> {
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
