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

/// Asserts that every read of [`reads`] gives the same events from `s` as from `reference`
/// (`when` names the moment in the failure message).
async fn reads_like(s: &dyn EventStore, reference: &dyn EventStore, when: &str) {
    for (q, o) in reads() {
        let got = read(s, q.clone(), o).await.unwrap();
        let want = read(reference, q.clone(), o).await.unwrap();
        assert_eq!(got, want, "{q:?} {o:?} ({when})");
    }
}

/// A store of small segments in `dir` and a reference store, both holding events `0..600`.
async fn filled(dir: &Path) -> (EmbeddedStore, MemoryStore) {
    let reference = MemoryStore::new();
    fill(&reference, 0, 600).await;
    let s = EmbeddedStore::open_with(dir, small()).unwrap();
    fill(&s, 0, 600).await;
    (s, reference)
}

#[tokio::test]
async fn events_spanning_many_segments_read_like_the_reference_forwards_backwards_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (s, reference) = filled(dir.path()).await;
    reads_like(&s, &reference, "before reopening").await;
    drop(s);
    let segments = files(dir.path(), "seg");
    assert!(segments.len() >= 10, "only {} segments", segments.len());
    // Every sealed segment has its offset table; the active one keeps it in memory.
    assert_eq!(files(dir.path(), "off").len(), segments.len() - 1);
    let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    reads_like(&s, &reference, "after reopening").await;
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

/// Rewrites the segment file at `path` as format version 1 wrote it: the same frames, each
/// record's check the CRC-32 of its position (u64 LE) and bytes, the frames' checksums to match.
fn to_version_1(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    assert_eq!(u32_at(&b, 4), 2, "{} is of version 2", path.display());
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    // Frames: "FWFR" | body_len | first | count | body_crc | header_crc, then a body of
    // tracking entries and records (len | check | bytes).
    let mut at = 24;
    while at < b.len() {
        assert_eq!(&b[at..at + 4], b"FWFR");
        let (body_len, first) = (u32_at(&b, at + 4) as usize, u64_at(&b, at + 8));
        let body = at + 28;
        let mut r = body + 2;
        for _ in 0..u16::from_le_bytes([b[body], b[body + 1]]) {
            r += 1 + usize::from(b[r]) + 12;
        }
        for i in 0..u64::from(u32_at(&b, at + 16)) {
            let len = u32_at(&b, r) as usize;
            let mut h = crc32fast::Hasher::new();
            h.update(&(first + i).to_le_bytes());
            h.update(&b[r + 8..r + 8 + len]);
            b[r + 4..r + 8].copy_from_slice(&h.finalize().to_le_bytes());
            r += 8 + len;
        }
        assert_eq!(r, body + body_len);
        let body_crc = crc32fast::hash(&b[body..r]);
        b[at + 20..at + 24].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&b[at..at + 24]);
        b[at + 24..at + 28].copy_from_slice(&header_crc.to_le_bytes());
        at = r;
    }
    std::fs::write(path, &b).unwrap();
}

#[tokio::test]
async fn a_directory_of_version_1_segments_reads_like_the_reference_and_takes_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (s, reference) = filled(dir.path()).await;
    drop(s);
    // As a build of segment version 1 left it (schema version 2), the active segment included.
    let old = files(dir.path(), "seg");
    assert!(old.len() >= 10, "only {} segments", old.len());
    for path in &old {
        to_version_1(path);
    }
    let schema = |set: Option<u32>| {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let meta = db
            .keyspace(keys::META, fjall::KeyspaceCreateOptions::default)
            .unwrap();
        if let Some(v) = set {
            meta.insert(keys::SCHEMA_KEY, v.to_be_bytes()).unwrap();
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let v = meta.get(keys::SCHEMA_KEY).unwrap().unwrap();
        u32::from_be_bytes(v.as_ref().try_into().unwrap())
    };
    assert_eq!(schema(Some(keys::SCHEMA_VERSION_2)), 2);
    let version = |path: &Path| std::fs::read(path).unwrap()[4];
    let last = old.last().unwrap().clone();
    let last_len = std::fs::metadata(&last).unwrap().len();
    for reopened in 0..3 {
        let s = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        reads_like(&s, &reference, &format!("opened {reopened} times before")).await;
        if reopened == 0 {
            // A few appends, into the version-1 active segment: it stays schema 2 (a build from
            // before still opens it).
            fill(&s, 600, 603).await;
            fill(&reference, 600, 603).await;
            drop(s);
            assert_eq!(files(dir.path(), "seg"), old, "no segment started");
            assert_eq!(schema(None), keys::SCHEMA_VERSION_2);
        } else if reopened == 1 {
            // Appends fill the version-1 active segment until it is sealed, then go into new
            // segments of version 2.
            fill(&s, 603, 900).await;
            fill(&reference, 603, 900).await;
        }
    }
    // Marked with this build's schema version before its first segment of version 2: a build
    // reading only version-1 segments refuses it by that.
    assert_eq!(schema(None), keys::SCHEMA_VERSION);
    assert!(
        std::fs::metadata(&last).unwrap().len() > last_len,
        "appended to"
    );
    let now = files(dir.path(), "seg");
    assert!(now.len() > old.len());
    for path in &now {
        let want = if old.contains(path) { 1 } else { 2 };
        assert_eq!(version(path), want, "{}", path.display());
    }
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
        reads_like(&s, &reference, &format!("round {round}")).await;
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

#[test]
fn a_segment_file_built_by_its_format_reads_back_and_a_changed_record_is_corruption() {
    use dcb_embedded::segment_file::{self, Inspected};
    let frames: Vec<Vec<Vec<u8>>> = vec![
        vec![b"one".to_vec(), b"two".to_vec()],
        vec![Vec::new()],
        vec![vec![7u8; 300]],
    ];
    for version in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let segments = dir.path().join(segment_file::DIR);
        std::fs::create_dir_all(&segments).unwrap();
        let path = segments.join(segment_file::file_name(1));
        let bytes = segment_file::segment_bytes(1, version, &frames);
        std::fs::write(&path, &bytes).unwrap();
        let found = segment_file::inspect(&segments).unwrap();
        assert_eq!(
            found,
            Inspected {
                head: 4,
                records: 4,
                bytes: 306
            },
            "version {version}"
        );
        // The last record's last byte changed: its frame is the last, so at open it is a torn
        // write, cut off; the frames before it stay.
        let mut torn = bytes.clone();
        *torn.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(segment_file::inspect(&segments).unwrap().head, 3);
        // The first record changed, with intact frames after it: corruption, never a panic.
        let mut damaged = bytes.clone();
        let at = damaged.windows(3).position(|w| w == b"one").unwrap();
        damaged[at] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        match segment_file::inspect(&segments) {
            Err(StoreError::Corrupted(m)) => {
                assert!(m.contains("followed by intact frames"), "{m}")
            }
            other => panic!("version {version}: {other:?}"),
        }
    }
}
