//! The segment log at the store's level: events spanning many segments, torn tails, damaged
//! segments and index files, tracked checkpoints after a lost fjall write, and the migration of a
//! schema-1 data directory.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dcb_core::codec::encode_event;
use dcb_core::{
    AppendRequest, Event, EventStore, MemoryStore, Position, Query, QueryItem, ReadOptions,
    SequencedEvent, StoreError, Tracking, Uuid,
};
use dcb_embedded::{EmbeddedStore, Options, keys, snapshot};

fn ev(i: u64) -> Event {
    Event::new(
        if i.is_multiple_of(3) { "A" } else { "B" },
        format!(
            "{{\"i\":{i},\"pad\":\"{}\"}}",
            "p".repeat((i % 40) as usize)
        )
        .into_bytes(),
    )
    .tag(format!("n:{}", i % 13))
    .tag(format!("m:{}", i % 4))
    .with_id(Uuid::from_u128(u128::from(i) + 1))
}

/// Small segments: a few dozen events each.
fn small() -> Options {
    Options::default().segment_bytes(4096).recent_bytes(0)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

async fn fill(store: &dyn EventStore, from: u64, to: u64) {
    let mut i = from;
    while i < to {
        let n = 1 + i % 6;
        let batch: Vec<Event> = (i..(i + n).min(to)).map(ev).collect();
        i += batch.len() as u64;
        store.append(batch, vec![]).await.unwrap();
    }
}

async fn read(
    s: &dyn EventStore,
    q: Query,
    o: ReadOptions,
) -> Result<Vec<SequencedEvent>, StoreError> {
    s.read(q, o).await?.collect_all().await
}

fn reads() -> Vec<(Query, ReadOptions)> {
    let p = Position::from_u64;
    let queries = [
        Query::All,
        Query::tagged("n:5"),
        Query::of_type("A"),
        Query::item(QueryItem::new().r#type("B").tags(["n:2", "m:2"])),
        Query::tagged("m:1").or(QueryItem::new().r#type("A")),
    ];
    let options = [
        ReadOptions::new(),
        ReadOptions::new().backwards(),
        ReadOptions::new().after(p(137)),
        ReadOptions::new().from(p(250)).before(p(420)),
        ReadOptions::new().before(p(300)).backwards().limit(41),
        ReadOptions::new().after(p(9)).limit(333),
    ];
    let mut out = Vec::new();
    for q in &queries {
        for o in &options {
            out.push((q.clone(), *o));
        }
    }
    out
}

#[tokio::test]
async fn events_spanning_many_segments_read_like_the_reference_forwards_backwards_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let reference = MemoryStore::new();
    fill(&reference, 0, 600).await;
    {
        let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        fill(&s, 0, 600).await;
        for (q, o) in reads() {
            let got = read(&s, q.clone(), o).await.unwrap();
            let want = read(&reference, q.clone(), o).await.unwrap();
            assert_eq!(got, want, "{q:?} {o:?} (before reopening)");
        }
    }
    let segments = files(dir.path(), "seg");
    assert!(segments.len() >= 10, "only {} segments", segments.len());
    // Every sealed segment has its offset table; the active one keeps it in memory.
    assert_eq!(files(dir.path(), "off").len(), segments.len() - 1);
    let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    for (q, o) in reads() {
        let got = read(&s, q.clone(), o).await.unwrap();
        let want = read(&reference, q.clone(), o).await.unwrap();
        assert_eq!(got, want, "{q:?} {o:?} (after reopening)");
    }
    // Appends go on after a reopen, into the same numbering.
    fill(&s, 600, 700).await;
    fill(&reference, 600, 700).await;
    let got = read(
        &s,
        Query::All,
        ReadOptions::new().after(Position::from_u64(580)),
    )
    .await
    .unwrap();
    let want = read(
        &reference,
        Query::All,
        ReadOptions::new().after(Position::from_u64(580)),
    )
    .await
    .unwrap();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_torn_tail_is_truncated_at_open_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        fill(&s, 0, 50).await;
    }
    let seg = files(dir.path(), "seg").pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // Garbage after the last frame: a write that never completed.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(b"FWFR\x99\x00\x00\x00half a frame");
    std::fs::write(&seg, &bytes).unwrap();
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(s.stats().events, 50);
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            len,
            "the torn tail was not cut off"
        );
        let a = s.append(vec![ev(50)], vec![]).await.unwrap();
        assert_eq!(a.positions, vec![Position::from_u64(51)]);
    }
    // A frame cut short (its last bytes never reached the disk) is dropped as a whole.
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let s = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(s.stats().events, 50);
    let all = read(&s, Query::All, ReadOptions::new()).await.unwrap();
    assert_eq!(all.len(), 50);
    // Its event id was never acknowledged as stored: appending it again is a new append.
    let a = s.append(vec![ev(50)], vec![]).await.unwrap();
    assert!(!a.replayed);
}

