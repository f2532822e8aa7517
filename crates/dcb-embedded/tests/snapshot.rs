//! Index snapshots: a store opened from its snapshot answers exactly like one whose indexes were
//! rebuilt from every event; a damaged or foreign snapshot is ignored, never trusted.
#![allow(clippy::unwrap_used)]

use dcb_core::{
    AppendCondition, Event, EventStore, Query, QueryItem, ReadOptions, StoreError, Uuid,
};
use dcb_embedded::{EmbeddedStore, Options, snapshot};

fn ev(i: u64) -> Event {
    Event::new(
        if i.is_multiple_of(3) { "A" } else { "B" },
        format!("{i}").into_bytes(),
    )
    .tag(format!("n:{}", i % 17))
    .tag(format!("m:{}", i % 5))
    .with_id(Uuid::from_u128(u128::from(i) + 1))
}

async fn fill(dir: &std::path::Path, options: Options, from: u64, to: u64) {
    let s = EmbeddedStore::open_with(dir, options).unwrap();
    let mut i = from;
    while i < to {
        let batch: Vec<Event> = (i..(i + 7).min(to)).map(ev).collect();
        i += batch.len() as u64;
        s.append(batch, vec![]).await.unwrap();
    }
}

async fn answers(s: &EmbeddedStore) -> Vec<Vec<u128>> {
    let queries = [
        Query::All,
        Query::of_type("A"),
        Query::tagged("n:3"),
        Query::item(QueryItem::new().r#type("B").tags(["n:4", "m:2"])),
        Query::tagged("m:1").or(QueryItem::new().r#type("A")),
    ];
    let mut out = Vec::new();
    for q in queries {
        let r = s
            .read(q, ReadOptions::new())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        out.push(r.iter().map(|e| e.position.get()).collect());
    }
    out
}

#[tokio::test]
async fn a_store_opened_from_its_snapshot_answers_like_a_full_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots every 100 events and at close; then more events after the last snapshot.
    fill(
        dir.path(),
        Options::default().index_snapshot_every(100),
        0,
        1000,
    )
    .await;
    assert!(snapshot::path(dir.path()).exists());
    fill(
        dir.path(),
        Options::default().index_snapshot_every(0),
        1000,
        1234,
    )
    .await;
    let from_snapshot = EmbeddedStore::open(dir.path()).unwrap();
    let a = answers(&from_snapshot).await;
    let stats = from_snapshot.stats();
    // Conditions and idempotency see the events indexed from the snapshot.
    let r = from_snapshot
        .append(
            vec![ev(5)],
            vec![AppendCondition::none_match(Query::tagged("n:5"))],
        )
        .await;
    assert!(matches!(r, Err(StoreError::IdConflict { .. })), "{r:?}");
    let replay = from_snapshot.append(vec![ev(5)], vec![]).await;
    assert!(
        matches!(replay, Err(StoreError::IdConflict { .. })),
        "{replay:?}"
    );
    drop(from_snapshot);
    let rebuilt =
        EmbeddedStore::open_with(dir.path(), Options::default().index_snapshot_every(0)).unwrap();
    assert_eq!(answers(&rebuilt).await, a);
    assert_eq!(rebuilt.stats(), stats);
    assert_eq!(stats.events, 1234);
}

#[tokio::test]
async fn a_damaged_snapshot_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), Options::default(), 0, 300).await;
    let good = answers(
        &EmbeddedStore::open_with(dir.path(), Options::default().index_snapshot_every(0)).unwrap(),
    )
    .await;
    let path = snapshot::path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(answers(&s).await, good);
    drop(s);
    std::fs::write(&path, b"FWIX\0\0\0\x09garbage").unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(answers(&s).await, good);
}

#[tokio::test]
async fn a_snapshot_ahead_of_the_events_is_ignored() {
    let big = tempfile::tempdir().unwrap();
    fill(big.path(), Options::default(), 0, 500).await;
    let small = tempfile::tempdir().unwrap();
    fill(small.path(), Options::default(), 0, 100).await;
    let good = answers(
        &EmbeddedStore::open_with(small.path(), Options::default().index_snapshot_every(0))
            .unwrap(),
    )
    .await;
    std::fs::copy(snapshot::path(big.path()), snapshot::path(small.path())).unwrap();
    let s = EmbeddedStore::open(small.path()).unwrap();
    assert_eq!(s.stats().events, 100);
    assert_eq!(answers(&s).await, good);
}

/// A store opened without a snapshot (an older data directory, or snapshots were off) writes one
/// when it closes, even if nothing was appended in between.
#[tokio::test]
async fn closing_a_store_opened_without_a_snapshot_writes_one() {
    let dir = tempfile::tempdir().unwrap();
    fill(
        dir.path(),
        Options::default().index_snapshot_every(0),
        0,
        50,
    )
    .await;
    assert!(!snapshot::path(dir.path()).exists());
    drop(EmbeddedStore::open(dir.path()).unwrap());
    assert!(snapshot::path(dir.path()).exists());
}
