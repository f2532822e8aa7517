//! Hostile input against every `dcb-core` decoder of untrusted bytes and every validation rule:
//! the stored-record codec, positions (decimal, bytes, JSON), queries and events as JSON, read
//! options, and appends that break the limits. Nothing may panic; bad input is a typed error and
//! nothing is written.
#![allow(clippy::unwrap_used)]

use dcb_core::codec::{decode_event, decode_keys, encode_event};
use dcb_core::limits::{self, MAX_TAG_LEN, MAX_TAGS_PER_EVENT, MAX_TYPE_LEN};
use dcb_core::{
    AppendCondition, AppendRequest, Event, EventStore, InputError, MemoryStore, Position,
    PositionError, Query, QueryItem, ReadOptions, StoreError, Uuid,
};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn event_strategy() -> impl Strategy<Value = Event> {
    (
        "[A-Za-z]{1,12}",
        proptest::collection::btree_set("[a-z0-9:]{1,10}", 0..5),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::btree_map("[a-z]{1,4}", "\\PC{0,8}", 0..3),
        proptest::option::of(any::<u128>()),
    )
        .prop_map(|(t, tags, data, meta, id)| {
            let mut e = Event::new(t, data).tags(tags);
            for (k, v) in meta {
                e = e.meta(k, v);
            }
            if let Some(id) = id {
                e = e.with_id(Uuid::from_u128(id));
            }
            e
        })
}

proptest! {
    #![proptest_config(config(2000))]

    /// Arbitrary bytes are a stored record or `Corrupted`, never a panic.
    #[test]
    fn codec_arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        match decode_event(&bytes) {
            Ok(stored) => {
                // Whatever decodes re-encodes to something that decodes to the same event.
                let again = encode_event(&stored.event, stored.batch_index, stored.batch_len);
                prop_assert_eq!(decode_event(&again).unwrap(), stored);
            }
            Err(e) => prop_assert!(matches!(e, StoreError::Corrupted(_)), "{e:?}"),
        }
        if let Err(e) = decode_keys(&bytes) {
            prop_assert!(matches!(e, StoreError::Corrupted(_)), "{e:?}");
        }
    }

    /// Version byte 1 followed by arbitrary bytes reaches the postcard decoder itself.
    #[test]
    fn codec_versioned_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = vec![1u8];
        bytes.extend(body);
        if let Err(e) = decode_event(&bytes) {
            prop_assert!(matches!(e, StoreError::Corrupted(_)), "{e:?}");
        }
        let _ = decode_keys(&bytes);
    }

    /// A valid record with flipped, truncated or appended bytes: an error or a record, no panic.
    #[test]
    fn codec_mutated_records_never_panic(
        event in event_strategy(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let good = encode_event(&event, 0, 1);
        prop_assert_eq!(&decode_event(&good).unwrap().event, &event);
        let mut bad = good.clone();
        for (i, b) in &flips {
            let at = i.index(bad.len());
            bad[at] ^= b | 1;
        }
        let _ = decode_event(&bad);
        let _ = decode_keys(&bad);
        let truncated = &good[..cut.index(good.len())];
        prop_assert!(decode_event(truncated).is_err());
        let mut longer = good.clone();
        longer.extend(&tail);
        let _ = decode_event(&longer);
    }

    /// Any string parses to a position only when it is at most 29 ASCII digits below 2^96, and
    /// then prints back as the same number.
    #[test]
    fn position_from_any_string(s in "\\PC{0,40}|[0-9]{0,35}|-[0-9]{1,5}|\\+[0-9]{1,5}") {
        match s.parse::<Position>() {
            Ok(p) => {
                prop_assert!(s.bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(p.get(), s.parse::<u128>().unwrap());
                prop_assert_eq!(p.to_string().parse::<Position>(), Ok(p));
            }
            Err(PositionError::NotDecimal(_)) => prop_assert!(
                s.is_empty() || s.len() > 29 || !s.bytes().all(|b| b.is_ascii_digit())
            ),
            Err(PositionError::OutOfRange(_)) => {
                prop_assert!(s.parse::<u128>().unwrap() > Position::MAX.get());
            }
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
        // The same string as a JSON value never panics either.
        let _ = serde_json::from_value::<Position>(serde_json::Value::String(s));
    }

    /// Any byte slice: a position when it is exactly 12 bytes, `BadLength` otherwise.
    #[test]
    fn position_from_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
        match Position::from_bytes(&bytes) {
            Ok(p) => {
                prop_assert_eq!(bytes.len(), 12);
                prop_assert_eq!(p.to_bytes().to_vec(), bytes);
            }
            Err(e) => prop_assert_eq!(e, PositionError::BadLength(bytes.len())),
        }
    }

    /// Any text as a query or an event in JSON: an error or a value, never a panic; a decoded
    /// query validates or is rejected with a typed error.
    #[test]
    fn query_and_event_json_never_panic(text in "\\PC{0,200}") {
        if let Ok(q) = serde_json::from_str::<Query>(&text) {
            let _ = limits::validate_query(&q);
            let _ = q.normalized();
        }
        if let Ok(e) = serde_json::from_str::<Event>(&text) {
            let _ = limits::validate_event(&e);
        }
        let _ = serde_json::from_str::<ReadOptions>(&text);
    }

    /// Structured but hostile queries (control characters, empty or long terms): validation
    /// accepts exactly the ones within the limits.
    #[test]
    fn query_validation_matches_the_rules(
        items in proptest::collection::vec(
            (proptest::collection::vec("\\PC{0,3}|[\\x00-\\x1f]{1,2}|x{250,260}", 0..3),
             proptest::collection::vec("\\PC{0,3}|[\\x00-\\x1f]{1,2}|x{250,260}", 0..3)),
            0..4),
    ) {
        let q = Query::items(items.iter().map(|(ty, tg)| QueryItem::new().types(ty.clone()).tags(tg.clone())));
        let ok = !items.is_empty()
            && items.iter().all(|(ty, tg)| {
                ty.iter().all(|t| !t.is_empty() && t.len() <= MAX_TYPE_LEN && !t.chars().any(char::is_control))
                    && tg.iter().all(|t| !t.is_empty() && t.len() <= MAX_TAG_LEN && !t.chars().any(char::is_control))
            });
        prop_assert_eq!(limits::validate_query(&q).is_ok(), ok, "{:?}", q);
    }
}

#[test]
fn position_edge_cases_in_json_and_text() {
    for bad in [
        "-1", "-0", "+1", " 1", "1 ", "0x10", "1e3", "1.0", "", "٣", "1\u{0}",
    ] {
        assert!(bad.parse::<Position>().is_err(), "{bad:?} parsed");
    }
    let overflow = (1u128 << 96).to_string();
    assert!(matches!(
        overflow.parse::<Position>(),
        Err(PositionError::OutOfRange(_))
    ));
    // 39 digits: over the 29-digit bound, reported as "at most 29 digits".
    let msg = u128::MAX
        .to_string()
        .parse::<Position>()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("at most 29 digits"), "{msg}");
    assert!(matches!(
        "9".repeat(30).parse::<Position>(),
        Err(PositionError::NotDecimal(_))
    ));
    // A huge input is reported with a short excerpt, not echoed whole.
    let huge = "7".repeat(100_000);
    let msg = huge.parse::<Position>().unwrap_err().to_string();
    assert!(msg.len() < 200, "{} bytes of error message", msg.len());
    // JSON numbers (negative, floats, overflowing) are not positions: only decimal strings are.
    for bad in [
        "-1",
        "1.5",
        "1e40",
        "18446744073709551616",
        "null",
        "[]",
        "{}",
    ] {
        assert!(serde_json::from_str::<Position>(bad).is_err(), "{bad}");
    }
    assert_eq!(
        serde_json::from_str::<Position>(&format!("\"{}\"", Position::MAX)).unwrap(),
        Position::MAX
    );
}

