//! The compact collections of an [`Event`](crate::Event): its [`Tags`] and its [`Metadata`].
//!
//! Both cost little when an event is read, moved and dropped, which a store does millions of
//! times a second in a scan: `Tags` is two words, and events read together share one list of
//! their tags (no allocation per event, no string built until one is looked at); `Metadata` is
//! one word and no allocation while it is empty, and one allocation with no string copied when
//! it was read from a store (its entries stay in the record's buffer until something needs
//! them as a map). Together they keep a [`SequencedEvent`](crate::SequencedEvent) within 128
//! bytes, which the compiler moves with a few vector instructions instead of a call to `memcpy`.
//! Both read like the standard collections they stand for: `Tags` dereferences to a slice of
//! [`Text`], `Metadata` to a `BTreeMap<String, String>`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Text;

/// The tags of an event, in the order given.
///
/// It dereferences to `[Text]` (`iter`, `len`, `contains`, indexing, ...), compares equal to
/// slices, arrays and vectors of anything a `Text` compares to, and serialises as a list of
/// strings.
///
/// Two words. The tags live in a reference-counted list: a clone shares it, and a store that
/// reads many events at once decodes their tags into one list that they share (each event sees
/// its own part), so that reading an event allocates nothing for its tags; an event kept alive
/// keeps that list, the tags of at most [`codec::BATCH`](crate::codec::BATCH) events. Changing
/// the tags of an event that shares its list gives it a list of its own first (copy on write).
///
/// Tags read from a store are checked (valid UTF-8) when read, and built into strings the
/// first time any event of the list is looked at (a reader that never looks at the tags never
/// pays for them). Until then the list holds the buffer the records were read into, as each
/// event's `data` does: to keep tags a long time without their events' buffer, look at them
/// once (any `deref`: `len`, `iter`, a comparison) or keep a copy (`to_vec`).
///
/// ```
/// use dcb_core::Tags;
/// let mut tags = Tags::from(["book:42"]);
/// tags.push("reader:7");
/// assert_eq!(tags, ["book:42", "reader:7"]);
/// assert!(tags.iter().any(|t| t == "reader:7"));
/// let from_strings: Tags = vec![String::from("a")].into_iter().collect();
/// assert_eq!(from_strings.len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct Tags {
    /// `None`: no tags.
    list: Option<Arc<List>>,
    /// This event's part of the list: `start..end`, or all of it when both are 0.
    start: u32,
    end: u32,
}

/// The list behind [`Tags`]: one tag without a second allocation, or many.
enum List {
    One(Text),
    Many(Vec<Text>),
    /// The tags of events decoded together, as their records hold them: built into strings
    /// the first time any of them is looked at (see [`StoredTags`]). Boxed: a list of one tag
    /// stays as small as it was.
    Stored(Box<StoredTags>),
}

/// Tags read from one buffer and checked (valid UTF-8), not yet built into strings: the
/// buffer and each tag's byte range in it, until the first look at any of them builds them
/// all and lets go of the buffer. A scan whose reader never looks at the tags builds none:
/// building a short string costs more than checking it (its bytes are copied into the value
/// on the stack, then moved twice), and it was a fifth of a scan's decoding.
pub(crate) struct StoredTags {
    /// The buffer and the ranges, until the strings are built (the lock is taken once, by the
    /// first look).
    source: std::sync::Mutex<Option<Unbuilt>>,
    built: OnceLock<Vec<Text>>,
}

/// A buffer and the byte ranges of tags in it.
type Unbuilt = (Bytes, Vec<(u32, u32)>);

/// The strings at `spans` of `buffer`, each checked when its record was decoded (one that is
/// not valid UTF-8 would be an empty string).
pub(crate) fn texts_at(
    buffer: &Bytes,
    spans: impl IntoIterator<Item = (u32, u32)>,
) -> impl Iterator<Item = Text> {
    spans.into_iter().map(move |(a, b)| {
        Text::from_utf8_within(buffer, a as usize..b as usize).unwrap_or_default()
    })
}

