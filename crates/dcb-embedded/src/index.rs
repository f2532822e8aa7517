//! In-memory postings: for each type and each tag, the sorted positions of the events carrying it.
//!
//! Conditions and indexed reads are answered here without touching the disk: an item driven by
//! its shortest posting list, filtered by binary search in the others (a merge join), items OR'ed
//! by a k-way merge. Index entries per event: one for its type plus one per tag (linear in tags).

use std::collections::HashMap;

use dcb_core::{Event, Query, QueryItem, Uuid};

/// The derived indexes of the committed log.
#[derive(Default)]
pub(crate) struct Index {
    types: HashMap<Box<str>, Vec<u64>>,
    tags: HashMap<Box<str>, Vec<u64>>,
    pub(crate) ids: HashMap<Uuid, u64>,
    /// Last committed position (0: empty store).
    pub(crate) head: u64,
    /// Number of committed events.
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

    /// The type lists, tag lists and ids (for snapshots).
    #[allow(clippy::type_complexity)]
    pub(crate) fn parts(
        &self,
    ) -> (
        impl Iterator<Item = (&str, &[u64])>,
        impl Iterator<Item = (&str, &[u64])>,
        impl Iterator<Item = (&Uuid, u64)>,
    ) {
        (
            self.types.iter().map(|(k, v)| (&**k, v.as_slice())),
            self.tags.iter().map(|(k, v)| (&**k, v.as_slice())),
            self.ids.iter().map(|(k, v)| (k, *v)),
        )
    }

    /// Sets the posting list of a type (snapshot loading).
    pub(crate) fn put_type(&mut self, key: String, list: Vec<u64>) {
        self.types.insert(key.into_boxed_str(), list);
    }

    /// Sets the posting list of a tag (snapshot loading).
    pub(crate) fn put_tag(&mut self, key: String, list: Vec<u64>) {
        self.tags.insert(key.into_boxed_str(), list);
    }

    /// Number of index entries (type + tag postings) held in memory.
    pub(crate) fn postings(&self) -> usize {
        self.types.values().map(Vec::len).sum::<usize>()
            + self.tags.values().map(Vec::len).sum::<usize>()
    }

    /// Up to `max` positions in `span` matching `item`, in the span's direction.
    fn item_matches(&self, item: &QueryItem, span: Span, max: usize, out: &mut Vec<u64>) {
        if max == 0 || span.lo > span.hi {
            return;
        }
        let type_lists: Vec<&[u64]> = item
            .types
            .iter()
            .filter_map(|t| self.types.get(t.as_str()))
            .map(|l| slice_in(l, span.lo, span.hi))
            .collect();
        if item.tags.is_empty() {
            // Union of the type lists (each event has one type, so they are disjoint).
            let start = out.len();
            for l in &type_lists {
                if span.backwards {
                    out.extend(l.iter().rev().take(max));
                } else {
                    out.extend(l.iter().take(max));
                }
            }
            sort_dir(&mut out[start..], span.backwards);
            out.truncate(start + max.min(out.len() - start));
            return;
        }
        let mut tag_lists: Vec<&[u64]> = Vec::with_capacity(item.tags.len());
        for t in &item.tags {
            match self.tags.get(t.as_str()) {
                Some(l) => tag_lists.push(slice_in(l, span.lo, span.hi)),
                None => return,
            }
        }
        if !item.types.is_empty() && type_lists.iter().all(|l| l.is_empty()) {
            return;
        }
        // Drive from the shortest list; a single type list may drive too.
        let mut driver: &[u64] = &[];
        let mut driver_is_type = false;
        let mut best = usize::MAX;
        for l in &tag_lists {
            if l.len() < best {
                best = l.len();
                driver = l;
            }
        }
        if type_lists.len() == 1 && item.types.len() == 1 && type_lists[0].len() < best {
            driver = type_lists[0];
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
    }

    /// Up to `max` positions in `span` matching a normalised, non-`All` query, in order.
    pub(crate) fn matches(&self, items: &[QueryItem], span: Span, max: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for item in items {
            self.item_matches(item, span, max, &mut out);
        }
        if items.len() > 1 {
            sort_dir(&mut out, span.backwards);
            out.dedup();
        }
        out.truncate(max);
        out
    }

    /// Whether any committed event after `after` (0: any) matches `query` (normalised).
    pub(crate) fn any_after(&self, query: &Query, after: u64) -> bool {
        if after >= self.head {
            return false;
        }
        let span = Span {
            lo: after + 1,
            hi: self.head,
            backwards: true,
        };
        match query {
            Query::All => true,
            Query::Items(items) => !self.matches(items, span, 1).is_empty(),
        }
    }
}

fn push(map: &mut HashMap<Box<str>, Vec<u64>>, key: &str, position: u64) {
    match map.get_mut(key) {
        Some(v) => v.push(position),
        None => {
            map.insert(key.into(), vec![position]);
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

    #[test]
    fn items_and_merge() {
        let ix = index();
        let q = |i: QueryItem| ix.matches(&[i], ALL, 100);
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
        let both = ix.matches(
            &[QueryItem::new().r#type("C"), QueryItem::new().tag("y")],
            ALL,
            100,
        );
        assert_eq!(both, vec![2, 3, 4, 5]);
        let back = ix.matches(
            &[QueryItem::new().r#type("C"), QueryItem::new().tag("y")],
            Span {
                backwards: true,
                ..ALL
            },
            2,
        );
        assert_eq!(back, vec![5, 4]);
        let mid = ix.matches(
            &[QueryItem::new().tag("x")],
            Span {
                lo: 2,
                hi: 3,
                backwards: false,
            },
            10,
        );
        assert_eq!(mid, vec![2]);
    }

    #[test]
    fn any_after_respects_boundary() {
        let ix = index();
        let q = Query::of_type("B");
        assert!(ix.any_after(&q, 0));
        assert!(ix.any_after(&q, 1));
        assert!(!ix.any_after(&q, 2));
        assert!(ix.any_after(&Query::All, 4));
        assert!(!ix.any_after(&Query::All, 5));
        assert_eq!(ix.postings(), 5 + 6);
    }
}
