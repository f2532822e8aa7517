//! The read path of the segment log: a read's records planned by segment, fetched in runs of
//! adjacent records (one `pread` each, split among the read pool's threads when there are
//! many), checked, and handed out as slices of the buffers they were read into.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use dcb_core::StoreError;

use super::{
    Check, FAN_OUT_RUNS, GAP, Log, MAX_RUN, RECORD_HEADER, Sealed, corrupt, io, seg_name, u32_at,
};
use crate::readpool::ReadPool;

/// One segment's part of a read, ready to fetch without holding any lock.
struct Part {
    file: Arc<FileRef>,
    base: u64,
    /// How the segment's records are checked.
    check: Check,
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

/// The index of the sealed segment that would hold position `p`: the last one whose base is at
/// most `p` (whether it holds `p` is the caller's check against its count).
fn holder(sealed: &[Arc<Sealed>], p: u64) -> usize {
    match sealed.binary_search_by(|s| s.base.cmp(&p)) {
        Ok(k) => k,
        Err(k) => k.saturating_sub(1),
    }
}

impl Log {
    /// Groups `positions` by segment and finds each record's byte extent (`sorted`: the
    /// positions are ascending already, as a scan's are).
    fn plan(&self, positions: &[u64], sorted: bool) -> Result<Vec<Part>, StoreError> {
        let mut order: Vec<(u64, usize)> = positions.iter().copied().zip(0..).collect();
        if !sorted {
            order.sort_unstable();
        }
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
                    check: active.check,
                    items,
                });
                break;
            }
            let seg = sealed
                .get(holder(&sealed, p))
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
                check: seg.check,
                file: Arc::new(FileRef::Sealed(seg)),
                items,
            });
            i = j;
        }
        Ok(parts)
    }

    /// How many of `positions`, from the first and in the order given, have records that
    /// together take at most `budget` bytes: at least one (a record larger than `budget` is a
    /// step of its own). A position the log does not hold ends the count there; reading it
    /// reports the error.
    pub(crate) fn within_bytes(&self, positions: &[u64], budget: u64) -> usize {
        let sealed = self.sealed.read().unwrap_or_else(|p| p.into_inner());
        let active = self.active();
        // The segment holding `p`: its base, offsets and the end of its last record.
        let find = |p: u64| -> Option<(u64, &[u32], u64)> {
            let seg = if p >= active.base {
                (active.base, &active.offsets[..], active.len)
            } else {
                sealed
                    .get(holder(&sealed, p))
                    .map(|s| (s.base, &s.offsets[..], s.len))?
            };
            (p >= seg.0 && p - seg.0 < seg.1.len() as u64).then_some(seg)
        };
        // The byte extent of the records lo..=hi of one segment.
        let extent = |(base, offsets, len): (u64, &[u32], u64), lo: u64, hi: u64| {
            let start = offsets
                .get((lo - base) as usize)
                .map_or(len, |&o| u64::from(o));
            let end = offsets
                .get((hi - base) as usize + 1)
                .map_or(len, |&o| u64::from(o));
            end.saturating_sub(start)
        };
        // A scan's step: consecutive positions, mostly of one segment, summed at once.
        if let (Some(&a), Some(&b)) = (positions.first(), positions.last()) {
            let (lo, hi) = (a.min(b), a.max(b));
            if hi - lo + 1 == positions.len() as u64
                && let (Some(first), Some(last)) = (find(lo), find(hi))
                && first.0 == last.0
                && extent(first, lo, hi) <= budget
            {
                return positions.len();
            }
        }
        let mut seg: Option<(u64, &[u32], u64)> = None;
        let mut total = 0u64;
        for (k, &p) in positions.iter().enumerate() {
            let held = |s: &(u64, &[u32], u64)| p >= s.0 && p - s.0 < s.1.len() as u64;
            if !seg.as_ref().is_some_and(held) {
                seg = find(p);
            }
            let Some(s) = seg else {
                return k.max(1);
            };
            total += extent(s, p, p);
            if total > budget {
                return k.max(1);
            }
        }
        positions.len()
    }

    /// The records at `positions` (any order; each at most once), in the same order. Records
    /// closer together than [`GAP`] are fetched with one read; all the reads of a call land in
    /// one buffer, and the records are handed out as slices of it.
    pub(crate) fn read(&self, positions: &[u64]) -> Result<Vec<Bytes>, StoreError> {
        Ok(self.read_spans(positions, None)?.into_records())
    }

    /// As [`Log::read`], with the `pread`s of a read whose records lie in at least
    /// [`FAN_OUT_RUNS`] separate places split into groups (one buffer each) fetched in parallel
    /// by the caller and `pool`'s threads; the records are left in their buffers (see
    /// [`Spans`]).
    pub(crate) fn read_spans(
        &self,
        positions: &[u64],
        pool: Option<&ReadPool>,
    ) -> Result<Spans, StoreError> {
        let sorted = positions.is_sorted();
        let parts = self.plan(positions, sorted)?;
        // Plan the runs first: records close together share one `pread`.
        let mut runs = Vec::new();
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
                runs.push(Run {
                    part: k,
                    first: i,
                    last: j,
                    start,
                    end,
                });
                i = j + 1;
            }
        }
        let groups = match pool {
            Some(pool) if runs.len() >= FAN_OUT_RUNS => {
                pool.width().min(runs.len() / (FAN_OUT_RUNS / 2))
            }
            _ => 1,
        };
        // Group g holds runs bounds[g]..bounds[g + 1].
        let bounds: Vec<usize> = (0..=groups).map(|g| g * runs.len() / groups).collect();
        let (parts, runs) = (Arc::new(parts), Arc::new(runs));
        let buffers: Vec<Bytes> = match pool {
            Some(pool) if groups > 1 => {
                let (p, r, b) = (parts.clone(), runs.clone(), bounds.clone());
                pool.fan_out(groups, move |g| fetch(&p, &r[b[g]..b[g + 1]]))
                    .into_iter()
                    .map(crate::readpool::joined)
                    .collect::<Result<_, _>>()?
            }
            _ => vec![fetch(&parts, &runs)?],
        };
        // Ascending positions come out in the order asked for: their spans are pushed, not
        // placed into a list cleared first.
        let mut spans = if sorted {
            Vec::with_capacity(positions.len())
        } else {
            vec![(0, 0..0); positions.len()]
        };
        for (g, buf) in buffers.iter().enumerate() {
            let mut at = 0usize;
            for run in &runs[bounds[g]..bounds[g + 1]] {
                let part = &parts[run.part];
                for &(idx, p, a, b) in &part.items[run.first..=run.last] {
                    let a = at + (a - run.start) as usize;
                    let b = at + (b - run.start) as usize;
                    let span = (
                        g,
                        record_in(buf, a, b, p, part.check).ok_or_else(|| {
                            corrupt(format!(
                                "event at position {p}: record damaged in segment {}",
                                seg_name(part.base)
                            ))
                        })?,
                    );
                    if sorted {
                        debug_assert_eq!(spans.len(), idx, "records come out in order");
                        spans.push(span);
                    } else {
                        spans[idx] = span;
                    }
                }
                at += (run.end - run.start) as usize;
            }
        }
        Ok(Spans { buffers, spans })
    }
}

