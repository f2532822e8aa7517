//! Postings: for each type and each tag, the sorted positions of the events carrying it.
//!
//! The postings of the active segment are in memory (`HashMap`s of sorted position lists, and
//! the ids); those of each sealed segment are in its immutable index file (`segindex`), of which
//! a small summary is in memory, and for the newest segments the blocks too. A lookup asks the
//! in-memory part for positions in the active segment and the sealed segments' files for older
//! ones, skipping every segment whose range lies outside the span: conditions, which usually ask
//! about the last few positions, stay in memory. An item is driven by its shortest posting list,
//! filtered by binary search in the others (a merge join); items are OR'ed by a sorted merge.
//! Index entries per event: one for its type plus one per tag (linear in tags).

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use dcb_core::{Event, Query, QueryItem, StoreError, Text, Uuid};

use crate::segindex::SegIndex;

/// Which posting list a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An event type.
    Type = 0,
    /// A tag.
    Tag = 1,
}

/// The derived indexes of the committed log: the active segment's in memory, the sealed
/// segments' as file summaries.
#[derive(Default)]
pub(crate) struct Index {
    types: Postings,
    tags: Postings,
    pub(crate) ids: HashMap<Uuid, u64>,
    /// The sealed segments' index files, in position order; they cover positions below
    /// [`Index::base`].
    sealed: Vec<Arc<SegIndex>>,
    /// Last committed position (0: empty store).
    pub(crate) head: u64,
    /// Number of events indexed in memory (positions `base ..= head`).
    pub(crate) count: u64,
}

/// An inclusive position range and a direction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub lo: u64,
    pub hi: u64,
    pub backwards: bool,
}

fn slice_in(list: &[u64], lo: u64, hi: u64) -> &[u64] {
    let a = list.partition_point(|&p| p < lo);
    let b = list.partition_point(|&p| p <= hi);
    if a < b { &list[a..b] } else { &[] }
}

impl Index {
    /// Records a committed event. Positions arrive strictly increasing.
    pub(crate) fn add(&mut self, position: u64, event: &Event) {
        self.add_keys(
            position,
            &event.event_type,
            event.tags.iter().map(|t| t.as_str()),
            event.id,
        );
    }

