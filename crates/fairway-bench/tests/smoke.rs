//! Each adapter passes a three-operation smoke check, so the benchmark drives real stores
//! correctly: append, a conditional append that must fail (and one that must pass), read back.

#![allow(clippy::unwrap_used)]

use fairway_bench::{BenchEvent, Guard, Kind, Outcome, open};

fn ev(tag: &str, n: u8) -> BenchEvent {
    BenchEvent::new("Smoked", vec![tag.to_owned()], vec![n; 10])
}

#[test]
fn every_adapter_appends_conditions_and_reads_back() {
    for kind in Kind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = open(kind, dir.path()).unwrap();
        let name = kind.name();

        // 1. Unconditional append.
        let Outcome::Written(p1) = store.append(vec![ev("a", 1)], None).unwrap() else {
            panic!("{name}: unconditional append conflicted")
        };
        // 2. A decision read before `a` existed must fail; one read after it must pass.
        let stale = Guard {
            tag: "a".into(),
            after: None,
        };
        assert_eq!(
            store.append(vec![ev("a", 2)], Some(stale)).unwrap(),
            Outcome::Conflict,
            "{name}"
        );
        let read = store.read_tag("a").unwrap();
        assert_eq!(read.head, Some(p1), "{name}");
        let fresh = Guard {
            tag: "a".into(),
            after: read.head,
        };
        let Outcome::Written(p2) = store
            .append(vec![ev("a", 3), ev("b", 4)], Some(fresh))
            .unwrap()
        else {
            panic!("{name}: fresh conditional append conflicted")
        };
        assert!(p2 > p1, "{name}");
        // Another tag's events do not fail a guard on `b` taken before they existed... but `b` now does.
        let on_b = Guard {
            tag: "b".into(),
            after: Some(p1),
        };
        assert_eq!(
            store.append(vec![ev("c", 5)], Some(on_b)).unwrap(),
            Outcome::Conflict,
            "{name}"
        );

        // 3. Read back: by tag and everything, with the payloads.
        let a = store.read_tag("a").unwrap();
        assert_eq!((a.events, a.bytes, a.head), (2, 20, Some(p2)), "{name}");
        let all = store.scan().unwrap();
        assert_eq!((all.events, all.last), (3, Some(p2)), "{name}");
    }
}

#[test]
fn paged_scans_return_every_event_once() {
    // More than one UmaDB read page (5000), to pin the paging start bound.
    for kind in Kind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = open(kind, dir.path()).unwrap();
        fairway_bench::workloads::populate(store.as_ref(), 12_345, 100).unwrap();
        let all = store.scan().unwrap();
        assert_eq!(all.events, 12_345, "{}", kind.name());
        assert_eq!(
            all.bytes,
            12_345 * fairway_bench::workloads::PAYLOAD as u64,
            "{}",
            kind.name()
        );
        assert_eq!(
            store.read_tag("tag:7").unwrap().events,
            124,
            "{}",
            kind.name()
        );
    }
}
