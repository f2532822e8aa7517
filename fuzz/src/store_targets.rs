//! Fuzz target bodies for the storage decoders of the two backends: the embedded store's index
//! snapshot file and segment files, and the KV engine's key layout. Like `targets.rs`, this file
//! is also compiled by `crates/fairway-reliability`'s tests (with `#[path]`) and run on stable.

use dcb_core::StoreError;
use dcb_embedded::{segment_file, snapshot};
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

/// The records and frames of a segment made from `bytes`: a 0xFF byte ends a record, a 0xFE
/// byte ends a record and its frame (at most 64 records).
fn frames_of(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let (mut frames, mut frame, mut record) = (Vec::new(), Vec::new(), Vec::new());
    for &b in bytes {
        match b {
            0xFF | 0xFE => {
                frame.push(std::mem::take(&mut record));
                if b == 0xFE {
                    frames.push(std::mem::take(&mut frame));
                }
            }
            _ => record.push(b),
        }
    }
    frame.push(record);
    frames.push(frame);
    let mut left = 64usize;
    for f in &mut frames {
        f.truncate(left);
        left -= f.len();
    }
    frames.retain(|f| !f.is_empty());
    frames
}

/// A segment file, opened and read back as a store would (`segment_file::inspect`): its records
/// or `Corrupted`, never a panic or another error. The first input byte chooses whether the rest
/// is the whole file or records in frames behind a valid header of version 1 or 2, every
/// checksum right (so the fuzzer reaches the frame and record parsers past them), then maybe one
/// byte changed; such a segment, left intact, reads back exactly the records it was made of.
pub fn segment(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (file, written) = if mode & 1 == 0 {
        (rest.to_vec(), None)
    } else {
        let version = if mode & 2 == 0 { 1 } else { 2 };
        let frames = frames_of(rest);
        let mut file = segment_file::segment_bytes(1, version, &frames);
        let records: Vec<Vec<u8>> = frames.into_iter().flatten().collect();
        if mode & 4 != 0 {
            // One byte changed, at a place and by a value the mode byte picks.
            let at = usize::from(mode >> 3) * 37 % file.len();
            file[at] ^= 1 << (mode >> 5);
            (file, None)
        } else {
            (file, Some(records))
        }
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let segments = dir.path().join(segment_file::DIR);
    if std::fs::create_dir_all(&segments).is_err()
        || std::fs::write(segments.join(segment_file::file_name(1)), &file).is_err()
    {
        return;
    }
    match segment_file::inspect(&segments) {
        Ok(found) => {
            assert_eq!(
                found.records, found.head,
                "every record up to the head reads back"
            );
            if let Some(records) = written {
                assert_eq!(
                    found.head,
                    records.len() as u64,
                    "an intact segment keeps its records"
                );
                let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
                assert_eq!(found.bytes, bytes);
            }
        }
        Err(StoreError::Corrupted(reason)) => {
            assert!(written.is_none(), "an intact segment refused: {reason}");
            assert!(!reason.is_empty(), "an empty reason");
        }
        Err(e) => panic!("a segment file's bytes gave {e:?}, not Corrupted"),
    }
}
