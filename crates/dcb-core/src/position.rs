//! Positions: opaque, unique, strictly increasing in commit order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The place of an event in the log: a 96-bit unsigned value, strictly increasing in commit order,
/// possibly with gaps.
///
/// On FoundationDB it is the 12-byte versionstamp (10-byte commit version + 2-byte index in the
/// batch); the embedded backend uses a plain counter. Humans and JSON see it as a decimal string
/// (`"42"`), because 96 bits do not fit a JSON number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    // Two words rather than a `u128`: the same order (`hi` first), but aligned to 8 bytes, not
    // 16, so that an event and its position pack without padding.
    hi: u64,
    lo: u64,
}

/// Why a string or byte slice is not a [`Position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PositionError {
    /// Not a decimal number (sign, spaces, letters, or empty).
    #[error("a position is a decimal number of at most 29 digits, got {0:?}")]
    NotDecimal(String),
    /// A number at or above 2^96.
    #[error("position {0} is out of range (at most 2^96 - 1)")]
    OutOfRange(String),
    /// Not exactly 12 bytes.
    #[error("a position is 12 bytes, got {0}")]
    BadLength(usize),
}

impl Position {
    const fn of(value: u128) -> Position {
        Position {
            hi: (value >> 64) as u64,
            lo: value as u64,
        }
    }

    /// The largest position: 2^96 - 1.
    pub const MAX: Position = Position::of((1u128 << 96) - 1);
    /// The smallest position, 0. No backend assigns it to an event; it is a valid `after` bound.
    pub const ZERO: Position = Position::of(0);

    /// A position from a number; `None` when it needs more than 96 bits.
    pub const fn new(value: u128) -> Option<Position> {
        if value <= Self::MAX.get() {
            Some(Position::of(value))
        } else {
            None
        }
    }

    /// A position from a 64-bit counter (always in range).
    pub const fn from_u64(value: u64) -> Position {
        Position { hi: 0, lo: value }
    }

    /// The position as a number.
    pub const fn get(self) -> u128 {
        ((self.hi as u128) << 64) | self.lo as u128
    }

    /// The position as a 64-bit counter, when it fits.
    pub fn as_u64(self) -> Option<u64> {
        (self.hi == 0).then_some(self.lo)
    }

    /// The next position, `None` at [`Position::MAX`].
    pub fn next(self) -> Option<Position> {
        Position::new(self.get() + 1)
    }

    /// The previous position, `None` at zero.
    pub fn prev(self) -> Option<Position> {
        self.get().checked_sub(1).map(Position::of)
    }

    /// Big-endian 12 bytes: byte order equals numeric order, so positions sort in keys.
    pub fn to_bytes(self) -> [u8; 12] {
        let all = self.get().to_be_bytes();
        let mut out = [0u8; 12];
        out.copy_from_slice(&all[4..]);
        out
    }

    /// The inverse of [`Position::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Position, PositionError> {
        if bytes.len() != 12 {
            return Err(PositionError::BadLength(bytes.len()));
        }
        let mut all = [0u8; 16];
        all[4..].copy_from_slice(bytes);
        Ok(Position::of(u128::from_be_bytes(all)))
    }

    /// A FoundationDB versionstamp: 10-byte commit version, 2-byte index in the batch.
    pub fn from_versionstamp(commit_version: [u8; 10], index: u16) -> Position {
        let mut bytes = [0u8; 12];
        bytes[..10].copy_from_slice(&commit_version);
        bytes[10..].copy_from_slice(&index.to_be_bytes());
        let mut all = [0u8; 16];
        all[4..].copy_from_slice(&bytes);
        Position::of(u128::from_be_bytes(all))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.get())
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.get())
    }
}

impl FromStr for Position {
    type Err = PositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 29 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PositionError::NotDecimal(truncate(s)));
        }
        let value: u128 = s
            .parse()
            .map_err(|_| PositionError::NotDecimal(truncate(s)))?;
        Position::new(value).ok_or_else(|| PositionError::OutOfRange(truncate(s)))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u128(self.get())
        }
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let v = u128::deserialize(deserializer)?;
            Position::new(v).ok_or_else(|| serde::de::Error::custom("position out of range"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_sort() {
        let a = Position::from_u64(255);
        let b = Position::from_u64(256);
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(Position::from_bytes(&b.to_bytes()), Ok(b));
        assert_eq!(
            Position::from_bytes(&Position::MAX.to_bytes()),
            Ok(Position::MAX)
        );
        assert_eq!(
            Position::from_bytes(&[1, 2]),
            Err(PositionError::BadLength(2))
        );
    }

    #[test]
    fn decimal_parsing_rejects_garbage() {
        assert_eq!("42".parse::<Position>(), Ok(Position::from_u64(42)));
        assert!(matches!(
            "-1".parse::<Position>(),
            Err(PositionError::NotDecimal(_))
        ));
        assert!(matches!(
            "".parse::<Position>(),
            Err(PositionError::NotDecimal(_))
        ));
        assert!(matches!(
            " 1".parse::<Position>(),
            Err(PositionError::NotDecimal(_))
        ));
        assert!(matches!(
            "1e3".parse::<Position>(),
            Err(PositionError::NotDecimal(_))
        ));
        let too_big = (1u128 << 96).to_string();
        assert!(matches!(
            too_big.parse::<Position>(),
            Err(PositionError::OutOfRange(_))
        ));
        assert_eq!(
            Position::MAX.to_string().parse::<Position>(),
            Ok(Position::MAX)
        );
    }

    #[test]
    fn json_is_a_decimal_string() {
        let p = Position::from_u64(7);
        assert_eq!(serde_json::to_string(&p).ok().as_deref(), Some("\"7\""));
        assert_eq!(serde_json::from_str::<Position>("\"7\"").ok(), Some(p));
        assert!(serde_json::from_str::<Position>("7").is_err());
        assert!(serde_json::from_str::<Position>("\"x\"").is_err());
    }

    #[test]
    fn versionstamp_orders_by_commit_then_index() {
        let a = Position::from_versionstamp([0, 0, 0, 0, 0, 0, 0, 1, 0, 0], 5);
        let b = Position::from_versionstamp([0, 0, 0, 0, 0, 0, 0, 1, 0, 0], 6);
        let c = Position::from_versionstamp([0, 0, 0, 0, 0, 0, 0, 2, 0, 0], 0);
        assert!(a < b && b < c);
        assert_eq!(&a.to_bytes()[10..], &[0, 5]);
    }

    #[test]
    fn order_and_value_hold_across_the_64_bit_boundary() {
        let below = Position::from_u64(u64::MAX);
        let above = Position::new(1u128 << 64).unwrap_or_default();
        assert!(below < above && above < Position::MAX);
        assert_eq!(below.next(), Some(above));
        assert_eq!(above.prev(), Some(below));
        assert_eq!(above.get(), 1u128 << 64);
        assert_eq!(above.as_u64(), None);
        assert_eq!(below.as_u64(), Some(u64::MAX));
        assert_eq!(Position::MAX.next(), None);
        assert_eq!(Position::from_bytes(&above.to_bytes()), Ok(above));
        assert_eq!(above.to_string().parse::<Position>(), Ok(above));
        // Eight-byte alignment: an event and its position pack without padding.
        assert_eq!(std::mem::align_of::<Position>(), 8);
    }
}
