//! Segment index files: the postings of sealed segments live in `segments/*.idx`, only the active
//! segment's in memory. Reads, conditions and idempotent retries answer exactly like the
//! reference store across many sealed segments and a reopen; a missing or damaged index file is
//! rebuilt at open; a damaged block found later is `Corrupted` (or, for the newest segments'
//! blocks, held in memory, checked when loaded); memory holds only the active segment's postings
//! and, within their budget, the newest sealed segments' blocks.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use dcb_core::{
    AppendCondition, Event, EventStore, MemoryStore, Position, Query, QueryItem, ReadOptions,
    SequencedEvent, StoreError, Uuid,
};
use dcb_embedded::{EmbeddedStore, Options};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The smallest segments allowed: a few dozen events each.
fn small() -> Options {
    Options::default().segment_bytes(4096).recent_bytes(0)
}

/// As [`small`], with no index blocks held in memory: every lookup in a sealed segment reads
/// (and checks) its blocks from the file.
fn from_files() -> Options {
    small().index_memory_bytes(0)
}

/// The `blocks_len` of an index file's header: the bytes of blocks it would hold in memory.
fn blocks_len(file: &Path) -> u64 {
    let b = std::fs::read(file).unwrap();
    u64::from_le_bytes(b[40..48].try_into().unwrap())
}

/// The bytes of blocks held in memory with `budget`: those of the newest index files whose
/// blocks fit together.
fn expected_resident(dir: &Path, budget: u64) -> u64 {
    let mut held = 0;
    for f in segment_files(dir, "idx").iter().rev() {
        let n = blocks_len(f);
        if held + n > budget {
            break;
        }
        held += n;
    }
    held
}

const TYPES: [&str; 3] = ["A", "B", "C"];

fn random_event(rng: &mut StdRng, n: u64) -> Event {
    let mut e = Event::new(
        TYPES[rng.random_range(0..TYPES.len())],
        format!("event {n} {}", "x".repeat(rng.random_range(0..40))).into_bytes(),
    );
    let mut tags: Vec<String> = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let t = format!("k:{}", rng.random_range(0..25));
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    if rng.random_range(0..10) == 0 {
        tags.push("hot".into());
    }
    // A tag of its own: found in exactly one segment.
    if rng.random_range(0..20) == 0 {
        tags.push(format!("one:{n}"));
    }
    e = e.tags(tags);
    if rng.random_range(0..3) > 0 {
        e = e.with_id(Uuid::from_u128(u128::from(n) + 1));
    }
    e
}

fn random_item(rng: &mut StdRng, head: u64) -> QueryItem {
    loop {
        let mut item = QueryItem::new();
        for _ in 0..rng.random_range(0..3) {
            item = item.r#type(TYPES[rng.random_range(0..TYPES.len())]);
        }
        for _ in 0..rng.random_range(0..3) {
            let tag = match rng.random_range(0..6) {
                0 => "hot".to_string(),
                1 => format!("one:{}", rng.random_range(0..head.max(1))),
                2 => "absent".to_string(),
                _ => format!("k:{}", rng.random_range(0..25)),
            };
            item = item.tag(tag);
        }
        item.types.dedup();
        item.tags.sort();
        item.tags.dedup();
        if !item.types.is_empty() || !item.tags.is_empty() {
            return item;
        }
    }
}

fn random_query(rng: &mut StdRng, head: u64) -> Query {
    if rng.random_range(0..10) == 0 {
        return Query::All;
    }
    Query::items((0..rng.random_range(1..4)).map(|_| random_item(rng, head)))
}

fn random_options(rng: &mut StdRng, head: u64) -> ReadOptions {
    let mut o = ReadOptions::new();
    let p = |rng: &mut StdRng| Position::from_u64(rng.random_range(1..=head + 2));
    match rng.random_range(0..3) {
        0 => o = o.after(p(rng)),
        1 => o = o.from(p(rng)),
        _ => {}
    }
    if rng.random_range(0..3) == 0 {
        o = o.before(p(rng));
    }
    if rng.random_range(0..2) == 0 {
        o = o.limit(rng.random_range(0..300));
    }
    if rng.random_range(0..2) == 0 {
        o = o.backwards();
    }
    o
}

async fn read_all(
    s: &dyn EventStore,
    q: Query,
    o: ReadOptions,
) -> Result<Vec<SequencedEvent>, String> {
    match s.read(q, o).await {
        Ok(stream) => stream.collect_all().await.map_err(|e| e.to_string()),
        Err(e) => Err(format!("{e}")),
    }
}

