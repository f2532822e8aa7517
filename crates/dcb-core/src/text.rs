//! [`Text`]: an immutable, cheaply cloned UTF-8 string over a shared [`Bytes`] buffer.
//!
//! Event types and tags are `Text`, so a store can hand out events whose strings are slices of
//! the record (or block) they were read from: cloning one bumps a reference count, it never
//! copies. The storage is [`bytestring::ByteString`] (actix's), which guarantees the bytes are
//! valid UTF-8 from construction on; this crate adds the conversions and serde form that events
//! need.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::Utf8Error;

use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An immutable UTF-8 string sharing a reference-counted [`Bytes`] buffer.
///
/// It behaves like a `str` (it dereferences to one; equality, ordering and hashing are those of
/// the `str`), compares equal to `&str` and `String`, serialises as a plain string, and clones
/// in O(1) without copying.
///
/// ```
/// use dcb_core::Text;
/// let t = Text::from("BookBorrowed"); // a `&'static str`: no copy, no allocation
/// assert_eq!(t, "BookBorrowed");
/// assert!(t.starts_with("Book"));
/// let owned = Text::from(format!("book:{}", 42)); // takes the String's buffer
/// assert_eq!(owned.len(), 7);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(ByteString);

impl Text {
    /// The empty string.
    pub const fn new() -> Text {
        Text(ByteString::new())
    }

    /// A string over static memory: no allocation, no copy.
    pub const fn from_static(s: &'static str) -> Text {
        Text(ByteString::from_static(s))
    }

    /// A copy of a borrowed string (for a `&str` that is not `'static`).
    pub fn copy_from_str(s: &str) -> Text {
        Text(ByteString::from(s))
    }

    /// The string over `bytes`, without copying, when they are valid UTF-8.
    #[inline]
    pub fn from_utf8(bytes: Bytes) -> Result<Text, Utf8Error> {
        ByteString::try_from(bytes).map(Text)
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying buffer (shared, not copied).
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// The underlying buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self
    }
}

impl TryFrom<Bytes> for Text {
    type Error = Utf8Error;

    fn try_from(bytes: Bytes) -> Result<Text, Utf8Error> {
        Text::from_utf8(bytes)
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Text {
        Text::from_static(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(ByteString::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text::copy_from_str(s)
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Text {
        Text(ByteString::from(s))
    }
}

impl From<&Text> for Text {
    fn from(t: &Text) -> Text {
        t.clone()
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        String::from(t.0)
    }
}

impl From<Text> for Bytes {
    fn from(t: Text) -> Bytes {
        t.into_bytes()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text::copy_from_str(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text::from(v))
            }
        }
        deserializer.deserialize_string(V)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use super::*;

    #[test]
    fn compares_like_a_str() {
        let t = Text::from("tag:1");
        assert_eq!(t, "tag:1");
        assert_eq!(&t, &"tag:1");
        assert_eq!(t, String::from("tag:1"));
        assert_eq!("tag:1", t);
        assert_eq!(String::from("tag:1"), t);
        assert_ne!(t, "tag:2");
        assert_eq!(t, Text::from(String::from("tag:1")));
        assert_eq!(t, Text::copy_from_str("tag:1"));
        let [a, b, z, e] = ["a", "b", "z", "é"].map(Text::from);
        assert!(a < b);
        assert!(e > z, "byte order, like str");
        assert_eq!(e.cmp(&z), "é".cmp("z"));
        assert_eq!(format!("{t} {t:?}"), r#"tag:1 "tag:1""#);
        assert!(Text::new().is_empty());
        assert_eq!(Text::default(), "");
    }

    #[test]
    fn looks_up_by_str_in_sets() {
        let set: HashSet<Text> = [Text::from("a"), Text::from(String::from("b"))].into();
        assert!(set.contains("a") && set.contains("b") && !set.contains("c"));
        let sorted: BTreeSet<Text> = ["z", "a", "m"].into_iter().map(Text::from).collect();
        assert!(sorted.contains("m"));
        let order: Vec<&str> = sorted.iter().map(Text::as_str).collect();
        assert_eq!(order, ["a", "m", "z"]);
    }

    #[test]
    fn serde_is_a_json_string() {
        let t = Text::from("Book\"Borrowed\u{e9}");
        let json = serde_json::to_string(&t).unwrap_or_default();
        assert_eq!(json, "\"Book\\\"Borrowed\u{e9}\"");
        let back: Text = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, t);
        let from_reader: Result<Text, _> = serde_json::from_reader(json.as_bytes());
        assert_eq!(from_reader.ok(), Some(t));
        assert!(serde_json::from_str::<Text>("42").is_err());
    }

    #[test]
    fn static_strings_and_strings_are_not_copied() {
        static S: &str = "static";
        let t = Text::from(S);
        assert_eq!(t.as_ptr(), S.as_ptr());
        let s = String::from("owned string");
        let p = s.as_ptr();
        let t = Text::from(s);
        assert_eq!(t.as_ptr(), p);
        let c = t.clone();
        assert_eq!(c.as_ptr(), p, "a clone shares the buffer");
        assert_eq!(String::from(c), "owned string");
    }

    #[test]
    fn from_utf8_shares_the_buffer_and_rejects_invalid_utf8() {
        let buf = Bytes::from(b"xx\xc3\xa9yy".to_vec());
        let t = Text::from_utf8(buf.slice(2..4));
        assert_eq!(t.as_ref().map(Text::as_str), Ok("é"));
        let t = t.unwrap_or_default();
        let range = buf.as_ptr_range();
        assert!(range.contains(&t.as_ptr()));
        assert_eq!(t.as_bytes().as_ptr(), t.as_ptr());
        assert!(
            Text::from_utf8(buf.slice(2..3)).is_err(),
            "half a code point"
        );
        assert!(Text::try_from(Bytes::from_static(b"\xff")).is_err());
    }
}
