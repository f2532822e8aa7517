//! [`Text`]: an immutable, cheaply cloned UTF-8 string, held in the value itself when short and
//! over a shared [`Bytes`] buffer otherwise.
//!
//! Event types and tags are `Text`, so a store can hand out events whose strings cost no
//! allocation and, once read, nothing to clone or drop: a string of at most [`Text::INLINE`]
//! bytes is copied into the value (a [`smol_str::SmolStr`] held inline), a longer one is a slice
//! of the record (or block) it was read from ([`bytestring::ByteString`], actix's, which keeps
//! the bytes valid UTF-8 from construction on), and cloning it bumps a reference count. This
//! crate adds the conversions and serde form that events need.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, Range};
use std::str::Utf8Error;

use bytes::Bytes;
use bytestring::ByteString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

/// An immutable UTF-8 string: short ones held in the value, longer ones over a shared,
/// reference-counted [`Bytes`] buffer.
///
/// It behaves like a `str` (it dereferences to one; equality, ordering and hashing are those of
/// the `str`, whatever the form), compares equal to `&str` and `String`, serialises as a plain
/// string, and clones in O(1) without copying a buffer.
///
/// A string read out of a buffer ([`Text::from_utf8_within`]) is copied into the value when it
/// is at most [`Text::INLINE`] bytes long (most event types and tags are): cloning and dropping
/// it then touch no reference count, which a scan handing out millions of events a second
/// notices. A longer one shares the buffer. `Text` is 32 bytes either way.
///
/// ```
/// use dcb_core::Text;
/// let t = Text::from("BookBorrowed"); // a `&'static str`: no copy, no allocation
/// assert_eq!(t, "BookBorrowed");
/// assert!(t.starts_with("Book"));
/// let owned = Text::from(format!("book:{}", 42)); // takes the String's buffer
/// assert_eq!(owned.len(), 7);
/// assert_eq!(Text::copy_from_str("book:42"), owned); // the same string in any form
/// ```
#[derive(Clone)]
pub struct Text(Repr);

/// The two forms of a [`Text`].
#[derive(Clone)]
enum Repr {
    /// At most [`Text::INLINE`] bytes, copied into the value.
    Inline(SmolStr),
    /// A buffer: a slice of a shared one, a `String`'s, or static memory.
    Shared(ByteString),
}

impl Text {
    /// The longest string held in the value itself rather than in a buffer (23 bytes).
    pub const INLINE: usize = SmolStr::INLINE_CAP;

    /// The empty string.
    pub const fn new() -> Text {
        Text(Repr::Shared(ByteString::new()))
    }

    /// A string over static memory: no allocation, no copy.
    pub const fn from_static(s: &'static str) -> Text {
        Text(Repr::Shared(ByteString::from_static(s)))
    }

    /// A copy of a borrowed string (for a `&str` that is not `'static`): held in the value when
    /// it is at most [`Text::INLINE`] bytes, in a new buffer otherwise.
    pub fn copy_from_str(s: &str) -> Text {
        if s.len() <= Text::INLINE {
            Text(Repr::Inline(SmolStr::new_inline(s)))
        } else {
            Text(Repr::Shared(ByteString::from(s)))
        }
    }

    /// The string over `bytes`, without copying, when they are valid UTF-8.
    #[inline]
    pub fn from_utf8(bytes: Bytes) -> Result<Text, Utf8Error> {
        ByteString::try_from(bytes).map(|s| Text(Repr::Shared(s)))
    }

    /// The string at `range` of `buffer`, when it lies within the buffer and is valid UTF-8
    /// (`None` otherwise): copied into the value when it is at most [`Text::INLINE`] bytes, a
    /// slice of the buffer (no copy) when longer. What a store's decoder calls for the strings
    /// of a record it has read into `buffer`.
    #[inline(always)]
    pub fn from_utf8_within(buffer: &Bytes, range: Range<usize>) -> Option<Text> {
        let bytes = buffer.get(range.clone())?;
        if bytes.len() <= Text::INLINE {
            let s = std::str::from_utf8(bytes).ok()?;
            // `new_inline` copies and asserts the length, which was just checked.
            Some(Text(Repr::Inline(SmolStr::new_inline(s))))
        } else {
            ByteString::try_from(buffer.slice(range))
                .ok()
                .map(|s| Text(Repr::Shared(s)))
        }
    }