impl StoredTags {
    /// The strings, built on the first call.
    #[inline]
    fn texts(&self) -> &[Text] {
        self.built.get_or_init(|| {
            let taken = self.source.lock().unwrap_or_else(|p| p.into_inner()).take();
            taken.map_or_else(Vec::new, |(buffer, spans)| {
                texts_at(&buffer, spans).collect()
            })
        })
    }
}

impl List {
    #[inline]
    fn as_slice(&self) -> &[Text] {
        match self {
            List::One(t) => std::slice::from_ref(t),
            List::Many(v) => v,
            List::Stored(s) => s.texts(),
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Text] {
        if let List::Stored(s) = self {
            *self = List::Many(s.texts().to_vec());
        }
        match self {
            List::One(t) => std::slice::from_mut(t),
            List::Many(v) => v,
            List::Stored(_) => &mut [],
        }
    }

    fn into_vec(self) -> Vec<Text> {
        match self {
            List::One(t) => vec![t],
            List::Many(v) => v,
            List::Stored(s) => s.texts().to_vec(),
        }
    }
}

/// A tag list being filled for many events at once (the codec's batch decode): each event's
/// tags are pushed, then every event gets its part with [`SharedTags::part`].
pub(crate) struct SharedTags {
    list: Option<Arc<List>>,
}

impl SharedTags {
    /// The shared list of `tags`.
    pub(crate) fn new(tags: Vec<Text>) -> SharedTags {
        SharedTags {
            list: (!tags.is_empty()).then(|| Arc::new(List::Many(tags))),
        }
    }

    /// The shared list of the tags at `spans` of `buffer`, each checked to be valid UTF-8
    /// (a range that is not is an empty tag), built into strings when first looked at.
    pub(crate) fn stored(buffer: Bytes, spans: Vec<(u32, u32)>) -> SharedTags {
        SharedTags {
            list: (!spans.is_empty()).then(|| {
                Arc::new(List::Stored(Box::new(StoredTags {
                    source: std::sync::Mutex::new(Some((buffer, spans))),
                    built: OnceLock::new(),
                })))
            }),
        }
    }

    /// The tags `start..end` of the list (none when the range is empty).
    #[inline]
    pub(crate) fn part(&self, start: usize, end: usize) -> Tags {
        match (u32::try_from(start), u32::try_from(end)) {
            (Ok(s), Ok(e)) if s < e => Tags {
                list: self.list.clone(),
                start: s,
                end: e,
            },
            // An empty part, or a list of more than 4 billion tags (which no memory holds).
            _ => Tags::new(),
        }
    }
}

impl Tags {
    /// No tags.
    pub const fn new() -> Tags {
        Tags {
            list: None,
            start: 0,
            end: 0,
        }
    }

    /// One tag (one allocation).
    pub(crate) fn one(tag: Text) -> Tags {
        Tags {
            list: Some(Arc::new(List::One(tag))),
            start: 0,
            end: 0,
        }
    }

    /// A range of a [`SharedTags`] list not known yet: `start..end` of the list being filled,
    /// attached with [`Tags::attach`] once it is complete. Empty until then.
    #[inline]
    pub(crate) fn pending(start: usize, end: usize) -> Tags {
        Tags {
            list: None,
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(end).unwrap_or(u32::MAX),
        }
    }

    /// The tags of a [`Tags::pending`] range, out of the completed `shared` list.
    #[inline]
    pub(crate) fn attach(&mut self, shared: &SharedTags) {
        *self = shared.part(self.start as usize, self.end as usize);
    }

    /// Adds a tag at the end. Tags are few (see
    /// [`MAX_TAGS_PER_EVENT`](crate::limits::MAX_TAGS_PER_EVENT)): this reallocates the list.
    pub fn push(&mut self, tag: impl Into<Text>) {
        let mut tags = std::mem::take(self).into_vec();
        tags.push(tag.into());
        *self = Tags::from(tags);
    }