    /// Records a committed event from its indexed fields.
    pub(crate) fn add_keys<'a>(
        &mut self,
        position: u64,
        event_type: &str,
        tags: impl IntoIterator<Item = &'a str>,
        id: Option<Uuid>,
    ) {
        push(&mut self.types, event_type, position);
        for t in tags {
            push(&mut self.tags, t, position);
        }
        if let Some(id) = id {
            self.ids.insert(id, position);
        }
        self.head = position;
        self.count += 1;
    }

    /// An empty index that continues after `head` (for scanning newer events into, then
    /// [`Index::append`]).
    pub(crate) fn continuing_after(head: u64) -> Index {
        Index {
            head,
            ..Index::default()
        }
    }

    /// The first position indexed in memory (positions are dense).
    pub(crate) fn base(&self) -> u64 {
        (self.head + 1).saturating_sub(self.count)
    }

    /// Appends `newer`, whose events all come after this index's head.
    pub(crate) fn append(&mut self, newer: Index) {
        debug_assert!(newer.count == 0 || newer.head > self.head);
        for (k, v) in newer.types {
            self.types.entry(k).or_default().extend(v);
        }
        for (k, v) in newer.tags {
            self.tags.entry(k).or_default().extend(v);
        }
        self.ids.extend(newer.ids);
        self.head = self.head.max(newer.head);
        self.count += newer.count;
    }

    /// Adds the index file of the segment just sealed and drops its postings from memory (they
    /// were written to the file first).
    /// The sealed segments' blocks held in memory beyond `budget` bytes are let go of (see
    /// [`crate::segindex::keep_newest`]).
    pub(crate) fn seal(&mut self, segment: Arc<SegIndex>, budget: u64) {
        let end = segment.end();
        self.sealed.push(segment);
        crate::segindex::keep_newest(&mut self.sealed, budget);
        self.drop_below(end);
    }

    /// Bytes of the sealed segments' index blocks held in memory.
    pub(crate) fn index_memory(&self) -> u64 {
        crate::segindex::resident(&self.sealed)
    }

    /// Replaces the sealed segments' index files (after a reopen) and drops from memory the
    /// postings they cover.
    pub(crate) fn set_sealed(&mut self, sealed: Vec<Arc<SegIndex>>) {
        let end = sealed.last().map_or(1, |s| s.end());
        self.sealed = sealed;
        self.drop_below(end);
    }

    /// Drops the in-memory postings and ids below position `end`.
    fn drop_below(&mut self, end: u64) {
        if end <= self.base() {
            return;
        }
        if end > self.head {
            // Everything (a seal: memory held exactly the sealed segment).
            self.types = HashMap::new();
            self.tags = HashMap::new();
            self.ids = HashMap::new();
            self.count = 0;
            return;
        }
        let keep = |map: Postings| -> Postings {
            map.into_iter()
                .filter_map(|(k, v)| {
                    let v: Vec<u64> = v.into_iter().filter(|&p| p >= end).collect();
                    (!v.is_empty()).then_some((k, v))
                })
                .collect()
        };
        self.types = keep(std::mem::take(&mut self.types));
        self.tags = keep(std::mem::take(&mut self.tags));
        self.ids = std::mem::take(&mut self.ids)
            .into_iter()
            .filter(|&(_, p)| p >= end)
            .collect();
        self.count = (self.head + 1).saturating_sub(end);
    }

    /// The in-memory type lists, tag lists and ids (for snapshots and index files).
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(
        &self,
    ) -> (
        impl Iterator<Item = (&str, &[u64])>,
        impl Iterator<Item = (&str, &[u64])>,
        impl Iterator<Item = (&Uuid, u64)>,
    ) {
        (
            self.types.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            self.tags.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            self.ids.iter().map(|(k, v)| (k, *v)),
        )
    }

    /// Sets the posting list of a type (snapshot loading).
    pub(crate) fn put_type(&mut self, key: String, list: Vec<u64>) {
        self.types.insert(Text::copy_from_str(&key), list);
    }

    /// Sets the posting list of a tag (snapshot loading).
    pub(crate) fn put_tag(&mut self, key: String, list: Vec<u64>) {
        self.tags.insert(Text::copy_from_str(&key), list);
    }

    /// Number of index entries (type + tag postings) held in memory.
    pub(crate) fn postings(&self) -> usize {
        self.types.values().map(Vec::len).sum::<usize>()
            + self.tags.values().map(Vec::len).sum::<usize>()
    }

    /// Number of index entries (type + tag postings) in the sealed segments' files.
    pub(crate) fn sealed_postings(&self) -> u64 {
        self.sealed.iter().map(|s| s.postings()).sum()
    }

    /// Number of committed events.
    pub(crate) fn events(&self) -> u64 {
        self.sealed.iter().map(|s| s.end() - s.base()).sum::<u64>() + self.count
    }

    /// Up to `max` positions in `span` matching a normalised, non-`All` query, in order, from the
    /// in-memory part only (the active segment).
    pub(crate) fn memory_matches(&self, items: &[QueryItem], span: Span, max: usize) -> Vec<u64> {
        let mut get = |kind: Kind, key: &str, lo: u64, hi: u64, _cap: Option<usize>| {
            let map = match kind {
                Kind::Type => &self.types,
                Kind::Tag => &self.tags,
            };
            Ok::<_, Infallible>(Cow::Borrowed(
                map.get(key).map_or(&[][..], |l| slice_in(l, lo, hi)),
            ))
        };
        let Ok(out) = matches_with(&mut get, items, span, max);
        out
    }

    /// The sealed segments whose positions meet `span`, in position order.
    pub(crate) fn sealed_in(&self, span: Span) -> Vec<Arc<SegIndex>> {
        self.sealed
            .iter()
            .filter(|s| s.base() <= span.hi && s.end() > span.lo)
            .cloned()
            .collect()
    }

    /// Up to `max` positions in `span` matching a normalised, non-`All` query, in order.
    pub(crate) fn matches(
        &self,
        items: &[QueryItem],
        span: Span,
        max: usize,
    ) -> Result<Vec<u64>, StoreError> {
        combine(
            self.memory_matches(items, span, max),
            &self.sealed_in(span),
            items,
            span,
            max,
        )
    }

    /// Whether any committed event after `after` (0: any) matches `query` (normalised).
    pub(crate) fn any_after(&self, query: &Query, after: u64) -> Result<bool, StoreError> {
        if after >= self.head {
            return Ok(false);
        }
        let span = Span {
            lo: after + 1,
            hi: self.head,
            backwards: true,
        };
        match query {
            Query::All => Ok(true),
            Query::Items(items) => Ok(!self.matches(items, span, 1)?.is_empty()),
        }
    }

    /// The position of the committed event with id `id`, if any.
    pub(crate) fn id(&self, id: &Uuid) -> Result<Option<u64>, StoreError> {
        if let Some(&p) = self.ids.get(id) {
            return Ok(Some(p));
        }
        if self.sealed.is_empty() {
            return Ok(None);
        }
        let hash = crate::segindex::id_hash(id);
        for s in self.sealed.iter().rev() {
            if let Some(p) = s.id(id, hash)? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }
}

