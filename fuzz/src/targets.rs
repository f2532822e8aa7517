//! The bodies of the fuzz targets. Each takes arbitrary bytes and panics only when an invariant
//! breaks (a panic is what the fuzzer reports). This file depends on `dcb-core` and `serde_json`
//! only: `crates/fairway-reliability` includes it with `#[path]` and runs it on stable in
//! `cargo test`.

use dcb_core::codec::{decode_event, decode_keys, encode_event};
use dcb_core::{Event, Position, PositionError, Query, StoreError, limits};

/// The stored-record codec: any bytes decode to a record or to `Corrupted`; a record that decodes
/// re-encodes to bytes that decode to the same record; `decode_keys` agrees with `decode_event`.
pub fn codec(data: &[u8]) {
    match decode_event(data) {
        Ok(stored) => {
            // Metadata read in place agrees with the map it builds.
            let m = &stored.event.metadata;
            assert_eq!(m.len(), m.entries().count());
            assert!(m.entries().all(|(k, v)| m.value(k) == Some(v)));
            assert_eq!(**m, m.clone().into_map());
            assert_eq!(*m, **m);
            let again = encode_event(&stored.event, stored.batch_index, stored.batch_len);
            match decode_event(&again) {
                Ok(back) => assert_eq!(back, stored, "re-encoded record differs"),
                Err(e) => panic!("a re-encoded record does not decode: {e}"),
            }
            match decode_keys(data) {
                Ok(keys) => {
                    assert_eq!(keys.event_type, stored.event.event_type);
                    assert_eq!(keys.id, stored.event.id);
                    assert!(
                        keys.tags
                            .iter()
                            .copied()
                            .eq(stored.event.tags.iter().map(|t| t.as_str()))
                    );
                }
                Err(e) => panic!("decode_event accepted what decode_keys rejects: {e}"),
            }
        }
        Err(StoreError::Corrupted(_)) => {}
        Err(e) => panic!("undecodable bytes must be Corrupted, got {e:?}"),
    }
}

/// Position parsing: text, bytes and JSON. A parsed position is at most 29 ASCII digits below
/// 2^96 and prints back to the same value; 12 bytes always make a position.
pub fn position(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        match text.parse::<Position>() {
            Ok(p) => {
                assert!(text.bytes().all(|b| b.is_ascii_digit()) && text.len() <= 29);
                assert_eq!(p.to_string().parse::<Position>(), Ok(p));
                assert!(p <= Position::MAX);
            }
            Err(PositionError::NotDecimal(echo) | PositionError::OutOfRange(echo)) => {
                assert!(echo.chars().count() <= 40, "error echoes too much input");
            }
            Err(_) => {}
        }
        if let Ok(p) = serde_json::from_str::<Position>(text) {
            assert_eq!(serde_json::to_string(&p).ok(), Some(format!("\"{p}\"")));
        }
    }
    match Position::from_bytes(data) {
        Ok(p) => assert_eq!(p.to_bytes().as_slice(), data),
        Err(e) => assert_eq!(e, PositionError::BadLength(data.len())),
    }
}

/// Query JSON: any bytes decode to a query or an error; a decoded query validates or is
/// rejected with a typed error; normalising is idempotent and keeps what the query matches.
pub fn query_json(data: &[u8]) {
    let Ok(query) = serde_json::from_slice::<Query>(data) else {
        return;
    };
    let _ = limits::validate_query(&query);
    let normal = query.normalized();
    assert_eq!(normal.normalized(), normal, "normalising is not idempotent");
    let probe = Event::new("A", Vec::new()).tag("a").tag("b:1");
    assert_eq!(
        query.matches(&probe),
        normal.matches(&probe),
        "normalising changed what matches"
    );
    if let Ok(text) = serde_json::to_string(&query) {
        assert_eq!(
            serde_json::from_str::<Query>(&text).ok(),
            Some(query),
            "query JSON does not round-trip"
        );
    }
}