    /// The tags as a vector (the list is handed over when this is its only user; the tags are
    /// cloned otherwise, which shares their bytes).
    pub fn into_vec(self) -> Vec<Text> {
        let whole = self.start == 0 && self.end == 0;
        match self.list {
            None => Vec::new(),
            Some(list) if whole => {
                Arc::try_unwrap(list).map_or_else(|l| l.as_slice().to_vec(), List::into_vec)
            }
            Some(list) => part_of(&list, self.start, self.end).to_vec(),
        }
    }
}

/// The part `start..end` of `list` (all of it when both are 0).
#[inline]
fn part_of(list: &List, start: u32, end: u32) -> &[Text] {
    let all = list.as_slice();
    if start == 0 && end == 0 {
        all
    } else {
        all.get(start as usize..end as usize).unwrap_or(&[])
    }
}

impl Deref for Tags {
    type Target = [Text];

    #[inline]
    fn deref(&self) -> &[Text] {
        match &self.list {
            Some(list) => part_of(list, self.start, self.end),
            None => &[],
        }
    }
}

impl DerefMut for Tags {
    fn deref_mut(&mut self) -> &mut [Text] {
        let whole = self.start == 0 && self.end == 0;
        if !whole
            || self
                .list
                .as_mut()
                .is_some_and(|l| Arc::get_mut(l).is_none())
        {
            // Shared with other events, or another's part too: a list of its own first.
            *self = Tags::from(self.to_vec());
        }
        match self.list.as_mut().and_then(Arc::get_mut) {
            Some(list) => list.as_mut_slice(),
            None => &mut [],
        }
    }
}

impl AsRef<[Text]> for Tags {
    fn as_ref(&self) -> &[Text] {
        self
    }
}

impl From<Vec<Text>> for Tags {
    #[inline]
    fn from(mut tags: Vec<Text>) -> Tags {
        match tags.len() {
            0 => Tags::new(),
            1 => tags.pop().map_or_else(Tags::new, Tags::one),
            _ => Tags {
                list: Some(Arc::new(List::Many(tags))),
                start: 0,
                end: 0,
            },
        }
    }
}

impl From<Box<[Text]>> for Tags {
    fn from(tags: Box<[Text]>) -> Tags {
        Tags::from(tags.into_vec())
    }
}

impl From<Tags> for Vec<Text> {
    fn from(tags: Tags) -> Vec<Text> {
        tags.into_vec()
    }
}

impl<T: Into<Text>, const N: usize> From<[T; N]> for Tags {
    fn from(tags: [T; N]) -> Tags {
        tags.into_iter().collect()
    }
}

impl<T: Into<Text>> FromIterator<T> for Tags {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Tags {
        Tags::from(iter.into_iter().map(Into::into).collect::<Vec<Text>>())
    }
}

impl<T: Into<Text>> Extend<T> for Tags {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        let mut tags = std::mem::take(self).into_vec();
        tags.extend(iter.into_iter().map(Into::into));
        *self = Tags::from(tags);
    }
}

impl IntoIterator for Tags {
    type Item = Text;
    type IntoIter = std::vec::IntoIter<Text>;

    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = &'a Text;
    type IntoIter = std::slice::Iter<'a, Text>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Tags {
    fn eq(&self, other: &Tags) -> bool {
        **self == **other
    }
}

impl Eq for Tags {}

