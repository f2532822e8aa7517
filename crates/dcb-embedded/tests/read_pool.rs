//! The read pool: reads split among the store's read threads answer exactly as reads done on the
//! caller's thread alone, under many concurrent readers too; a store closed right after its
//! reads releases its directory; damage fails a read the same way with any number of threads.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use dcb_core::{Event, EventStore, Position, Query, QueryItem, ReadOptions, SequencedEvent};
use dcb_embedded::{EmbeddedStore, Options};

/// Small segments (many files to read from), no recent-records cache (every read goes to them).
fn options(threads: usize) -> Options {
    Options::default()
        .segment_bytes(16 * 1024)
        .recent_bytes(0)
        .read_threads(threads)
}

const EVENTS: u64 = 20_000;

/// Events with a tag on every 100th (scattered over many segments), a tag on every other one
/// and a type of three. On a thread of its own: a `block_on` on a runtime's worker would run
/// out of the worker task's cooperative budget after 128 appends and spin.
fn populate(dir: &Path) {
    std::thread::scope(|s| s.spawn(|| populate_here(dir)).join().unwrap());
}

fn populate_here(dir: &Path) {
    let store = EmbeddedStore::open_with(dir, options(0)).unwrap();
    futures::executor::block_on(async {
        let mut n = 1u64;
        while n <= EVENTS {
            let batch: Vec<Event> = (n..n + 100)
                .map(|i| {
                    let mut e = Event::new(
                        ["A", "B", "C"][(i % 3) as usize],
                        format!("event {i} {}", "x".repeat((i % 60) as usize)).into_bytes(),
                    )
                    .tag(format!("every:{}", i % 2));
                    if i % 100 == 0 {
                        e = e.tag("sparse");
                    }
                    e
                })
                .collect();
            store.append(batch, vec![]).await.unwrap();
            n += 100;
        }
    });
}

fn reads() -> Vec<(Query, ReadOptions)> {
    let sparse = Query::tagged("sparse");
    let p = Position::from_u64;
    vec![
        (Query::All, ReadOptions::new()),
        (Query::All, ReadOptions::new().backwards()),
        (Query::All, ReadOptions::new().after(p(1234)).limit(3000)),
        (
            Query::All,
            ReadOptions::new().before(p(5000)).backwards().limit(2500),
        ),
        (sparse.clone(), ReadOptions::new()),
        (sparse.clone(), ReadOptions::new().backwards()),
        (sparse, ReadOptions::new().from(p(1000)).before(p(4000))),
        (Query::tagged("every:1"), ReadOptions::new()),
        (
            Query::items([
                QueryItem::new().r#type("B").tag("every:0"),
                QueryItem::new().tag("sparse"),
            ]),
            ReadOptions::new().backwards(),
        ),
    ]
}

async fn read(store: &EmbeddedStore, q: Query, o: ReadOptions) -> Vec<SequencedEvent> {
    store.read(q, o).await.unwrap().collect_all().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_split_among_read_threads_answer_as_reads_on_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let mut expected = Vec::new();
    {
        let store = EmbeddedStore::open_with(dir.path(), options(0)).unwrap();
        assert_eq!(store.stats().read_threads, 0);
        for (q, o) in reads() {
            expected.push(read(&store, q, o).await);
        }
        assert_eq!(store.stats().read_fan_outs, 0);
    }
    assert_eq!(expected[0].len() as u64, EVENTS);
    assert_eq!(expected[4].len() as u64, EVENTS / 100);
    for threads in [1, 3] {
        let store = EmbeddedStore::open_with(dir.path(), options(threads)).unwrap();
        assert_eq!(store.stats().read_threads, threads);
        for ((q, o), want) in reads().into_iter().zip(&expected) {
            let got = read(&store, q.clone(), o).await;
            assert_eq!(&got, want, "{q:?} {o:?} with {threads} read threads");
        }
        // Both kinds of split happened: long steps (the scans) and scattered records (the
        // sparse tag: 200 events over hundreds of segments, fewer than a step's split needs).
        assert!(
            store.stats().read_fan_outs >= 6,
            "{:?}",
            store.stats().read_fan_outs
        );
        let before = store.stats().read_fan_outs;
        read(&store, Query::tagged("sparse"), ReadOptions::new()).await;
        assert!(
            store.stats().read_fan_outs > before,
            "scattered records were split"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_readers_share_one_read_thread() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let store = EmbeddedStore::open_with(dir.path(), options(1)).unwrap();
    let want_all = read(&store, Query::All, ReadOptions::new()).await;
    let want_sparse = read(&store, Query::tagged("sparse"), ReadOptions::new()).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                read(&store, Query::All, ReadOptions::new()).await
            } else {
                read(&store, Query::tagged("sparse"), ReadOptions::new()).await
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.unwrap();
        let want = if i % 2 == 0 { &want_all } else { &want_sparse };
        assert_eq!(&got, want, "reader {i}");
    }
}

#[test]
fn a_store_closed_right_after_its_reads_releases_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    for round in 0..20 {
        let store = EmbeddedStore::open_with(dir.path(), options(3))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        futures::executor::block_on(async {
            // A whole scan and a partly read one, dropped mid-way.
            assert_eq!(
                read(&store, Query::All, ReadOptions::new()).await.len() as u64,
                EVENTS
            );
            let mut s = store.read(Query::All, ReadOptions::new()).await.unwrap();
            for _ in 0..3000 {
                futures::StreamExt::next(&mut s).await.unwrap().unwrap();
            }
            drop(s);
            read(&store, Query::tagged("sparse"), ReadOptions::new()).await;
        });
        drop(store);
    }
}