#[tokio::test]
async fn a_flipped_byte_in_a_sealed_segment_is_a_typed_corruption_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        fill(&s, 0, 300).await;
    }
    let first = files(dir.path(), "seg").remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&first, &bytes).unwrap();
    // Opened from the index snapshot, sealed segments are checked when read.
    let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    match read(&s, Query::All, ReadOptions::new()).await {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("position"), "{m}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    drop(s);
    // Without a snapshot only the active segment is indexed from the log: the sealed one is
    // still checked when read.
    std::fs::remove_file(snapshot::path(dir.path())).unwrap();
    let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    match read(&s, Query::All, ReadOptions::new()).await {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("position"), "{m}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    drop(s);
    // Without its index file the segment is indexed from the log at open, which finds the damage.
    std::fs::remove_file(files(dir.path(), "idx").remove(0)).unwrap();
    match EmbeddedStore::open_with(dir.path(), small()) {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("position"), "{m}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_or_damaged_index_files_are_rebuilt_from_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let want = {
        let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        fill(&s, 0, 400).await;
        let mut all = Vec::new();
        for (q, o) in reads() {
            all.push(read(&s, q, o).await.unwrap());
        }
        all
    };
    let offs = files(dir.path(), "off");
    assert!(offs.len() >= 3);
    std::fs::remove_file(&offs[0]).unwrap();
    let mut damaged = std::fs::read(&offs[1]).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x01;
    std::fs::write(&offs[1], &damaged).unwrap();
    std::fs::write(&offs[2], b"FWOF").unwrap();
    std::fs::write(snapshot::path(dir.path()), b"not a snapshot").unwrap();
    let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    let mut got = Vec::new();
    for (q, o) in reads() {
        got.push(read(&s, q, o).await.unwrap());
    }
    assert_eq!(got, want);
    assert!(
        offs.iter().all(|p| p.exists()),
        "offset tables not rewritten"
    );
    // Idempotency sees the rebuilt id index: event 7 was stored in another batch than this one.
    let again = s.append(vec![ev(7)], vec![]).await;
    assert!(
        matches!(again, Err(StoreError::IdConflict { .. })),
        "{again:?}"
    );
}

/// A tracked append's checkpoint move is durable in the group's frame; fjall gets it without a
/// sync of its own. Here fjall "loses" it (as after a power cut: the checkpoint and the applied
/// marker are set back by hand), and open puts it back from the frame.
#[tokio::test]
async fn a_tracked_checkpoint_lost_by_fjall_is_replayed_from_the_frame() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open(dir.path()).unwrap();
        fill(&s, 0, 10).await;
        for k in 1..=3u64 {
            let req = AppendRequest {
                events: vec![ev(100 + k)],
                conditions: vec![],
                tracking: Some(Tracking {
                    consumer: "mirror".into(),
                    position: Position::from_u64(k * 10),
                }),
            };
            s.append_request(req).await.unwrap();
        }
        assert_eq!(
            s.checkpoint("mirror").await.unwrap(),
            Some(Position::from_u64(30))
        );
    }
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let ks = |n| {
            db.keyspace(n, fjall::KeyspaceCreateOptions::default)
                .unwrap()
        };
        let (consumers, meta) = (ks(keys::CONSUMERS), ks(keys::META));
        assert!(meta.get(keys::APPLIED_KEY).unwrap().is_some());
        consumers
            .insert(
                keys::checkpoint_key("mirror"),
                Position::from_u64(10).to_bytes(),
            )
            .unwrap();
        meta.insert(keys::APPLIED_KEY, 11u64.to_be_bytes()).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let s = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(
        s.checkpoint("mirror").await.unwrap(),
        Some(Position::from_u64(30))
    );
    // The replayed checkpoint is enforced like any other.
    let stale = AppendRequest {
        events: vec![ev(200)],
        conditions: vec![],
        tracking: Some(Tracking {
            consumer: "mirror".into(),
            position: Position::from_u64(30),
        }),
    };
    assert!(matches!(
        s.append_request(stale).await,
        Err(StoreError::CheckpointConflict { .. })
    ));
}