#[test]
fn deep_json_is_an_error_not_a_stack_overflow() {
    // serde_json stops at 128 levels; a query nested 100 000 levels deep is rejected, not a crash.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(serde_json::from_str::<Query>(&deep).is_err());
    assert!(serde_json::from_str::<Event>(&deep).is_err());
    let deep_obj = format!("{}1{}", "{\"items\":".repeat(50_000), "}".repeat(50_000));
    assert!(serde_json::from_str::<Query>(&deep_obj).is_err());
}

#[test]
fn non_utf8_and_lone_surrogates_are_rejected_by_json() {
    let bytes = b"{\"type\":\"A\xff\",\"tags\":[]}";
    assert!(serde_json::from_slice::<Event>(bytes).is_err());
    assert!(serde_json::from_str::<Event>(r#"{"type":"\ud800"}"#).is_err());
    assert!(serde_json::from_str::<Query>(r#"{"items":[{"tags":["\udfff"]}]}"#).is_err());
}

fn store() -> MemoryStore {
    MemoryStore::new()
}

async fn rejected(store: &MemoryStore, request: AppendRequest) -> InputError {
    let before = store.head().await.unwrap();
    let err = store.append_request(request).await.unwrap_err();
    assert_eq!(store.head().await.unwrap(), before, "something was written");
    match err {
        StoreError::InvalidInput(e) => e,
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_appends_are_typed_errors_and_write_nothing() {
    let s = store();
    s.append(vec![Event::new("Seed", vec![])], vec![])
        .await
        .unwrap();

    let many_tags = Event::new("A", vec![]).tags((0..10_000).map(|i| format!("t{i}")));
    assert!(matches!(
        rejected(&s, AppendRequest::new(vec![many_tags])).await,
        InputError::TooMany {
            field: "tags",
            count: 10_000,
            max: MAX_TAGS_PER_EVENT
        }
    ));

    for bad in ["A\u{0}", "A\nB", "\u{7f}", "A\u{9b}"] {
        let e = Event::new(bad, vec![]);
        assert!(matches!(
            rejected(&s, AppendRequest::new(vec![e])).await,
            InputError::ControlCharacter { field: "type" }
        ));
        let e = Event::new("A", vec![]).tag(bad);
        assert!(matches!(
            rejected(&s, AppendRequest::new(vec![e])).await,
            InputError::ControlCharacter { field: "tag" }
        ));
    }

    let e = Event::new("A", vec![]).tag("");
    assert!(matches!(
        rejected(&s, AppendRequest::new(vec![e])).await,
        InputError::Empty { field: "tag" }
    ));
    let e = Event::new("x".repeat(MAX_TYPE_LEN + 1), vec![]);
    assert!(matches!(
        rejected(&s, AppendRequest::new(vec![e])).await,
        InputError::TooLong { field: "type", .. }
    ));
    let e = Event::new("A", vec![0u8; limits::MAX_DATA_LEN + 1]);
    assert!(matches!(
        rejected(&s, AppendRequest::new(vec![e])).await,
        InputError::TooLong { field: "data", .. }
    ));
    let e = Event::new("A", vec![]).tag("dup").tag("dup");
    assert!(matches!(
        rejected(&s, AppendRequest::new(vec![e])).await,
        InputError::DuplicateTag(_)
    ));
    let e = Event::new("A", vec![]).meta("k", "v".repeat(limits::MAX_METADATA_LEN));
    assert!(matches!(
        rejected(&s, AppendRequest::new(vec![e])).await,
        InputError::TooLong {
            field: "metadata",
            ..
        }
    ));
    let events: Vec<Event> = (0..=limits::MAX_EVENTS_PER_APPEND)
        .map(|_| Event::new("A", vec![]))
        .collect();
    assert!(matches!(
        rejected(&s, AppendRequest::new(events)).await,
        InputError::TooMany {
            field: "events",
            ..
        }
    ));
    // Many events, each within the data limit, together over the append limit.
    let events: Vec<Event> = (0..70)
        .map(|_| Event::new("A", vec![0u8; limits::MAX_DATA_LEN]))
        .collect();
    assert!(matches!(
        rejected(&s, AppendRequest::new(events)).await,
        InputError::TooLong {
            field: "append",
            ..
        }
    ));
    // A condition query with a hostile tag.
    let cond = AppendCondition::new(Query::tagged("a\u{1b}[31m"), None);
    assert!(matches!(
        rejected(
            &s,
            AppendRequest::new(vec![Event::new("A", vec![])]).condition(cond)
        )
        .await,
        InputError::ControlCharacter { field: "query tag" }
    ));
    let cond = AppendCondition::new(Query::items(Vec::new()), None);
    assert!(matches!(
        rejected(
            &s,
            AppendRequest::new(vec![Event::new("A", vec![])]).condition(cond)
        )
        .await,
        InputError::EmptyQuery
    ));
    let huge_query = Query::items((0..1000).map(|i| QueryItem::new().tag(format!("t{i}"))));
    let cond = AppendCondition::new(huge_query.clone(), None);
    assert!(matches!(
        rejected(
            &s,
            AppendRequest::new(vec![Event::new("A", vec![])]).condition(cond)
        )
        .await,
        InputError::TooMany {
            field: "query items",
            ..
        }
    ));
    // Tracking with a hostile consumer name.
    let req =
        AppendRequest::new(vec![Event::new("A", vec![])]).track("../../etc", Position::from_u64(1));
    // Slashes and dots are ordinary characters in a consumer name (names are keys, never paths).
    s.append_request(req).await.unwrap();
    let req =
        AppendRequest::new(vec![Event::new("A", vec![])]).track("c\u{0}", Position::from_u64(1));
    assert!(matches!(
        rejected(&s, req).await,
        InputError::ControlCharacter { field: "consumer" }
    ));

    // Reads with hostile queries are rejected the same way; extreme bounds are fine.
    assert!(s.read(huge_query, ReadOptions::new()).await.is_err());
    let all = s
        .read(Query::All, ReadOptions::new().after(Position::MAX))
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert!(all.is_empty());
    let all = s
        .read(
            Query::All,
            ReadOptions::new()
                .before(Position::ZERO)
                .backwards()
                .limit(u64::MAX),
        )
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert!(all.is_empty());
    let all = s
        .read(Query::All, ReadOptions::new().limit(u64::MAX))
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
}