/// Completes `memory` (the in-memory part's answer for `span`, see [`Index::memory_matches`])
/// with the answers of the sealed segments `sealed` (those meeting `span`, in position order):
/// up to `max` positions in `span`'s order. Segments are visited in that order, and no further
/// once `max` positions are found.
pub(crate) fn combine(
    memory: Vec<u64>,
    sealed: &[Arc<SegIndex>],
    items: &[QueryItem],
    span: Span,
    max: usize,
) -> Result<Vec<u64>, StoreError> {
    let (mut out, memory) = if span.backwards {
        (memory, Vec::new())
    } else {
        (Vec::new(), memory)
    };
    let visit = |out: &mut Vec<u64>, s: &SegIndex| -> Result<(), StoreError> {
        if out.len() >= max {
            return Ok(());
        }
        let sub = Span {
            lo: span.lo.max(s.base()),
            hi: span.hi.min(s.end() - 1),
            backwards: span.backwards,
        };
        let mut get = |kind: Kind, key: &str, lo: u64, hi: u64, cap: Option<usize>| {
            s.list(kind, key, lo, hi, cap, span.backwards)
                .map(Cow::Owned)
        };
        out.extend(matches_with(&mut get, items, sub, max - out.len())?);
        Ok(())
    };
    if span.backwards {
        for s in sealed.iter().rev() {
            visit(&mut out, s)?;
        }
    } else {
        for s in sealed {
            visit(&mut out, s)?;
        }
        out.extend(memory);
    }
    out.truncate(max);
    Ok(out)
}

/// A source of posting lists: `(kind, key, lo, hi, cap)` gives the positions of `key` in
/// `lo..=hi`, ascending; with a `cap`, at least the first `cap` of them in the span's direction.
type Get<'g, 'a, E> =
    dyn FnMut(Kind, &str, u64, u64, Option<usize>) -> Result<Cow<'a, [u64]>, E> + 'g;

/// Up to `max` positions in `span` matching any of `items`, in order, over one source of lists.
fn matches_with<'a, E>(
    get: &mut Get<'_, 'a, E>,
    items: &[QueryItem],
    span: Span,
    max: usize,
) -> Result<Vec<u64>, E> {
    let mut out = Vec::new();
    for item in items {
        item_matches(get, item, span, max, &mut out)?;
    }
    if items.len() > 1 {
        sort_dir(&mut out, span.backwards);
        out.dedup();
    }
    out.truncate(max);
    Ok(out)
}

fn take_dir(list: &[u64], backwards: bool, max: usize, out: &mut Vec<u64>) {
    if backwards {
        out.extend(list.iter().rev().take(max));
    } else {
        out.extend(list.iter().take(max));
    }
}