/// Scans everything; the events handed out before the first error, and that error.
async fn scan_until_error(store: &EmbeddedStore) -> (Vec<SequencedEvent>, Option<String>) {
    let mut s = store.read(Query::All, ReadOptions::new()).await.unwrap();
    let mut got = Vec::new();
    while let Some(e) = futures::StreamExt::next(&mut s).await {
        match e {
            Ok(e) => got.push(e),
            Err(e) => return (got, Some(e.to_string())),
        }
    }
    (got, None)
}

#[test]
fn a_damaged_record_read_ahead_fails_its_step_where_a_read_on_one_thread_does() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    // Damage the data of event 4500 (the third step of a scan) in its segment file.
    let needle = format!("event 4500 {}", "x".repeat(4500 % 60));
    let mut damaged = 0;
    for f in std::fs::read_dir(dir.path().join("segments")).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|x| x == "seg") {
            let mut bytes = std::fs::read(&path).unwrap();
            if let Some(at) = bytes
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
            {
                bytes[at + 3] ^= 0x20;
                std::fs::write(&path, &bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1);
    let mut outcomes = Vec::new();
    for threads in [0, 1, 3] {
        let store = EmbeddedStore::open_with(dir.path(), options(threads)).unwrap();
        let (got, err) = futures::executor::block_on(scan_until_error(&store));
        let err = err.unwrap_or_else(|| panic!("{threads} read threads: no error"));
        assert!(err.contains("position 4500"), "{err}");
        // Whole steps (a scan's are 4 096 events) before the damaged one, in order.
        assert_eq!(got.len(), 4096, "{threads} read threads");
        assert!(
            got.iter()
                .zip(1..)
                .all(|(e, p)| e.position == Position::from_u64(p))
        );
        outcomes.push(got);
    }
    assert!(outcomes.windows(2).all(|w| w[0] == w[1]));
}

/// Rewrites the record of `position` in the segment files of `dir` with `change`, and its
/// checksums (the record's, its frame's body and header) to match: damage no checksum catches.
fn rewrite_record(dir: &Path, position: u64, change: impl Fn(&mut Vec<u8>)) {
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    for f in std::fs::read_dir(dir.join("segments")).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_none_or(|x| x != "seg") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        // Segment header (24 bytes), then frames: "FWFR" | body_len | first | count | body_crc
        // | header_crc, a body of tracking entries then records (len | crc | bytes).
        let mut at = 24;
        while at + 28 <= bytes.len() {
            let (body_len, first) = (u32_at(&bytes, at + 4) as usize, u64_at(&bytes, at + 8));
            let count = u64::from(u32_at(&bytes, at + 16));
            let body = at + 28;
            if (first..first + count).contains(&position) {
                let mut r = body + 2;
                for _ in 0..u16::from_le_bytes([bytes[body], bytes[body + 1]]) {
                    r += 1 + usize::from(bytes[r]) + 12;
                }
                for _ in first..position {
                    r += 8 + u32_at(&bytes, r) as usize;
                }
                let len = u32_at(&bytes, r) as usize;
                let mut record = bytes[r + 8..r + 8 + len].to_vec();
                change(&mut record);
                // A version-2 segment's record check.
                let check = (xxhash_rust::xxh3::xxh3_64(&record)
                    ^ xxhash_rust::xxh3::xxh3_64(&position.to_le_bytes()))
                    as u32;
                let mut out = bytes[..r].to_vec();
                out.extend_from_slice(&(record.len() as u32).to_le_bytes());
                out.extend_from_slice(&check.to_le_bytes());
                out.extend_from_slice(&record);
                out.extend_from_slice(&bytes[r + 8 + len..]);
                let body_len = body_len + record.len() - len;
                out[at + 4..at + 8].copy_from_slice(&(body_len as u32).to_le_bytes());
                let body_crc = crc32fast::hash(&out[body..body + body_len]);
                out[at + 20..at + 24].copy_from_slice(&body_crc.to_le_bytes());
                let header_crc = crc32fast::hash(&out[at..at + 24]);
                out[at + 24..at + 28].copy_from_slice(&header_crc.to_le_bytes());
                assert_eq!(record.len(), len, "the record keeps its length");
                std::fs::write(&path, &out).unwrap();
                return;
            }
            at = body + body_len;
        }
    }
    panic!("no segment holds position {position}");
}

#[test]
fn a_record_that_passes_its_checksums_but_does_not_decode_ends_the_read_there() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    // An unknown record format version, in the third step of a scan.
    rewrite_record(dir.path(), 4500, |record| record[0] = 9);
    for threads in [0, 1, 3] {
        let store = EmbeddedStore::open_with(dir.path(), options(threads)).unwrap();
        let (got, err) = futures::executor::block_on(scan_until_error(&store));
        let err = err.unwrap_or_else(|| panic!("{threads} read threads: no error"));
        assert!(
            err.contains("position 4500") && err.contains("version 9"),
            "{err}"
        );
        // Every event before it, in order, and nothing after it.
        assert_eq!(got.len(), 4499, "{threads} read threads");
        assert!(
            got.iter()
                .zip(1..)
                .all(|(e, p)| e.position == Position::from_u64(p))
        );
        // A tag read that meets it fails the same way; one that does not is unaffected.
        let tagged = |tag: &str| {
            futures::executor::block_on(async {
                store
                    .read(Query::tagged(tag), ReadOptions::new())
                    .await
                    .unwrap()
                    .collect_all()
                    .await
            })
        };
        let every = tagged("every:0").unwrap_err().to_string();
        assert!(every.contains("position 4500"), "{every}");
        assert_eq!(tagged("every:1").unwrap().len() as u64, EVENTS / 2);
    }
}