/// Sums what `events` put into the type and tag indexes.
fn postings_of(events: &[SequencedEvent]) -> usize {
    events.iter().map(|e| 1 + e.event.tags.len()).sum()
}

fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// The first position of the active (last) segment.
fn active_base(dir: &Path) -> u64 {
    let last = segment_files(dir, "seg").pop().unwrap();
    last.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Appends random batches to both stores, with random conditions and retries of earlier
/// batches; every outcome must agree.
async fn fill_both(
    rng: &mut StdRng,
    store: &EmbeddedStore,
    reference: &MemoryStore,
    events: u64,
    next: &mut u64,
    batches: &mut Vec<Vec<Event>>,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let target = *next + events;
    let mut steps = 0;
    while *next < target && steps < 10 * events {
        steps += 1;
        let head = *next - 1;
        if rng.random_range(0..8) == 0 && !batches.is_empty() {
            // An idempotent retry (or an id conflict) of an earlier batch.
            let b = batches[rng.random_range(0..batches.len())].clone();
            let (x, y) = (
                store.append(b.clone(), vec![]).await,
                reference.append(b, vec![]).await,
            );
            assert_eq!(format!("{x:?}"), format!("{y:?}"), "retry");
            if x.is_ok_and(|a| a.replayed) {
                outcomes.replayed += 1;
            }
            continue;
        }
        let n = rng.random_range(1..6);
        let batch: Vec<Event> = (0..n).map(|i| random_event(rng, *next + i)).collect();
        let mut conditions = Vec::new();
        if rng.random_range(0..3) == 0 {
            let q = random_query(rng, head);
            let after = (rng.random_range(0..2) == 0 && head > 0).then(|| {
                Position::from_u64(rng.random_range(head.saturating_sub(300).max(1)..=head))
            });
            conditions.push(AppendCondition::new(q, after));
        }
        let (x, y) = (
            store.append(batch.clone(), conditions.clone()).await,
            reference.append(batch.clone(), conditions).await,
        );
        assert_eq!(format!("{x:?}"), format!("{y:?}"), "append at {next}");
        if matches!(x, Err(StoreError::ConditionFailed { .. })) {
            outcomes.failed += 1;
        }
        if let Ok(a) = x {
            *next += a.positions.len() as u64;
            batches.push(batch);
        }
    }
    outcomes
}

/// A closed store (and its reference) after `events` random appends of [`fill_both`] seeded
/// with `seed`.
async fn populated(seed: u64, events: u64) -> (tempfile::TempDir, MemoryStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let reference = MemoryStore::new();
    let (mut next, mut batches) = (1, Vec::new());
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    fill_both(
        &mut rng,
        &store,
        &reference,
        events,
        &mut next,
        &mut batches,
    )
    .await;
    drop(store);
    (dir, reference)
}

/// What the appends of [`fill_both`] did besides writing.
#[derive(Default, Debug)]
struct Outcomes {
    /// Appends refused by their condition (in both stores).
    failed: usize,
    /// Retries answered with the original positions (in both stores).
    replayed: usize,
}

async fn compare_reads(rng: &mut StdRng, store: &EmbeddedStore, reference: &MemoryStore, n: usize) {
    let head = store.stats().events;
    let mut nonempty = 0;
    for i in 0..n {
        let q = random_query(rng, head);
        let o = random_options(rng, head);
        let got = read_all(store, q.clone(), o).await;
        let want = read_all(reference, q.clone(), o).await;
        assert_eq!(got, want, "read {i}: {q:?} {o:?}");
        nonempty += usize::from(want.is_ok_and(|w| !w.is_empty()));
    }
    // The comparison is about answers, not about agreeing on nothing.
    assert!(
        nonempty > n / 3,
        "only {nonempty} of {n} reads found events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_conditions_and_retries_match_the_reference_across_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(0x5E61_DE70);
    let reference = MemoryStore::new();
    let mut next = 1;
    let mut batches = Vec::new();
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    let o = fill_both(&mut rng, &store, &reference, 1200, &mut next, &mut batches).await;
    assert!(o.failed > 10 && o.replayed > 10, "{o:?}");
    let sealed = segment_files(dir.path(), "idx").len();
    assert!(sealed >= 10, "only {sealed} sealed segments");
    assert_eq!(segment_files(dir.path(), "off").len(), sealed);
    compare_reads(&mut rng, &store, &reference, 300).await;
    drop(store);
    // Reopened from the index files (and the snapshot of the active segment).
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    compare_reads(&mut rng, &store, &reference, 200).await;
    let o = fill_both(&mut rng, &store, &reference, 300, &mut next, &mut batches).await;
    assert!(o.failed > 0 && o.replayed > 0, "{o:?}");
    compare_reads(&mut rng, &store, &reference, 200).await;
    drop(store);
    // Reopened without a snapshot: the active segment is indexed from the log.
    std::fs::remove_file(dcb_embedded::snapshot::path(dir.path())).unwrap();
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    compare_reads(&mut rng, &store, &reference, 200).await;
    fill_both(&mut rng, &store, &reference, 100, &mut next, &mut batches).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_holds_only_the_active_segments_postings() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let reference = MemoryStore::new();
    let (mut next, mut batches) = (1, Vec::new());
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    fill_both(&mut rng, &store, &reference, 800, &mut next, &mut batches).await;
    let all = reference.snapshot();
    let check = |store: &EmbeddedStore| {
        let stats = store.stats();
        let base = active_base(dir.path());
        assert!(base > 500, "the active segment starts at {base}");
        let active: Vec<SequencedEvent> = all
            .iter()
            .filter(|e| e.position.get() >= u128::from(base))
            .cloned()
            .collect();
        assert_eq!(stats.events, all.len() as u64);
        assert_eq!(stats.postings, postings_of(&active));
        assert_eq!(
            stats.postings as u64 + stats.sealed_postings,
            postings_of(&all) as u64
        );
    };
    check(&store);
    drop(store);
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    check(&store);
    drop(store);
    std::fs::remove_file(dcb_embedded::snapshot::path(dir.path())).unwrap();
    check(&EmbeddedStore::open_with(dir.path(), small()).unwrap());
}

async fn answers(s: &EmbeddedStore) -> Vec<Vec<u128>> {
    let mut queries = vec![Query::All, Query::of_type("A"), Query::tagged("hot")];
    for k in 0..25 {
        queries.push(Query::tagged(format!("k:{k}")).or(QueryItem::new().r#type("C").tag("hot")));
    }
    let mut out = Vec::new();
    for q in queries {
        for o in [ReadOptions::new(), ReadOptions::new().backwards().limit(7)] {
            let r = s
                .read(q.clone(), o)
                .await
                .unwrap()
                .collect_all()
                .await
                .unwrap();
            out.push(r.iter().map(|e| e.position.get()).collect());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_damaged_index_files_are_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(11);
    let reference = MemoryStore::new();
    let (mut next, mut batches) = (1, Vec::new());
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    fill_both(&mut rng, &store, &reference, 500, &mut next, &mut batches).await;
    let good = answers(&store).await;
    drop(store);
    let files = segment_files(dir.path(), "idx");
    assert!(files.len() >= 6);
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    // Missing, a flipped header byte, a flipped directory byte, cut short, empty, garbage.
    std::fs::remove_file(&files[0]).unwrap();
    let mut b = originals[1].clone();
    b[20] ^= 0x01;
    std::fs::write(&files[1], &b).unwrap();
    let mut b = originals[2].clone();
    let last = b.len() - 3;
    b[last] ^= 0x80;
    std::fs::write(&files[2], &b).unwrap();
    std::fs::write(&files[3], &originals[3][..originals[3].len() / 2]).unwrap();
    std::fs::write(&files[4], b"").unwrap();
    std::fs::write(
        &files[5],
        b"FWSX not an index file at all, but long enough to have a header",
    )
    .unwrap();
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    assert_eq!(answers(&store).await, good);
    // Rebuilt from the segments: the very same files.
    for (f, o) in files.iter().zip(&originals) {
        assert_eq!(&std::fs::read(f).unwrap(), o, "{}", f.display());
    }
    // Idempotent retries still find ids of sealed segments.
    let first = batches[0].clone();
    let r = store.append(first, vec![]).await;
    let want = reference.append(batches[0].clone(), vec![]).await;
    assert_eq!(format!("{r:?}"), format!("{want:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_block_read_after_open_is_corruption_not_a_wrong_answer() {
    let (dir, reference) = populated(13, 300).await;
    let store = EmbeddedStore::open_with(dir.path(), from_files()).unwrap();
    // The newest "A" is in the active segment (in memory).
    let a = Event::new("A", b"newest".to_vec());
    store.append(vec![a.clone()], vec![]).await.unwrap();
    reference.append(vec![a], vec![]).await.unwrap();
    // The first block (64 bytes in) holds the segment's type lists, "A" first.
    let file = segment_files(dir.path(), "idx").remove(0);
    let mut b = std::fs::read(&file).unwrap();
    b[64 + 3] ^= 0x04;
    std::fs::write(&file, &b).unwrap();
    for o in [ReadOptions::new(), ReadOptions::new().limit(1)] {
        match store
            .read(Query::of_type("A"), o)
            .await
            .unwrap()
            .collect_all()
            .await
        {
            Err(StoreError::Corrupted(m)) => assert!(m.contains("damaged"), "{m}"),
            other => panic!("expected Corrupted, got {other:?}"),
        }
    }
    // Reads that need no block of that segment still answer, and correctly.
    let (q, o) = (Query::of_type("A"), ReadOptions::new().backwards().limit(1));
    let got = read_all(&store, q.clone(), o).await;
    assert_eq!(got, read_all(&reference, q, o).await);
    assert_eq!(got.unwrap()[0].event.data.as_ref(), b"newest");
}

/// A snapshot of format 1 (written when every posting was in memory, covering the whole log) is
/// not taken for the active segment's: it is ignored and the active segment indexed from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_the_format_before_segment_index_files_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(17);
    let reference = MemoryStore::new();
    let (mut next, mut batches) = (1, Vec::new());
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    fill_both(&mut rng, &store, &reference, 300, &mut next, &mut batches).await;
    let good = answers(&store).await;
    let stats = store.stats();
    drop(store);
    let path = dcb_embedded::snapshot::path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(dcb_embedded::snapshot::inspect(&bytes).is_ok());
    // The same body under version 1 (the checksum covers the body only).
    bytes[4..8].copy_from_slice(&1u32.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = dcb_embedded::snapshot::inspect(&bytes).unwrap_err();
    assert!(err.contains("format 1"), "{err}");
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    assert_eq!(answers(&store).await, good);
    assert_eq!(store.stats(), stats);
}

/// A seal cut short after the index file was written (before the offset table and the new
/// segment) leaves an index file for the segment that is still active: it is removed at open,
/// and the segment is sealed again when it fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_file_of_the_active_segment_is_a_leftover_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(19);
    let reference = MemoryStore::new();
    let (mut next, mut batches) = (1, Vec::new());
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    fill_both(&mut rng, &store, &reference, 200, &mut next, &mut batches).await;
    drop(store);
    let base = active_base(dir.path());
    let leftover = dir.path().join("segments").join(format!("{base:020}.idx"));
    std::fs::copy(&segment_files(dir.path(), "idx")[0], &leftover).unwrap();
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    assert!(!leftover.exists());
    compare_reads(&mut rng, &store, &reference, 100).await;
    fill_both(&mut rng, &store, &reference, 200, &mut next, &mut batches).await;
    assert!(leftover.exists(), "sealed again");
    compare_reads(&mut rng, &store, &reference, 100).await;
}

/// Conditions about recent positions are answered from memory, and a key that no sealed segment
/// holds is ruled out by the bloom filters: with every block of every index file damaged after
/// open, those appends still decide correctly; only a condition that needs an old segment's
/// postings meets the damage, as a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_conditions_and_absent_keys_read_no_index_block() {
    let (dir, reference) = populated(23, 400).await;
    let store = EmbeddedStore::open_with(dir.path(), from_files()).unwrap();
    let recent = Event::new("Recent", b"r".to_vec()).tag("recent-only");
    store.append(vec![recent], vec![]).await.unwrap();
    let head = store.stats().head.unwrap();
    // Damage every block (everything between the 64-byte header and the directory).
    for f in segment_files(dir.path(), "idx") {
        let mut b = std::fs::read(&f).unwrap();
        let blocks = u64::from_le_bytes(b[40..48].try_into().unwrap()) as usize;
        for x in &mut b[64..64 + blocks] {
            *x ^= 0x55;
        }
        std::fs::write(&f, &b).unwrap();
    }
    let ok = |r: &Result<dcb_core::Appended, StoreError>| r.is_ok();
    // Nothing after the head: decided without any lookup.
    let r = store
        .append(
            vec![Event::new("A", vec![])],
            vec![AppendCondition::new(Query::of_type("A"), Some(head))],
        )
        .await;
    assert!(ok(&r), "{r:?}");
    // Found in the active segment, newest first: no sealed segment is asked.
    let r = store
        .append(
            vec![Event::new("A", vec![])],
            vec![AppendCondition::none_match(Query::tagged("recent-only"))],
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::ConditionFailed { condition: 0 })),
        "{r:?}"
    );
    // A tag in no segment: every sealed segment's bloom filter rules it out.
    let r = store
        .append(
            vec![Event::new("A", vec![])],
            vec![AppendCondition::none_match(Query::tagged(
                "in-no-segment-at-all",
            ))],
        )
        .await;
    assert!(ok(&r), "{r:?}");
    // A tag only old segments hold: their damaged blocks are read, and refused.
    let base = u128::from(active_base(dir.path()));
    let all = reference.snapshot();
    let old_only = all
        .iter()
        .flat_map(|e| e.event.tags.iter().map(|t| t.as_str().to_owned()))
        .find(|t| {
            all.iter()
                .all(|e| e.position.get() < base || !e.event.tags.iter().any(|x| x.as_str() == t))
        })
        .unwrap();
    let r = store
        .append(
            vec![Event::new("A", vec![])],
            vec![AppendCondition::none_match(Query::tagged(old_only))],
        )
        .await;
    assert!(matches!(r, Err(StoreError::Corrupted(_))), "{r:?}");
}

/// The newest sealed segments' blocks are held in memory within the budget, from the newest
/// back, after seals and after a reopen; reads and conditions answer exactly as with every block
/// read from the files, and as the reference store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_segments_blocks_are_held_in_memory_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = StdRng::seed_from_u64(29);
    let reference = MemoryStore::new();
    let (mut next, mut batches) = (1, Vec::new());
    // About three segments' blocks.
    let budget = {
        let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
        fill_both(&mut rng, &store, &reference, 600, &mut next, &mut batches).await;
        drop(store);
        let files = segment_files(dir.path(), "idx");
        assert!(files.len() >= 8, "{} segments", files.len());
        files.iter().map(|f| blocks_len(f)).sum::<u64>() * 3 / files.len() as u64
    };
    let options = small().index_memory_bytes(budget);
    let store = EmbeddedStore::open_with(dir.path(), options).unwrap();
    let held = store.stats().index_memory;
    assert_eq!(held, expected_resident(dir.path(), budget));
    assert!(held > 0 && held <= budget, "{held} of {budget}");
    compare_reads(&mut rng, &store, &reference, 150).await;
    // Seals: the new segments' blocks come in, the oldest held go.
    let sealed = segment_files(dir.path(), "idx").len();
    fill_both(&mut rng, &store, &reference, 300, &mut next, &mut batches).await;
    assert!(segment_files(dir.path(), "idx").len() > sealed + 3);
    let held = store.stats().index_memory;
    assert_eq!(held, expected_resident(dir.path(), budget));
    assert!(held > 0 && held <= budget, "{held} of {budget}");
    compare_reads(&mut rng, &store, &reference, 150).await;
    let good = answers(&store).await;
    let figures =
        |s: dcb_embedded::Stats| (s.events, s.postings, s.sealed_postings, s.index_memory);
    let stats = figures(store.stats());
    drop(store);
    // The same after a reopen; and with every block read from the files, or all of them held.
    let store = EmbeddedStore::open_with(dir.path(), options).unwrap();
    assert_eq!(figures(store.stats()), stats);
    assert_eq!(answers(&store).await, good);
    drop(store);
    let store = EmbeddedStore::open_with(dir.path(), from_files()).unwrap();
    assert_eq!(store.stats().index_memory, 0);
    assert_eq!(answers(&store).await, good);
    compare_reads(&mut rng, &store, &reference, 100).await;
    drop(store);
    let all = small().index_memory_bytes(u64::MAX);
    let store = EmbeddedStore::open_with(dir.path(), all).unwrap();
    assert_eq!(
        store.stats().index_memory,
        expected_resident(dir.path(), u64::MAX)
    );
    assert_eq!(answers(&store).await, good);
    fill_both(&mut rng, &store, &reference, 100, &mut next, &mut batches).await;
    compare_reads(&mut rng, &store, &reference, 100).await;
}

/// Blocks held in memory were checked when they were loaded: damage to the file after that
/// changes no answer, and the next open, which loads them again, finds it and rebuilds the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_blocks_are_checked_when_loaded_and_a_damaged_file_is_rebuilt() {
    let (dir, _reference) = populated(31, 300).await;
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    let good = answers(&store).await;
    assert_eq!(
        store.stats().index_memory,
        expected_resident(dir.path(), u64::MAX),
        "all held"
    );
    let files = segment_files(dir.path(), "idx");
    let originals: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    // A flipped byte in a block of every file (the directory and header are intact).
    for (f, o) in files.iter().zip(&originals) {
        let mut b = o.clone();
        b[64 + 3] ^= 0x04;
        std::fs::write(f, &b).unwrap();
    }
    assert_eq!(answers(&store).await, good, "answered from memory");
    drop(store);
    let store = EmbeddedStore::open_with(dir.path(), small()).unwrap();
    assert_eq!(answers(&store).await, good);
    for (f, o) in files.iter().zip(&originals) {
        assert_eq!(&std::fs::read(f).unwrap(), o, "{} rebuilt", f.display());
    }
}
