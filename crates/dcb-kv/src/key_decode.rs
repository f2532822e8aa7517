//! Decoding keys of the layout in [`crate::keys`]: the inverse of the key builders, for tools
//! that walk a namespace (inspection, export) and for the fuzz target. Any bytes decode to a
//! [`KeyKind`] or a [`KeyError`], never a panic, and a decoded key re-encodes to the same bytes.

use dcb_core::Position;
use uuid::Uuid;

use crate::keys::{
    Keys, POS_LEN, TAG_BATCH, TAG_CHECKPOINT, TAG_EVENT, TAG_HEAD, TAG_ID, TAG_SCHEMA, TAG_STATE,
    TAG_TAG, TAG_TYPE,
};

/// What a key of one namespace is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// The schema marker.
    Schema,
    /// The head key.
    Head,
    /// An event record.
    Event(Position),
    /// A type index entry.
    Type {
        /// The event type, as stored (bytes: not checked to be UTF-8).
        event_type: Vec<u8>,
        /// The event's position.
        position: Position,
    },
    /// A tag index entry.
    Tag {
        /// The tag, as stored.
        tag: Vec<u8>,
        /// The event's position.
        position: Position,
    },
    /// An event id index entry.
    Id(Uuid),
    /// A commit token.
    Batch(Uuid),
    /// A consumer checkpoint.
    Checkpoint {
        /// The consumer's name, as stored.
        consumer: Vec<u8>,
    },
    /// A consumer state entry.
    State {
        /// The consumer's name, as stored.
        consumer: Vec<u8>,
        /// The state key.
        key: Vec<u8>,
    },
}

/// Why bytes are not a key of the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The bytes do not start with the namespace's root.
    OtherNamespace,
    /// The byte after the root names no key kind.
    UnknownKind(u8),
    /// The key ends early or has bytes left over.
    BadLength,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::OtherNamespace => write!(f, "not a key of this namespace"),
            KeyError::UnknownKind(k) => write!(f, "unknown key kind 0x{k:02x}"),
            KeyError::BadLength => write!(f, "key too short or too long for its kind"),
        }
    }
}

impl std::error::Error for KeyError {}

/// Splits a length-prefixed string off the front of `rest`.
fn take_str(rest: &[u8]) -> Result<(&[u8], &[u8]), KeyError> {
    let (len, rest) = rest.split_first_chunk::<2>().ok_or(KeyError::BadLength)?;
    let len = usize::from(u16::from_be_bytes(*len));
    if rest.len() < len {
        return Err(KeyError::BadLength);
    }
    Ok(rest.split_at(len))
}

fn position(rest: &[u8]) -> Result<Position, KeyError> {
    if rest.len() != POS_LEN {
        return Err(KeyError::BadLength);
    }
    Position::from_bytes(rest).map_err(|_| KeyError::BadLength)
}

fn uuid(rest: &[u8]) -> Result<Uuid, KeyError> {
    let bytes: [u8; 16] = rest.try_into().map_err(|_| KeyError::BadLength)?;
    Ok(Uuid::from_bytes(bytes))
}

impl Keys {
    /// Decodes a key of this namespace.
    pub fn decode(&self, key: &[u8]) -> Result<KeyKind, KeyError> {
        let rest = key
            .strip_prefix(self.root())
            .ok_or(KeyError::OtherNamespace)?;
        let (&kind, rest) = rest.split_first().ok_or(KeyError::BadLength)?;
        let exact = |k: KeyKind| {
            if rest.is_empty() {
                Ok(k)
            } else {
                Err(KeyError::BadLength)
            }
        };
        match kind {
            TAG_SCHEMA => exact(KeyKind::Schema),
            TAG_HEAD => exact(KeyKind::Head),
            TAG_EVENT => Ok(KeyKind::Event(position(rest)?)),
            TAG_TYPE => {
                let (s, rest) = take_str(rest)?;
                Ok(KeyKind::Type {
                    event_type: s.to_vec(),
                    position: position(rest)?,
                })
            }
            TAG_TAG => {
                let (s, rest) = take_str(rest)?;
                Ok(KeyKind::Tag {
                    tag: s.to_vec(),
                    position: position(rest)?,
                })
            }
            TAG_ID => Ok(KeyKind::Id(uuid(rest)?)),
            TAG_BATCH => Ok(KeyKind::Batch(uuid(rest)?)),
            TAG_CHECKPOINT => {
                let (s, rest) = take_str(rest)?;
                if !rest.is_empty() {
                    return Err(KeyError::BadLength);
                }
                Ok(KeyKind::Checkpoint {
                    consumer: s.to_vec(),
                })
            }
            TAG_STATE => {
                let (s, rest) = take_str(rest)?;
                Ok(KeyKind::State {
                    consumer: s.to_vec(),
                    key: rest.to_vec(),
                })
            }
            other => Err(KeyError::UnknownKind(other)),
        }
    }