/// Builds a data directory as schema version 1 wrote it: events in fjall's `events` keyspace.
fn write_v1(dir: &Path, positions: &[u64]) {
    let db = fjall::Database::builder(dir).open().unwrap();
    let ks = |n| {
        db.keyspace(n, fjall::KeyspaceCreateOptions::default)
            .unwrap()
    };
    let (events, consumers, meta) = (ks(keys::EVENTS), ks(keys::CONSUMERS), ks(keys::META));
    meta.insert(keys::SCHEMA_KEY, 1u32.to_be_bytes()).unwrap();
    for &p in positions {
        events
            .insert(keys::event_key(p), encode_event(&ev(p - 1), 0, 1))
            .unwrap();
    }
    consumers
        .insert(
            keys::checkpoint_key("view"),
            Position::from_u64(7).to_bytes(),
        )
        .unwrap();
    consumers
        .insert(keys::state_key("view", b"k"), b"v".to_vec())
        .unwrap();
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

#[tokio::test]
async fn a_schema_1_directory_is_migrated_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let positions: Vec<u64> = (1..=250).collect();
    write_v1(dir.path(), &positions);
    let reference = MemoryStore::new();
    for p in &positions {
        reference.append(vec![ev(p - 1)], vec![]).await.unwrap();
    }
    for round in 0..2 {
        let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        for (q, o) in reads() {
            let got = read(&s, q.clone(), o).await.unwrap();
            let want = read(&reference, q.clone(), o).await.unwrap();
            assert_eq!(got, want, "round {round}: {q:?} {o:?}");
        }
        assert_eq!(
            s.checkpoint("view").await.unwrap(),
            Some(Position::from_u64(7))
        );
        assert_eq!(
            s.get_state("view", b"k").await.unwrap(),
            Some(b"v".to_vec())
        );
        // Idempotent retries recognise migrated events.
        assert!(s.append(vec![ev(3)], vec![]).await.unwrap().replayed);
    }
    assert!(files(dir.path(), "seg").len() > 1);
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    assert!(
        !db.keyspace_exists(keys::EVENTS),
        "the old events keyspace was not dropped"
    );
    let meta = db
        .keyspace(keys::META, fjall::KeyspaceCreateOptions::default)
        .unwrap();
    assert_eq!(
        meta.get(keys::SCHEMA_KEY).unwrap().map(|v| v.to_vec()),
        Some(keys::SCHEMA_VERSION.to_be_bytes().to_vec())
    );
}

#[tokio::test]
async fn a_schema_1_directory_that_cannot_be_migrated_is_a_typed_error_and_stays_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(dir.path(), &[1, 2, 4]);
    for _ in 0..2 {
        match EmbeddedStore::open(dir.path()) {
            Err(StoreError::Corrupted(m)) => assert!(m.contains("cannot migrate"), "{m}"),
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }
    let db = fjall::Database::builder(dir.path()).open().unwrap();
    assert!(db.keyspace_exists(keys::EVENTS));
    assert!(!dir.path().join("segments").exists());
}