impl PartialOrd for Tags {
    fn partial_cmp(&self, other: &Tags) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Tags {
    fn cmp(&self, other: &Tags) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::hash::Hash for Tags {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl<T> PartialEq<[T]> for Tags
where
    Text: PartialEq<T>,
{
    fn eq(&self, other: &[T]) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b)
    }
}

impl<T> PartialEq<&[T]> for Tags
where
    Text: PartialEq<T>,
{
    fn eq(&self, other: &&[T]) -> bool {
        *self == **other
    }
}

impl<T, const N: usize> PartialEq<[T; N]> for Tags
where
    Text: PartialEq<T>,
{
    fn eq(&self, other: &[T; N]) -> bool {
        *self == other[..]
    }
}

impl<T> PartialEq<Vec<T>> for Tags
where
    Text: PartialEq<T>,
{
    fn eq(&self, other: &Vec<T>) -> bool {
        *self == other[..]
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tags, D::Error> {
        Vec::<Text>::deserialize(deserializer).map(Tags::from)
    }
}

/// The free-form string metadata of an event: a `BTreeMap<String, String>` that takes one word
/// and no allocation while it is empty.
///
/// It dereferences to the map, mutably too (the first insertion allocates it), converts from
/// one, compares equal to one, and serialises as a JSON object.
///
/// Metadata read from a store is held as the record stored it (a slice of the buffer the record
/// was read into, its entries checked when it was decoded, in key order): one allocation per
/// event and no string copied. [`Metadata::value`], [`Metadata::entries`], [`Metadata::len`],
/// comparing and serialising read it there; the map itself is built the first time something
/// dereferences to it, and kept. Like an event's data, it keeps that buffer alive.
///
/// ```
/// use dcb_core::Metadata;
/// let mut m = Metadata::new();
/// assert!(m.is_empty());
/// m.insert("recorded-at".into(), "2026-01-01".into());
/// assert_eq!(m.get("recorded-at").map(String::as_str), Some("2026-01-01"));
/// assert_eq!(m.value("recorded-at"), Some("2026-01-01"));
/// ```
#[derive(Clone, Default)]
pub struct Metadata(Option<Box<Entries>>);

/// What a non-empty [`Metadata`] holds.
#[derive(Clone)]
enum Entries {
    /// A map: built by hand, or out of stored entries once something needed it.
    Map(BTreeMap<String, String>),
    /// The entries as a record stores them (see [`crate::codec::stored_entries`]): `len`
    /// entries, checked to be valid UTF-8 and in strictly ascending key order when the record
    /// was decoded; `map` is built from them on first use.
    Stored {
        bytes: Bytes,
        len: usize,
        map: OnceLock<BTreeMap<String, String>>,
    },
}

/// What an empty [`Metadata`] dereferences to.
static EMPTY: BTreeMap<String, String> = BTreeMap::new();

/// The map of `len` stored entries in `bytes`.
fn map_of(bytes: &[u8], len: usize) -> BTreeMap<String, String> {
    crate::codec::stored_entries(bytes, len)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl Metadata {
    /// No entries.
    pub const fn new() -> Metadata {
        Metadata(None)
    }

    /// The `len` entries of a record at `bytes` (a slice of the buffer it was read into),
    /// already checked: valid UTF-8, keys strictly ascending. See [`Entries::Stored`].
    pub(crate) fn stored(bytes: Bytes, len: usize) -> Metadata {
        Metadata((len > 0).then(|| {
            Box::new(Entries::Stored {
                bytes,
                len,
                map: OnceLock::new(),
            })
        }))
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries there are (without building the map).
    pub fn len(&self) -> usize {
        match self.0.as_deref() {
            None => 0,
            Some(Entries::Map(m)) => m.len(),
            Some(Entries::Stored { len, .. }) => *len,
        }
    }

    /// The value of `key`, if any (without building the map).
    pub fn value(&self, key: &str) -> Option<&str> {
        match self.0.as_deref()? {
            Entries::Map(m) => m.get(key).map(String::as_str),
            Entries::Stored { map, .. } if let Some(m) = map.get() => {
                m.get(key).map(String::as_str)
            }
            // In key order: past `key`, it is not there.
            Entries::Stored { bytes, len, .. } => crate::codec::stored_entries(bytes, *len)
                .take_while(|&(k, _)| k <= key)
                .find(|&(k, _)| k == key)
                .map(|(_, v)| v),
        }
    }

    /// The entries, in key order (without building the map).
    pub fn entries(&self) -> MetadataEntries<'_> {
        MetadataEntries(match self.0.as_deref() {
            None => EntriesIter::Map(EMPTY.iter()),
            Some(Entries::Map(m)) => EntriesIter::Map(m.iter()),
            Some(Entries::Stored { bytes, len, .. }) => {
                EntriesIter::Stored(crate::codec::stored_entries(bytes, *len))
            }
        })
    }

    /// The entries as a map.
    pub fn into_map(self) -> BTreeMap<String, String> {
        match self.0.map(|e| *e) {
            None => BTreeMap::new(),
            Some(Entries::Map(m)) => m,
            Some(Entries::Stored { bytes, len, map }) => {
                map.into_inner().unwrap_or_else(|| map_of(&bytes, len))
            }
        }
    }
}

/// The entries of a [`Metadata`], in key order: see [`Metadata::entries`].
pub struct MetadataEntries<'a>(EntriesIter<'a>);

enum EntriesIter<'a> {
    Map(std::collections::btree_map::Iter<'a, String, String>),
    Stored(crate::codec::StoredEntries<'a>),
}

impl<'a> Iterator for MetadataEntries<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        match &mut self.0 {
            EntriesIter::Map(i) => i.next().map(|(k, v)| (k.as_str(), v.as_str())),
            EntriesIter::Stored(i) => i.next(),
        }
    }
}

