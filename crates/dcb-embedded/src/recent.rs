//! The most recently committed event records, by position, so that reads of recent events (what
//! commands mostly read) skip the segment files. The records are slices of the frame buffers the
//! writer wrote (no copy). Entries are contiguous positions; the oldest are dropped beyond the
//! byte budget.

use std::collections::VecDeque;

use bytes::Bytes;

#[cfg(test)]
use crate::index::Span;

/// The cache: records of positions `base..base + entries.len()`.
#[derive(Default)]
pub(crate) struct Recent {
    base: u64,
    entries: VecDeque<Bytes>,
    bytes: usize,
    cap: usize,
}

impl Recent {
    /// An empty cache holding at most `cap` bytes of records (0: off).
    pub(crate) fn with_cap(cap: usize) -> Recent {
        Recent {
            cap,
            ..Recent::default()
        }
    }

    /// Whether any of `positions` may be held here (false when all lie before the cache).
    pub(crate) fn may_hold(&self, positions: &[u64]) -> bool {
        !self.entries.is_empty() && positions.iter().any(|&p| p >= self.base)
    }

    /// The record at `position`, when it is held here.
    pub(crate) fn get(&self, position: u64) -> Option<Bytes> {
        let i = usize::try_from(position.checked_sub(self.base)?).ok()?;
        self.entries.get(i).cloned()
    }

    /// Positions `from..=to` (or downwards) held here, at most `max`, in the span's direction.
    #[cfg(test)]
    fn span(&self, span: Span, max: usize) -> Vec<(u64, Bytes)> {
        let end = self.base + self.entries.len() as u64;
        if self.entries.is_empty() {
            return Vec::new();
        }
        if span.backwards {
            if span.hi < self.base || span.hi >= end {
                return Vec::new();
            }
            let low = span.lo.max(self.base);
            (low..=span.hi)
                .rev()
                .take(max)
                .filter_map(|p| Some((p, self.get(p)?)))
                .collect()
        } else {
            if span.lo < self.base || span.lo >= end {
                return Vec::new();
            }
            let high = span.hi.min(end - 1);
            (span.lo..=high)
                .take(max)
                .filter_map(|p| Some((p, self.get(p)?)))
                .collect()
        }
    }

    /// Adds the record of `position` (the cache restarts when it is not the next one).
    pub(crate) fn push(&mut self, position: u64, value: Bytes) {
        if self.cap == 0 {
            return;
        }
        if self.base + self.entries.len() as u64 != position || self.entries.is_empty() {
            self.clear();
            self.base = position;
        }
        self.bytes += value.len();
        self.entries.push_back(value);
        while self.bytes > self.cap {
            match self.entries.pop_front() {
                Some(v) => {
                    self.bytes -= v.len();
                    self.base += 1;
                }
                None => break,
            }
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn recent_keeps_contiguous_positions_within_budget() {
        let mut r = Recent {
            cap: 100,
            ..Recent::default()
        };
        for p in 1..=5 {
            r.push(p, v(30));
        }
        // 150 bytes pushed, 100 allowed: positions 3..=5 remain.
        assert!(r.get(2).is_none());
        assert!(r.get(3).is_some() && r.get(5).is_some() && r.get(6).is_none());
        let fwd = r.span(
            Span {
                lo: 1,
                hi: 10,
                backwards: false,
            },
            10,
        );
        assert!(
            fwd.is_empty(),
            "a span starting before the cache is not served from it"
        );
        let fwd = r.span(
            Span {
                lo: 4,
                hi: 10,
                backwards: false,
            },
            10,
        );
        assert_eq!(fwd.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![4, 5]);
        let back = r.span(
            Span {
                lo: 1,
                hi: 5,
                backwards: true,
            },
            2,
        );
        assert_eq!(back.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![5, 4]);
        // A gap restarts the cache.
        r.push(9, v(10));
        assert!(r.get(5).is_none() && r.get(9).is_some());
        let mut off = Recent::default();
        off.push(1, v(1));
        assert!(off.get(1).is_none());
    }
}