/// Records fetched and checked, left in the buffers they were read into: record `i` is bytes
/// `spans[i].1` of `buffers[spans[i].0]`. Slicing a record out (a handle of its own, with its
/// buffer's reference count raised) is left to the thread that decodes it, which then alone
/// touches that count.
#[derive(Default)]
pub(crate) struct Spans {
    pub(crate) buffers: Vec<Bytes>,
    pub(crate) spans: Vec<(usize, std::ops::Range<usize>)>,
}

impl Spans {
    /// Each record as a slice of its buffer.
    pub(crate) fn into_records(self) -> Vec<Bytes> {
        let Spans { buffers, spans } = self;
        spans
            .into_iter()
            .map(|(b, r)| buffers.get(b).map_or_else(Bytes::new, |buf| buf.slice(r)))
            .collect()
    }
}

/// A fetched range of one part's file: items `first..=last` of part `part`, bytes
/// `start..end`.
struct Run {
    part: usize,
    first: usize,
    last: usize,
    start: u64,
    end: u64,
}

/// Reads `runs` into one buffer, back to back. One run (a stretch of adjacent records, as in a
/// scan) goes into a buffer that is not zeroed first; several runs (scattered records, as in a
/// read by tag) share one zeroed buffer, whose zeroing costs less than a buffer of each.
fn fetch(parts: &[Part], runs: &[Run]) -> Result<Bytes, StoreError> {
    if let [r] = runs {
        return read_run(
            parts[r.part].file.file(),
            r.start,
            (r.end - r.start) as usize,
        );
    }
    let total: usize = runs.iter().map(|r| (r.end - r.start) as usize).sum();
    let mut buf = vec![0u8; total];
    let mut at = 0usize;
    for r in runs {
        let len = (r.end - r.start) as usize;
        parts[r.part]
            .file
            .file()
            .read_exact_at(&mut buf[at..at + len], r.start)
            .map_err(io)?;
        at += len;
    }
    Ok(Bytes::from(buf))
}

/// The `len` bytes of `file` at `at`, read into a buffer that is not zeroed first (a scan
/// would spend as long clearing its buffers as the kernel spends filling them).
pub(super) fn read_run(file: &File, at: u64, len: usize) -> Result<Bytes, StoreError> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        // The spare capacity is at least what is missing; a longer read past the run (where
        // the allocator gave more) is cut off below.
        let from = at + buf.len() as u64;
        let n = match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), from) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io(e.into())),
        };
        if n == 0 {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

/// The range of the checked record at `buf[a..b]` (record header included; `b` may lie past
/// its end; checked by `check`), without its header.
fn record_in(
    buf: &[u8],
    a: usize,
    b: usize,
    position: u64,
    check: Check,
) -> Option<std::ops::Range<usize>> {
    let h = buf.get(a..a + RECORD_HEADER)?;
    let len = u32_at(h, 0) as usize;
    let crc = u32_at(h, 4);
    let s = a + RECORD_HEADER;
    if s + len > b {
        return None;
    }
    (check.record(position, buf.get(s..s + len)?) == crc).then_some(s..s + len)
}