/// Up to `max` positions in `span` matching `item`, in the span's direction.
fn item_matches<'a, E>(
    get: &mut Get<'_, 'a, E>,
    item: &QueryItem,
    span: Span,
    max: usize,
    out: &mut Vec<u64>,
) -> Result<(), E> {
    if max == 0 || span.lo > span.hi {
        return Ok(());
    }
    let (lo, hi) = (span.lo, span.hi);
    if item.tags.is_empty() {
        // Union of the type lists (each event has one type, so they are disjoint).
        let start = out.len();
        for t in &item.types {
            take_dir(
                &get(Kind::Type, t, lo, hi, Some(max))?,
                span.backwards,
                max,
                out,
            );
        }
        sort_dir(&mut out[start..], span.backwards);
        out.truncate(start + max.min(out.len() - start));
        return Ok(());
    }
    if item.types.is_empty() && item.tags.len() == 1 {
        take_dir(
            &get(Kind::Tag, &item.tags[0], lo, hi, Some(max))?,
            span.backwards,
            max,
            out,
        );
        return Ok(());
    }
    let mut tag_lists: Vec<Cow<'a, [u64]>> = Vec::with_capacity(item.tags.len());
    for t in &item.tags {
        let l = get(Kind::Tag, t, lo, hi, None)?;
        if l.is_empty() {
            return Ok(());
        }
        tag_lists.push(l);
    }
    // Drive from the shortest list; a single type list may drive too.
    let mut best = 0;
    for (i, l) in tag_lists.iter().enumerate() {
        if l.len() < tag_lists[best].len() {
            best = i;
        }
    }
    // Matches lie within the driving tag list's first and last positions.
    let (dlo, dhi) = match (tag_lists[best].first(), tag_lists[best].last()) {
        (Some(&a), Some(&b)) => (a, b),
        _ => return Ok(()),
    };
    let mut type_lists: Vec<Cow<'a, [u64]>> = Vec::with_capacity(item.types.len());
    for t in &item.types {
        type_lists.push(get(Kind::Type, t, dlo, dhi, None)?);
    }
    if !item.types.is_empty() && type_lists.iter().all(|l| l.is_empty()) {
        return Ok(());
    }
    let mut driver: &[u64] = &tag_lists[best];
    let mut driver_is_type = false;
    if type_lists.len() == 1 && type_lists[0].len() < driver.len() {
        driver = &type_lists[0];
        driver_is_type = true;
    }
    let accept = |p: &u64| {
        tag_lists.iter().all(|l| l.binary_search(p).is_ok())
            && (item.types.is_empty()
                || driver_is_type
                || type_lists.iter().any(|l| l.binary_search(p).is_ok()))
    };
    let start = out.len();
    if span.backwards {
        out.extend(driver.iter().rev().filter(|p| accept(p)).take(max));
    } else {
        out.extend(driver.iter().filter(|p| accept(p)).take(max));
    }
    debug_assert!(out.len() - start <= max);
    Ok(())
}

/// Posting lists by key. A key of at most [`Text::INLINE`] bytes (most types and tags) is held
/// in the table's slot itself: a lookup compares it there instead of following a pointer to
/// it, and a new key allocates nothing.
type Postings = HashMap<Text, Vec<u64>>;

fn push(map: &mut Postings, key: &str, position: u64) {
    match map.get_mut(key) {
        Some(v) => v.push(position),
        None => {
            map.insert(Text::copy_from_str(key), vec![position]);
        }
    }
}

