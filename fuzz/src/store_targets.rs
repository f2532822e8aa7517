//! Fuzz target bodies for the storage decoders of the two backends: the embedded store's index
//! snapshot file and the KV engine's key layout. Like `targets.rs`, this file is also compiled
//! by `crates/fairway-reliability`'s tests (with `#[path]`) and run on stable.

use dcb_embedded::snapshot;
use dcb_kv::keys::Keys;

/// The index snapshot file: any bytes are a usable snapshot or a reason, never a panic. The
/// first input byte chooses whether the rest is the whole file or a body framed with a valid
/// header and checksum (so the fuzzer reaches the body decoder past the crc32).
pub fn snapshot(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        snapshot::frame(rest)
    };
    match snapshot::inspect(&file) {
        Ok(s) => {
            // A snapshot that decodes is internally consistent (`inspect` checks each posting
            // list against the head); an empty one indexes nothing.
            if s.head == 0 {
                assert_eq!(
                    s.types + s.tags + s.ids,
                    0,
                    "postings or ids in a snapshot with head 0"
                );
            }
        }
        Err(reason) => assert!(!reason.is_empty(), "an empty reason"),
    }
}

/// The KV key layout: any bytes decode to a key kind or an error; a decoded key re-encodes to
/// exactly the same bytes. The first byte picks the namespace and whether the rest is taken as
/// a whole key or as the part after the namespace's root.
pub fn kv_keys(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = Keys::new(match mode >> 1 & 3 {
        0 => "fairway",
        1 => "",
        2 => "a",
        _ => "ns\u{0}with\u{ff}bytes",
    });
    let key = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        [keys.root(), rest].concat()
    };
    if let Ok(kind) = keys.decode(&key) {
        assert_eq!(
            keys.encode(&kind).as_deref(),
            Some(key.as_slice()),
            "{kind:?} re-encodes differently"
        );
    }
}