    /// Builds the key a [`KeyKind`] describes: `decode(&encode(k)) == k`. Strings longer than
    /// `u16::MAX` bytes cannot be keys (the limits keep them far shorter) and give `None`.
    pub fn encode(&self, kind: &KeyKind) -> Option<Vec<u8>> {
        let string = |s: &[u8]| u16::try_from(s.len()).is_ok();
        Some(match kind {
            KeyKind::Schema => self.schema(),
            KeyKind::Head => self.head(),
            KeyKind::Event(p) => with_pos(self.events_prefix(), p),
            KeyKind::Type {
                event_type,
                position,
            } => {
                if !string(event_type) {
                    return None;
                }
                with_pos(self.prefix_str(TAG_TYPE, event_type), position)
            }
            KeyKind::Tag { tag, position } => {
                if !string(tag) {
                    return None;
                }
                with_pos(self.prefix_str(TAG_TAG, tag), position)
            }
            KeyKind::Id(id) => self.id(id),
            KeyKind::Batch(t) => self.batch(t),
            KeyKind::Checkpoint { consumer } => {
                if !string(consumer) {
                    return None;
                }
                self.prefix_str(TAG_CHECKPOINT, consumer)
            }
            KeyKind::State { consumer, key } => {
                if !string(consumer) {
                    return None;
                }
                let mut k = self.prefix_str(TAG_STATE, consumer);
                k.extend_from_slice(key);
                k
            }
        })
    }

    fn prefix_str(&self, tag: u8, s: &[u8]) -> Vec<u8> {
        let mut k = self.root().to_vec();
        k.push(tag);
        k.extend_from_slice(&(s.len() as u16).to_be_bytes());
        k.extend_from_slice(s);
        k
    }
}

fn with_pos(mut prefix: Vec<u8>, p: &Position) -> Vec<u8> {
    prefix.extend_from_slice(&p.to_bytes());
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builder_decodes_back() {
        let k = Keys::new("ns");
        let p = Position::new(7).unwrap();
        let id = Uuid::from_u128(9);
        let mut t = k.type_prefix("Type");
        t.extend_from_slice(&p.to_bytes());
        let mut g = k.tag_prefix("tag:1");
        g.extend_from_slice(&p.to_bytes());
        let mut e = k.events_prefix();
        e.extend_from_slice(&p.to_bytes());
        let cases = [
            (k.schema(), KeyKind::Schema),
            (k.head(), KeyKind::Head),
            (e, KeyKind::Event(p)),
            (
                t,
                KeyKind::Type {
                    event_type: b"Type".to_vec(),
                    position: p,
                },
            ),
            (
                g,
                KeyKind::Tag {
                    tag: b"tag:1".to_vec(),
                    position: p,
                },
            ),
            (k.id(&id), KeyKind::Id(id)),
            (k.batch(&id), KeyKind::Batch(id)),
            (
                k.checkpoint("view"),
                KeyKind::Checkpoint {
                    consumer: b"view".to_vec(),
                },
            ),
            (
                k.state("view", b"k\x00y"),
                KeyKind::State {
                    consumer: b"view".to_vec(),
                    key: b"k\x00y".to_vec(),
                },
            ),
        ];
        for (bytes, kind) in cases {
            assert_eq!(k.decode(&bytes), Ok(kind.clone()), "{bytes:?}");
            assert_eq!(k.encode(&kind), Some(bytes));
        }
    }

    #[test]
    fn malformed_keys_are_errors() {
        let k = Keys::new("ns");
        assert_eq!(k.decode(b"xx"), Err(KeyError::OtherNamespace));
        assert_eq!(k.decode(k.root()), Err(KeyError::BadLength));
        let mut bad = k.root().to_vec();
        bad.push(b'z');
        assert_eq!(k.decode(&bad), Err(KeyError::UnknownKind(b'z')));
        let mut head = k.head();
        head.push(0);
        assert_eq!(k.decode(&head), Err(KeyError::BadLength));
        let mut short = k.type_prefix("abc");
        short.truncate(short.len() - 1);
        assert_eq!(k.decode(&short), Err(KeyError::BadLength));
    }
}