    /// Whether the string is held in the value (no buffer behind it; see [`Text::INLINE`]).
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline(_))
    }

    /// The string.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(s) => s.as_str(),
            Repr::Shared(s) => s,
        }
    }

    /// The string's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }

    /// The string as a buffer: the shared one, or a copy of a string held in the value.
    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Inline(s) => Bytes::copy_from_slice(s.as_bytes()),
            Repr::Shared(s) => s.into_bytes(),
        }
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::new()
    }
}

impl PartialEq for Text {
    #[inline]
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
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
        Text(Repr::Shared(ByteString::from(s)))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text::copy_from_str(s)
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Text {
        Text(Repr::Shared(ByteString::from(s)))
    }
}

impl From<&Text> for Text {
    fn from(t: &Text) -> Text {
        t.clone()
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        match t.0 {
            Repr::Inline(s) => String::from(s.as_str()),
            Repr::Shared(s) => String::from(s),
        }
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

    #[test]
    fn short_strings_read_from_a_buffer_are_held_in_the_value_and_equal_in_every_form() {
        let long = "a-tag-longer-than-twenty-three-bytes";
        let buf = Bytes::from(format!("xxbook:42yy{long}\u{e9}").into_bytes());
        let range = buf.as_ptr_range();
        let short = Text::from_utf8_within(&buf, 2..9).unwrap_or_default();
        assert_eq!(short, "book:42");
        assert!(
            short.is_inline() && !range.contains(&short.as_ptr()),
            "copied"
        );
        let at = 11..11 + long.len();
        let shared = Text::from_utf8_within(&buf, at.clone()).unwrap_or_default();
        assert_eq!(shared, long);
        assert!(
            !shared.is_inline() && range.contains(&shared.as_ptr()),
            "a slice"
        );
        // The boundary: `INLINE` bytes are held, one more is a slice.
        let edge = 11..11 + Text::INLINE;
        let held = Text::from_utf8_within(&buf, edge.clone()).unwrap_or_default();
        let sliced = Text::from_utf8_within(&buf, edge.start..edge.end + 1).unwrap_or_default();
        assert_eq!((held.len(), held.is_inline()), (Text::INLINE, true));
        assert_eq!(
            (sliced.len(), sliced.is_inline()),
            (Text::INLINE + 1, false)
        );
        // Out of the buffer, not UTF-8, half a code point: nothing.
        let end = buf.len();
        for bad in [end - 1..end + 1, 9..end + 3, end - 1..end, 0..end - 1] {
            assert!(
                Text::from_utf8_within(&buf, bad.clone()).is_none(),
                "{bad:?}"
            );
        }
        assert_eq!(
            Text::from_utf8_within(&buf, end - 2..end).as_deref(),
            Some("\u{e9}")
        );
        // Every form of one string is the same string: equal, same order, same hash.
        let forms = [
            Text::from_utf8_within(&buf, 2..9).unwrap_or_default(),
            Text::from_utf8(buf.slice(2..9)).unwrap_or_default(),
            Text::from("book:42"),
            Text::from(String::from("book:42")),
            Text::copy_from_str("book:42"),
        ];
        assert!(forms[0].is_inline() && forms[4].is_inline());
        assert!(!forms[1].is_inline() && !forms[2].is_inline() && !forms[3].is_inline());
        let set: HashSet<Text> = forms.iter().cloned().collect();
        assert_eq!(set.len(), 1);
        for f in &forms {
            assert_eq!(f, &short);
            assert!(set.contains(f) && set.contains("book:42"));
            assert_eq!(f.cmp(&Text::from("book:5")), "book:42".cmp("book:5"));
            assert_eq!(f.clone().into_bytes(), &b"book:42"[..]);
            assert_eq!(String::from(f.clone()), "book:42");
            assert_eq!(f.as_bytes(), b"book:42");
        }
        assert_eq!(
            serde_json::to_string(&short).unwrap_or_default(),
            "\"book:42\""
        );
        let back: Text = serde_json::from_str("\"book:42\"").unwrap_or_default();
        assert!(back.is_inline() && back == short);
        assert_eq!(Text::copy_from_str(long), long);
        assert!(!Text::copy_from_str(long).is_inline());
    }

    #[test]
    fn a_text_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Text>(), 32);
    }
}
