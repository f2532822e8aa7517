//! The compact collections of an [`Event`](crate::Event): its [`Tags`] and its [`Metadata`].
//!
//! Both cost little when an event is read, moved and dropped, which a store does millions of
//! times a second in a scan: `Tags` is one allocation of exactly its tags (two words, where a
//! `Vec` takes three), and `Metadata` is one word and no allocation while it is empty (as it is
//! for most events). Together they keep a [`SequencedEvent`](crate::SequencedEvent) within 128
//! bytes, which the compiler moves with a few vector instructions instead of a call to `memcpy`.
//! Both read like the standard collections they stand for: `Tags` dereferences to a slice of
//! [`Text`], `Metadata` to a `BTreeMap<String, String>`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Text;

/// The tags of an event, in the order given: a boxed slice of [`Text`].
///
/// It dereferences to `[Text]` (`iter`, `len`, `contains`, indexing, ...), compares equal to
/// slices, arrays and vectors of anything a `Text` compares to, and serialises as a list of
/// strings.
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
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tags(Box<[Text]>);

impl Tags {
    /// No tags.
    pub fn new() -> Tags {
        Tags::default()
    }

    /// Adds a tag at the end. Tags are few (see
    /// [`MAX_TAGS_PER_EVENT`](crate::limits::MAX_TAGS_PER_EVENT)): this reallocates the list.
    pub fn push(&mut self, tag: impl Into<Text>) {
        let mut tags = std::mem::take(&mut self.0).into_vec();
        tags.push(tag.into());
        self.0 = tags.into_boxed_slice();
    }

    /// The tags as a vector (no copy of the tags themselves: the allocation is handed over).
    pub fn into_vec(self) -> Vec<Text> {
        self.0.into_vec()
    }
}

impl Deref for Tags {
    type Target = [Text];

    #[inline]
    fn deref(&self) -> &[Text] {
        &self.0
    }
}

impl DerefMut for Tags {
    fn deref_mut(&mut self) -> &mut [Text] {
        &mut self.0
    }
}

impl AsRef<[Text]> for Tags {
    fn as_ref(&self) -> &[Text] {
        &self.0
    }
}

impl From<Vec<Text>> for Tags {
    #[inline]
    fn from(tags: Vec<Text>) -> Tags {
        Tags(tags.into_boxed_slice())
    }
}

impl From<Box<[Text]>> for Tags {
    fn from(tags: Box<[Text]>) -> Tags {
        Tags(tags)
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
        Tags(iter.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Text>> Extend<T> for Tags {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        let mut tags = std::mem::take(&mut self.0).into_vec();
        tags.extend(iter.into_iter().map(Into::into));
        self.0 = tags.into_boxed_slice();
    }
}

impl IntoIterator for Tags {
    type Item = Text;
    type IntoIter = std::vec::IntoIter<Text>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = &'a Text;
    type IntoIter = std::slice::Iter<'a, Text>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<T> PartialEq<[T]> for Tags
where
    Text: PartialEq<T>,
{
    fn eq(&self, other: &[T]) -> bool {
        self.0.len() == other.len() && self.0.iter().zip(other).all(|(a, b)| a == b)
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
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
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
/// ```
/// use dcb_core::Metadata;
/// let mut m = Metadata::new();
/// assert!(m.is_empty());
/// m.insert("recorded-at".into(), "2026-01-01".into());
/// assert_eq!(m.get("recorded-at").map(String::as_str), Some("2026-01-01"));
/// ```
#[derive(Clone, Default)]
// Boxed on purpose: an empty `Option<Box<_>>` is one word, a `BTreeMap` three.
#[allow(clippy::box_collection)]
pub struct Metadata(Option<Box<BTreeMap<String, String>>>);

/// What an empty [`Metadata`] dereferences to.
static EMPTY: BTreeMap<String, String> = BTreeMap::new();

impl Metadata {
    /// No entries.
    pub const fn new() -> Metadata {
        Metadata(None)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }

    /// The entries as a map.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0.map(|m| *m).unwrap_or_default()
    }
}

impl Deref for Metadata {
    type Target = BTreeMap<String, String>;

    #[inline]
    fn deref(&self) -> &BTreeMap<String, String> {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl DerefMut for Metadata {
    fn deref_mut(&mut self) -> &mut BTreeMap<String, String> {
        self.0.get_or_insert_with(Default::default)
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Metadata {
        Metadata((!map.is_empty()).then(|| Box::new(map)))
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
        **self == **other
    }
}

impl Eq for Metadata {}

impl PartialEq<BTreeMap<String, String>> for Metadata {
    fn eq(&self, other: &BTreeMap<String, String>) -> bool {
        **self == *other
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
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
}