fn sort_dir(v: &mut [u64], backwards: bool) {
    if backwards {
        v.sort_unstable_by(|a, b| b.cmp(a));
    } else {
        v.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn index() -> Index {
        let mut ix = Index::default();
        let evs = [
            ("A", vec!["x"]),
            ("B", vec!["x", "y"]),
            ("A", vec!["y"]),
            ("A", vec!["x", "y"]),
            ("C", vec![]),
        ];
        for (i, (t, tags)) in evs.iter().enumerate() {
            ix.add(
                i as u64 + 1,
                &Event::new(*t, vec![]).tags(tags.iter().copied()),
            );
        }
        ix
    }

    const ALL: Span = Span {
        lo: 1,
        hi: 5,
        backwards: false,
    };

    /// Keys held in the table's slots (short) and in buffers (longer than `Text::INLINE`) are
    /// found alike, by events, by snapshot loading and after an append of a newer index.
    #[test]
    fn short_and_long_keys_are_found_alike() {
        let long = "tag-longer-than-the-inline-twenty-three-bytes";
        let mut ix = Index::default();
        ix.add(1, &Event::new("A", vec![]).tags(["s", long]));
        ix.add(
            2,
            &Event::new("ATypeLongerThanTwentyThreeBytes", vec![]).tag(long),
        );
        let mut newer = Index::continuing_after(2);
        newer.add(3, &Event::new("A", vec![]).tag("s"));
        newer.put_tag(long.to_owned(), vec![3]);
        ix.append(newer);
        let span = Span {
            lo: 1,
            hi: 3,
            backwards: false,
        };
        let q = |i: QueryItem| ix.matches(&[i], span, 100).unwrap();
        assert_eq!(q(QueryItem::new().tag(long)), vec![1, 2, 3]);
        assert_eq!(q(QueryItem::new().tag("s")), vec![1, 3]);
        assert_eq!(
            q(QueryItem::new().r#type("ATypeLongerThanTwentyThreeBytes")),
            vec![2]
        );
        assert_eq!(q(QueryItem::new().r#type("A").tag(long)), vec![1, 3]);
        let (types, tags, _) = ix.parts();
        let mut keys: Vec<&str> = types.chain(tags).map(|(k, _)| k).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["A", "ATypeLongerThanTwentyThreeBytes", "s", long]);
    }

    #[test]
    fn items_and_merge() {
        let ix = index();
        let q = |i: QueryItem| ix.matches(&[i], ALL, 100).unwrap();
        assert_eq!(q(QueryItem::new().r#type("A")), vec![1, 3, 4]);
        assert_eq!(q(QueryItem::new().tag("x")), vec![1, 2, 4]);
        assert_eq!(q(QueryItem::new().tags(["x", "y"])), vec![2, 4]);
        assert_eq!(q(QueryItem::new().r#type("A").tags(["x", "y"])), vec![4]);
        assert_eq!(q(QueryItem::new().types(["B", "C"])), vec![2, 5]);
        assert_eq!(q(QueryItem::new().tag("nope")), Vec::<u64>::new());
        assert_eq!(
            q(QueryItem::new().r#type("nope").tag("x")),
            Vec::<u64>::new()
        );
        let both = ix
            .matches(
                &[QueryItem::new().r#type("C"), QueryItem::new().tag("y")],
                ALL,
                100,
            )
            .unwrap();
        assert_eq!(both, vec![2, 3, 4, 5]);
        let back = ix
            .matches(
                &[QueryItem::new().r#type("C"), QueryItem::new().tag("y")],
                Span {
                    backwards: true,
                    ..ALL
                },
                2,
            )
            .unwrap();
        assert_eq!(back, vec![5, 4]);
        let mid = ix
            .matches(
                &[QueryItem::new().tag("x")],
                Span {
                    lo: 2,
                    hi: 3,
                    backwards: false,
                },
                10,
            )
            .unwrap();
        assert_eq!(mid, vec![2]);
    }

    #[test]
    fn any_after_respects_boundary() {
        let ix = index();
        let q = Query::of_type("B");
        assert!(ix.any_after(&q, 0).unwrap());
        assert!(ix.any_after(&q, 1).unwrap());
        assert!(!ix.any_after(&q, 2).unwrap());
        assert!(ix.any_after(&Query::All, 4).unwrap());
        assert!(!ix.any_after(&Query::All, 5).unwrap());
        assert_eq!(ix.postings(), 5 + 6);
    }
}