impl Deref for Metadata {
    type Target = BTreeMap<String, String>;

    #[inline]
    fn deref(&self) -> &BTreeMap<String, String> {
        match self.0.as_deref() {
            None => &EMPTY,
            Some(Entries::Map(m)) => m,
            Some(Entries::Stored { bytes, len, map }) => map.get_or_init(|| map_of(bytes, *len)),
        }
    }
}

impl DerefMut for Metadata {
    fn deref_mut(&mut self) -> &mut BTreeMap<String, String> {
        let entries = self
            .0
            .get_or_insert_with(|| Box::new(Entries::Map(BTreeMap::new())));
        // Stored entries become a map first (the one built already, if any).
        if let Entries::Stored { bytes, len, map } = &mut **entries {
            let built = map.take().unwrap_or_else(|| map_of(bytes, *len));
            **entries = Entries::Map(built);
        }
        match &mut **entries {
            Entries::Map(m) => m,
            Entries::Stored { .. } => unreachable!("stored entries were made a map above"),
        }
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Metadata {
        Metadata((!map.is_empty()).then(|| Box::new(Entries::Map(map))))
    }
}

impl From<Metadata> for BTreeMap<String, String> {
    fn from(m: Metadata) -> BTreeMap<String, String> {
        m.into_map()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Metadata {
        iter.into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect::<BTreeMap<_, _>>()
            .into()
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Metadata) -> bool {
        self.len() == other.len() && self.entries().eq(other.entries())
    }
}

impl Eq for Metadata {}

impl PartialEq<BTreeMap<String, String>> for Metadata {
    fn eq(&self, other: &BTreeMap<String, String>) -> bool {
        self.len() == other.len()
            && self
                .entries()
                .eq(other.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.entries())
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Metadata, D::Error> {
        BTreeMap::deserialize(deserializer).map(Metadata::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_behave_like_a_list_of_strings() {
        let mut tags = Tags::new();
        assert!(tags.is_empty());
        tags.push("b");
        tags.extend(["a", "c"]);
        assert_eq!(tags, ["b", "a", "c"]);
        assert_eq!(tags, vec!["b", "a", "c"]);
        assert_ne!(tags, ["b", "a"]);
        assert_eq!(tags[1], "a");
        assert!(tags.contains(&Text::from("c")));
        assert_eq!(format!("{tags:?}"), r#"["b", "a", "c"]"#);
        let json = serde_json::to_string(&tags).unwrap_or_default();
        assert_eq!(json, r#"["b","a","c"]"#);
        let back: Result<Tags, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(tags.clone()));
        let v: Vec<Text> = tags.into_vec();
        assert_eq!(Tags::from(v), ["b", "a", "c"]);
    }

    fn texts(n: usize) -> Vec<Text> {
        (0..n).map(|i| Text::from(format!("t{i}"))).collect()
    }

    #[test]
    fn tags_are_two_words_and_share_their_list_when_cloned() {
        assert_eq!(
            std::mem::size_of::<Tags>(),
            2 * std::mem::size_of::<usize>()
        );
        let tags = Tags::from(texts(3));
        let copy = tags.clone();
        assert_eq!(copy.as_ptr(), tags.as_ptr(), "a clone shares the list");
        // One tag is one allocation; none is none.
        assert!(Tags::new().list.is_none() && Tags::from(Vec::new()).list.is_none());
        assert!(matches!(
            Tags::from(texts(1)).list.as_deref(),
            Some(List::One(_))
        ));
    }

    #[test]
    fn parts_of_a_shared_list_are_independent_tags() {
        let shared = SharedTags::new(texts(6));
        let a = shared.part(0, 2);
        let mut b = shared.part(2, 5);
        let none = shared.part(5, 5);
        assert_eq!(a, ["t0", "t1"]);
        assert_eq!(b, ["t2", "t3", "t4"]);
        assert!(none.is_empty() && none.list.is_none());
        // Equal, ordered and hashed by their tags alone, whatever holds them.
        assert_eq!(b, Tags::from(["t2", "t3", "t4"]));
        assert!(a < b);
        let hash = |t: &Tags| {
            use std::hash::{BuildHasher, RandomState};
            let s = RandomState::new();
            (s.hash_one(t), s.hash_one(&t[..]))
        };
        let (h1, h2) = hash(&b);
        assert_eq!(h1, h2);
        assert_eq!(
            serde_json::to_string(&b).unwrap_or_default(),
            r#"["t2","t3","t4"]"#
        );
        // Copy on write: a change to one part touches nothing else.
        b[0] = Text::from("x");
        b.push("y");
        assert_eq!(b, ["x", "t3", "t4", "y"]);
        assert_eq!(a, ["t0", "t1"]);
        assert_eq!(shared.part(2, 5), ["t2", "t3", "t4"]);
        assert_eq!(shared.part(0, 6).into_vec(), texts(6));
        // A pending part is empty until attached.
        let mut pending = Tags::pending(1, 3);
        assert!(pending.is_empty());
        pending.attach(&shared);
        assert_eq!(pending, ["t1", "t2"]);
    }

    #[test]
    fn a_list_of_its_own_is_changed_and_handed_over_in_place() {
        let v = texts(4);
        let at = v.as_ptr();
        let mut tags = Tags::from(v);
        tags[1] = Text::from("one");
        assert_eq!(
            tags.as_ptr(),
            at,
            "no copy while the list is this event's alone"
        );
        let back = tags.into_vec();
        assert_eq!(back.as_ptr(), at, "the vector is handed back, not copied");
        assert_eq!(back[1], "one");
        // Shared: the change goes to a copy, and the other holder keeps the old tags.
        let mut tags = Tags::from(texts(2));
        let other = tags.clone();
        tags[0] = Text::from("mine");
        assert_eq!((tags[0].as_str(), other[0].as_str()), ("mine", "t0"));
        assert_eq!(other.into_vec(), texts(2));
    }

    #[test]
    fn empty_metadata_costs_a_word_and_no_allocation() {
        assert_eq!(
            std::mem::size_of::<Metadata>(),
            std::mem::size_of::<usize>()
        );
        let m = Metadata::from(BTreeMap::new());
        assert!(m.0.is_none() && m.is_empty());
        assert_eq!(m, Metadata::new());
        let mut m = Metadata::new();
        m.insert("k".into(), "v".into());
        assert_eq!(m.len(), 1);
        assert_eq!(m, BTreeMap::from([("k".to_owned(), "v".to_owned())]));
        // An allocated map emptied again equals an empty one.
        m.clear();
        assert_eq!(m, Metadata::new());
        assert_eq!(serde_json::to_string(&m).unwrap_or_default(), "{}");
        let back: Result<Metadata, _> = serde_json::from_str(r#"{"a":"1"}"#);
        assert_eq!(
            back.ok().map(Metadata::into_map).unwrap_or_default().len(),
            1
        );
    }

    /// Whether `m` holds stored entries whose map is not built.
    fn unbuilt(m: &Metadata) -> bool {
        matches!(m.0.as_deref(), Some(Entries::Stored { map, .. }) if map.get().is_none())
    }

    #[test]
    fn read_metadata_is_read_where_it_is_stored_until_something_needs_the_map() {
        let written: BTreeMap<String, String> = [("b", "2"), ("a", "1"), ("recorded_at_ms", "17")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let record = bytes::Bytes::from(crate::codec::encode_event(
            &crate::Event::new("T", b"{}".to_vec()),
            0,
            1,
        ));
        assert!(
            crate::codec::decode_event_bytes(&record)
                .expect("decodes")
                .event
                .metadata
                .is_empty()
        );
        let mut event = crate::Event::new("T", b"{}".to_vec());
        event.metadata = written.clone().into();
        let record = bytes::Bytes::from(crate::codec::encode_event(&event, 0, 1));
        let read = crate::codec::decode_event_bytes(&record)
            .expect("decodes")
            .event
            .metadata;
        assert!(unbuilt(&read));
        // Read without building the map.
        assert_eq!(read.len(), 3);
        assert!(!read.is_empty());
        assert_eq!(read.value("recorded_at_ms"), Some("17"));
        assert_eq!(read.value("c"), None);
        assert_eq!(
            read.entries().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2"), ("recorded_at_ms", "17")]
        );
        assert_eq!(read, written);
        assert_eq!(read, event.metadata);
        assert_eq!(
            serde_json::to_string(&read).unwrap_or_default(),
            r#"{"a":"1","b":"2","recorded_at_ms":"17"}"#
        );
        assert_eq!(format!("{read:?}"), format!("{written:?}"));
        assert_eq!(
            crate::codec::encode_event(
                &crate::Event {
                    metadata: read.clone(),
                    ..event.clone()
                },
                0,
                1
            ),
            &record[..]
        );
        assert!(unbuilt(&read), "none of that built the map");
        // The map, built once and kept.
        let copy = read.clone();
        assert_eq!(read.get("a").map(String::as_str), Some("1"));
        assert!(!unbuilt(&read) && unbuilt(&copy));
        assert_eq!(*read, written);
        assert_eq!(read.value("b"), Some("2"));
        // Changing it makes it a map of its own; the record and the copy are untouched.
        let mut changed = copy.clone();
        changed.insert("c".into(), "3".into());
        changed.remove("a");
        assert_eq!(
            changed.entries().collect::<Vec<_>>(),
            [("b", "2"), ("c", "3"), ("recorded_at_ms", "17")]
        );
        assert_eq!(copy, written);
        assert_eq!(copy.into_map(), written);
        assert_eq!(read.into_map(), written);
    }

    #[test]
    fn metadata_stored_out_of_key_order_reads_as_the_map_a_later_key_winning() {
        // No encoder writes this (they write a map's entries in order): postcard's form of
        // [("b", "1"), ("a", "2"), ("a", "3")], as a damaged or foreign record could hold.
        let stored = [3u8, 1, b'b', 1, b'1', 1, b'a', 1, b'2', 1, b'a', 1, b'3'];
        let map: Metadata = crate::codec::stored_entries(&stored[1..], 3).collect();
        assert_eq!(map.entries().collect::<Vec<_>>(), [("a", "3"), ("b", "1")]);
        // Ends early, never panics, on entries that are not what they claim.
        assert_eq!(crate::codec::stored_entries(&stored[1..6], 3).count(), 1);
        assert_eq!(crate::codec::stored_entries(&[5, b'a'], 1).count(), 0);
    }
}
