//! The building blocks of the segment index files (`segindex`): LEB128 varints, a bounds-checked
//! reader over untrusted bytes, and a bloom filter.

/// Bloom filter bits per key.
const BLOOM_BITS: usize = 10;
/// Bloom filter hash functions.
const BLOOM_K: u8 = 7;

/// Appends `v` as a LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A reader over untrusted bytes: every read is bounds-checked.
pub(crate) struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Cursor<'a> {
        Cursor { b, at: 0 }
    }
    pub(crate) fn done(&self) -> bool {
        self.at >= self.b.len()
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Some(u64::from_le_bytes(a))
    }
    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
}

/// A blocked bloom filter: each key's `k` bits lie in one 512-bit block (one cache line), chosen
/// by the low half of the key's xxh3-128 hash; the high half gives the bits (9 bits each).
pub(crate) struct Bloom {
    pub(crate) k: u8,
    /// A multiple of 8 words (whole blocks), at least one block.
    pub(crate) words: Vec<u64>,
}

impl Bloom {
    pub(crate) fn with_keys(n: usize) -> Bloom {
        let bits = (n.max(1) * BLOOM_BITS).next_multiple_of(512);
        Bloom {
            k: BLOOM_K,
            words: vec![0; bits / 64],
        }
    }
    /// The hash a key is filed under (compute it once to ask several filters).
    pub(crate) fn hash(key: &[u8]) -> u128 {
        xxhash_rust::xxh3::xxh3_128(key)
    }
    fn probes(&self, h: u128) -> impl Iterator<Item = usize> + use<> {
        let blocks = (self.words.len() / 8).max(1) as u64;
        let block = ((h as u64) % blocks) as usize * 512;
        let bits = (h >> 64) as u64;
        (0..u32::from(self.k).min(7)).map(move |i| block + ((bits >> (9 * i)) & 511) as usize)
    }
    pub(crate) fn insert(&mut self, key: &[u8]) {
        for b in self.probes(Bloom::hash(key)).collect::<Vec<_>>() {
            self.words[b / 64] |= 1 << (b % 64);
        }
    }
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(Bloom::hash(key))
    }
    /// [`Bloom::may_contain`] of the key with hash `h` (see [`Bloom::hash`]).
    pub(crate) fn may_contain_hash(&self, h: u128) -> bool {
        self.probes(h).all(|b| {
            self.words
                .get(b / 64)
                .is_some_and(|w| w & (1 << (b % 64)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn varints_round_trip_and_bad_bytes_are_refused() {
        let mut b = Vec::new();
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            put_varint(&mut b, v);
        }
        let mut c = Cursor::new(&b);
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(c.varint(), Some(v));
        }
        assert!(c.done());
        assert_eq!(Cursor::new(&[0x80]).varint(), None);
        assert_eq!(Cursor::new(&[0xff; 11]).varint(), None);
        assert_eq!(Cursor::new(&[1, 2]).u32(), None);
    }

    #[test]
    fn the_bloom_filter_has_no_false_negatives_and_few_false_positives() {
        let mut f = Bloom::with_keys(1000);
        for i in 0..1000u32 {
            f.insert(&i.to_le_bytes());
        }
        assert!((0..1000u32).all(|i| f.may_contain(&i.to_le_bytes())));
        let false_positives = (1000..11_000u32)
            .filter(|i| f.may_contain(&i.to_le_bytes()))
            .count();
        assert!(false_positives < 300, "{false_positives} of 10000");
    }
}
