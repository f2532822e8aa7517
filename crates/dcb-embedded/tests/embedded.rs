//! Embedded-specific behaviour: locking, reopening, group commit, corruption.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use dcb_core::{AppendCondition, Event, EventStore, Position, Query, ReadOptions, StoreError};
use dcb_embedded::EmbeddedStore;

fn ev(t: &str, tag: &str) -> Event {
    Event::new(t.to_owned(), b"{}".to_vec()).tag(tag.to_owned())
}

#[tokio::test]
async fn second_open_of_the_same_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _a = EmbeddedStore::open(dir.path()).unwrap();
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::Locked(msg)) => assert!(msg.contains("another process"), "{msg}"),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[tokio::test]
async fn dropping_the_last_handle_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedStore::open(dir.path()).unwrap();
    a.append(vec![ev("A", "x")], vec![]).await.unwrap();
    drop(a);
    let b = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(b.head().await.unwrap(), Some(Position::from_u64(1)));
}

#[tokio::test]
async fn indexes_are_rebuilt_on_open_and_conditions_see_old_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        for i in 0..100 {
            s.append(
                vec![ev(
                    if i % 2 == 0 { "Even" } else { "Odd" },
                    &format!("n:{i}"),
                )],
                vec![],
            )
            .await
            .unwrap();
        }
    }
    let s = EmbeddedStore::open(dir.path()).unwrap();
    let stats = s.stats();
    assert_eq!(stats.events, 100);
    assert_eq!(stats.postings, 200);
    let odd = s
        .read(Query::of_type("Odd"), ReadOptions::new())
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(odd.len(), 50);
    let err = s
        .append(
            vec![ev("X", "n:7")],
            vec![AppendCondition::none_match(Query::tagged("n:7"))],
        )
        .await;
    assert!(
        matches!(err, Err(StoreError::ConditionFailed { condition: 0 })),
        "{err:?}"
    );
    let next = s.append(vec![ev("X", "n:100")], vec![]).await.unwrap();
    assert_eq!(next.positions, vec![Position::from_u64(101)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_groups_and_each_condition_sees_earlier_group_members() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    // 64 tasks race to claim 8 tags: exactly one winner per tag even inside one group.
    let mut handles = Vec::new();
    for i in 0..64 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let tag = format!("slot:{}", i % 8);
            s.append(
                vec![ev("Claimed", &tag)],
                vec![AppendCondition::none_match(Query::tagged(tag.clone()))],
            )
            .await
        }));
    }
    let mut wins = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::ConditionFailed { condition: 0 }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(wins, 8);
    assert_eq!(s.stats().events, 8);
}

#[tokio::test]
async fn unknown_schema_version_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let meta = db
            .keyspace(
                dcb_embedded::keys::META,
                fjall::KeyspaceCreateOptions::default,
            )
            .unwrap();
        meta.insert(dcb_embedded::keys::SCHEMA_KEY, 99u32.to_be_bytes())
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("schema version 99"), "{m}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
}

/// A frame by the segment log's format (see `dcb_embedded`'s `segment` module docs), with
/// correct checksums (those of a version-2 segment) around `records` from position `first` on.
fn frame(first: u64, records: &[&[u8]]) -> Vec<u8> {
    let mut body = 0u16.to_le_bytes().to_vec();
    for (i, r) in records.iter().enumerate() {
        let p = (first + i as u64).to_le_bytes();
        let check = (xxhash_rust::xxh3::xxh3_64(r) ^ xxhash_rust::xxh3::xxh3_64(&p)) as u32;
        body.extend_from_slice(&(r.len() as u32).to_le_bytes());
        body.extend_from_slice(&check.to_le_bytes());
        body.extend_from_slice(r);
    }
    let mut out = b"FWFR".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.extend_from_slice(&(records.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let header_crc = crc32fast::hash(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn undecodable_event_record_is_reported_at_open_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        s.append(vec![ev("A", "x")], vec![]).await.unwrap();
    }
    // An intact frame (checksums right) whose record is not an event record; no index snapshot,
    // so open indexes every record.
    std::fs::remove_file(dcb_embedded::snapshot::path(dir.path())).unwrap();
    let seg = dir.path().join("segments").join(format!("{:020}.seg", 1));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&frame(2, &[&[1u8, 0xff, 0xff, 0xff, 0xff, 0xff]]));
    std::fs::write(&seg, &bytes).unwrap();
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("position 2"), "{m}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
}

/// A creation that failed part-way (fjall's files present, its `version` marker not yet written)
/// holds no data and must not make the directory unopenable.
#[tokio::test]
async fn regression_failed_first_open_leaves_an_unopenable_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lock"), b"").unwrap();
    std::fs::write(dir.path().join("0.jnl"), vec![0u8; 4096]).unwrap();
    std::fs::create_dir_all(dir.path().join("keyspaces/0")).unwrap();
    std::fs::write(dir.path().join("unrelated.txt"), b"keep me").unwrap();
    let s = EmbeddedStore::open(dir.path()).unwrap();
    s.append(vec![ev("A", "x")], vec![]).await.unwrap();
    assert_eq!(s.head().await.unwrap(), Some(Position::from_u64(1)));
    assert!(dir.path().join("unrelated.txt").exists());
    drop(s);
    // A complete store is never touched by the cleanup.
    let s = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(s.stats().events, 1);
}
