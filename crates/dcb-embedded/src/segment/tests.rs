//! Tests of the segment log: roll-over, reopen, torn tails, damage, offset tables.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::readpool::ReadPool;
use read::read_run;

/// The records at `positions`, fetched as a read step fetches them (with `pool`'s help).
fn read_with(
    log: &Log,
    positions: &[u64],
    pool: Option<&ReadPool>,
) -> Result<Vec<Bytes>, StoreError> {
    log.read_spans(positions, pool)
        .map(read::Spans::into_records)
}

fn rec(p: u64) -> Vec<u8> {
    format!("record {p} {}", "x".repeat((p % 50) as usize)).into_bytes()
}

fn fill(log: &Log, from: u64, to: u64, per_frame: u64) {
    let mut p = from;
    while p <= to {
        let n = per_frame.min(to - p + 1);
        let records: Vec<Vec<u8>> = (p..p + n).map(rec).collect();
        log.append(&records, &[]).unwrap();
        p += n;
        if log.is_full() {
            log.roll().unwrap();
        }
    }
}

/// A directory holding a closed log of `segment_bytes` segments with records `1..=to`,
/// `per_frame` to a frame.
fn written(segment_bytes: u64, to: u64, per_frame: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), segment_bytes).unwrap();
    fill(&log, 1, to, per_frame);
    dir
}

fn check_all(log: &Log, head: u64) {
    assert_eq!(log.head(), head);
    let all: Vec<u64> = (1..=head).collect();
    for (p, r) in all.iter().zip(log.read(&all).unwrap()) {
        assert_eq!(r.as_ref(), rec(*p).as_slice());
    }
    let back: Vec<u64> = (1..=head).rev().step_by(7).collect();
    for (p, r) in back.iter().zip(log.read(&back).unwrap()) {
        assert_eq!(r.as_ref(), rec(*p).as_slice());
    }
}

#[test]
fn records_span_segments_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        assert_eq!(log.head(), 0);
        fill(&log, 1, 500, 3);
        assert!(log.sealed.read().unwrap().len() > 3);
        check_all(&log, 500);
    }
    let (log, _) = Log::open(dir.path(), 4096).unwrap();
    check_all(&log, 500);
    fill(&log, 501, 600, 5);
    check_all(&log, 600);
}

#[test]
fn a_torn_tail_is_truncated_and_tracking_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join(seg_name(1));
    let good_len;
    {
        let (log, _) = Log::open(dir.path(), 1 << 20).unwrap();
        let cp = Position::from_u64(9);
        log.append(&[rec(1), rec(2)], &[("view".into(), cp)])
            .unwrap();
        // The end of the frames (the file itself is larger: space allocated ahead).
        good_len = log.active().len;
        log.append(&[rec(3)], &[]).unwrap();
    }
    let full = std::fs::read(&seg).unwrap();
    for cut in [good_len + 1, good_len + 20, full.len() as u64 - 1] {
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let (log, tracking) = Log::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(log.head(), 2, "cut at {cut}");
        assert_eq!(
            tracking,
            vec![(2, vec![("view".to_string(), Position::from_u64(9))])]
        );
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), good_len);
        drop(log);
        std::fs::write(&seg, &full).unwrap();
    }
    // Garbage (not zeros) after the last frame is a torn write too.
    let mut garbage = full.clone();
    garbage.extend_from_slice(b"FWFR\x10\0\0\0partial frame bytes");
    std::fs::write(&seg, &garbage).unwrap();
    let (log, _) = Log::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(log.head(), 3);
}

#[test]
fn damage_before_intact_frames_is_corruption() {
    let dir = written(1 << 20, 20, 1);
    let seg = dir.path().join(seg_name(1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5A;
    std::fs::write(&seg, &bytes).unwrap();
    match Log::open(dir.path(), 1 << 20) {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("followed by intact"), "{m}"),
        Err(e) => panic!("expected Corrupted, got {e:?}"),
        Ok(_) => panic!("a damaged frame in the middle of the log was accepted"),
    }
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_corruption_on_read() {
    let dir = written(4096, 200, 1);
    let seg = dir.path().join(seg_name(1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let (log, _) = Log::open(dir.path(), 4096).unwrap();
    let all: Vec<u64> = (1..=200).collect();
    match log.read(&all) {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("damaged"), "{m}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
}

#[test]
fn an_offset_table_of_version_1_is_rebuilt_compact() {
    let dir = written(4096, 300, 4);
    let off = dir.path().join(off_name(1));
    let v2 = std::fs::read(&off).unwrap();
    let count = u64_at(&v2, 16);
    assert!(count > 10, "the first segment holds {count} events");
    // Entries of one or two bytes, not four.
    assert!(
        v2.len() as u64 <= OFF_HEADER + 2 * count,
        "{} bytes",
        v2.len()
    );
    // The same table as version 1 wrote it: 4-byte entries.
    let offsets = {
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        log.sealed.read().unwrap()[0].offsets.clone()
    };
    let mut entries = Vec::new();
    for o in &offsets {
        entries.extend_from_slice(&o.to_le_bytes());
    }
    let mut v1 = v2[..OFF_HEADER as usize].to_vec();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    v1[32..36].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
    let crc = crc32fast::hash(&v1[..36]);
    v1[36..40].copy_from_slice(&crc.to_le_bytes());
    v1.extend_from_slice(&entries);
    std::fs::write(&off, &v1).unwrap();
    {
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        check_all(&log, 300);
        assert_eq!(log.sealed.read().unwrap()[0].offsets, offsets);
    }
    assert_eq!(std::fs::read(&off).unwrap(), v2, "rewritten as version 2");
}

#[test]
fn missing_or_damaged_offset_tables_are_rebuilt() {
    let dir = written(4096, 300, 4);
    let off = dir.path().join(off_name(1));
    std::fs::remove_file(&off).unwrap();
    {
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        check_all(&log, 300);
    }
    assert!(off.exists());
    let mut bytes = std::fs::read(&off).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x10;
    std::fs::write(&off, &bytes).unwrap();
    let (log, _) = Log::open(dir.path(), 4096).unwrap();
    check_all(&log, 300);
}

#[test]
fn scattered_records_fetched_by_the_read_pool_are_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), 4096).unwrap();
    fill(&log, 1, 20_000, 20);
    let pool = ReadPool::start(2).unwrap();
    // Every 40th record: more than FAN_OUT_RUNS separate runs (records ~4 KiB and more apart,
    // across segments), in both orders, and a request mixing near and far records.
    let far: Vec<u64> = (1..=20_000).step_by(40).collect();
    let back: Vec<u64> = far.iter().rev().copied().collect();
    let mixed: Vec<u64> = (1..=20_000).filter(|p| p % 97 < 3).collect();
    for positions in [&far, &back, &mixed] {
        assert!(positions.len() >= FAN_OUT_RUNS);
        let before = pool.fan_outs();
        let parallel = read_with(&log, positions, Some(&pool)).unwrap();
        assert_eq!(pool.fan_outs(), before + 1, "the read was split");
        assert_eq!(parallel, log.read(positions).unwrap());
        for (p, r) in positions.iter().zip(&parallel) {
            assert_eq!(r.as_ref(), rec(*p).as_slice());
        }
    }
    // A few records stay on the caller's thread.
    let before = pool.fan_outs();
    read_with(&log, &far[..FAN_OUT_RUNS - 1], Some(&pool)).unwrap();
    assert_eq!(pool.fan_outs(), before);
}

#[test]
fn a_damaged_record_is_corruption_when_the_read_pool_fetches_it() {
    let dir = written(4096, 20_000, 20);
    // Damage the last byte of a record in a sealed segment near the end of the read.
    let (log, _) = Log::open(dir.path(), 4096).unwrap();
    let victim = 19_801u64;
    let (file, at) = {
        let sealed = log.sealed.read().unwrap();
        let s = sealed
            .iter()
            .rev()
            .find(|s| s.base <= victim)
            .expect("a sealed segment holds it")
            .clone();
        let idx = (victim - s.base) as usize;
        let end = s.offsets.get(idx + 1).map_or(s.len, |&o| u64::from(o));
        (dir.path().join(seg_name(s.base)), end - 1)
    };
    drop(log);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[at as usize] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let (log, _) = Log::open(dir.path(), 4096).unwrap();
    let pool = ReadPool::start(2).unwrap();
    let positions: Vec<u64> = (1..=20_000).step_by(40).collect();
    assert!(positions.contains(&victim));
    match read_with(&log, &positions, Some(&pool)) {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("position 19801"), "{m}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert_eq!(pool.fan_outs(), 1);
}

/// A log of 100 records whose process ended without closing it (a crash): the segment file and
/// the end of its frames, with the space allocated ahead still after them.
fn crashed(dir: &Path) -> (PathBuf, u64) {
    let (log, _) = Log::open(dir, 1 << 30).unwrap();
    fill(&log, 1, 100, 3);
    let frames_end = log.active().len;
    std::mem::forget(log);
    (dir.join(seg_name(1)), frames_end)
}

#[test]
fn space_allocated_ahead_is_not_a_torn_write_and_is_given_back_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, frames_end) = crashed(dir.path());
    let size = std::fs::metadata(&seg).unwrap().len();
    assert!(size > frames_end, "space allocated ahead");
    {
        // Reopened, the zero tail is free space: nothing is cut, appends go on into it.
        let (log, _) = Log::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(log.head(), 100);
        check_all(&log, 100);
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), size);
        fill(&log, 101, 150, 3);
        check_all(&log, 150);
    }
    // Closed, the file is cut to its frames; it opens the same.
    let (log, _) = Log::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), log.active().len);
    check_all(&log, 150);
}

#[test]
fn a_torn_frame_in_space_allocated_ahead_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, frames_end) = crashed(dir.path());
    // The start of a frame that never completed, followed by the zeros allocated ahead.
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.write_all_at(b"FWFR\x40\0\0\0partial", frames_end)
        .unwrap();
    drop(f);
    let (log, _) = Log::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(log.head(), 100);
    check_all(&log, 100);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), frames_end);
    fill(&log, 101, 120, 3);
    check_all(&log, 120);
}

#[test]
fn a_run_is_read_whole_and_a_run_past_the_end_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(&path, &bytes).unwrap();
    let file = File::open(&path).unwrap();
    for (at, len) in [
        (0u64, 0usize),
        (0, 1),
        (3, 65_536),
        (69_999, 1),
        (0, 70_000),
    ] {
        let got = read_run(&file, at, len).unwrap();
        assert_eq!(
            &got[..],
            &bytes[at as usize..at as usize + len],
            "{at} {len}"
        );
    }
    // Past the end of the file: a typed storage error, never a short buffer.
    for (at, len) in [(69_990u64, 11usize), (70_000, 1), (1 << 40, 4)] {
        match read_run(&file, at, len) {
            Err(StoreError::Storage(_)) => {}
            other => panic!("{at} {len}: {other:?}"),
        }
    }
}

#[test]
fn record_checks_are_the_stored_formats_of_each_version() {
    // The stored formats, as known answers: a change here would make every existing record of
    // that version read as damaged. (XXH3-64 of no bytes is 0x2D06800538D394C2.)
    let cases: [(u64, &[u8], u32, u32); 4] = [
        (0, b"", 0x6522_df69, 0x5754_381b),
        (1, b"x", 0xafac_f9e3, 0xe469_b43f),
        (
            42,
            b"an event record of some length",
            0x38e0_56eb,
            0x9c95_9ae2,
        ),
        (u64::MAX, &[7u8; 300], 0x88c4_db7d, 0x69a2_9040),
    ];
    assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    for (p, data, crc32, xxh3) in cases {
        assert_eq!(
            Check::Crc32.record(p, data),
            crc32,
            "version 1, position {p}"
        );
        assert_eq!(Check::Xxh3.record(p, data), xxh3, "version 2, position {p}");
    }
    assert_eq!(Check::of_version(1), Some(Check::Crc32));
    assert_eq!(Check::of_version(2), Some(Check::Xxh3));
    assert_eq!(Check::CURRENT.version(), VERSION);
    assert_eq!(Check::of_version(3), None);
}

/// The format version in the header of segment `base` of `dir`.
fn version_of(dir: &Path, base: u64) -> u32 {
    u32_at(&std::fs::read(dir.join(seg_name(base))).unwrap(), 4)
}

/// Whether every frame and record of segment `base` of `dir` passes when checked by `check`.
fn checks_by(dir: &Path, base: u64, check: Check) -> bool {
    let (file, len) = open_segment(dir, base).unwrap();
    let scanned = scan(&file, base, len, check).unwrap();
    scanned.damaged_at.is_none() && !scanned.offsets.is_empty()
}

#[test]
fn a_version_1_segment_is_read_and_appended_to_as_such_and_the_segments_after_it_are_version_2() {
    let dir = tempfile::tempdir().unwrap();
    // A log written before version 2: its only segment is of version 1.
    create_segment(dir.path(), 1, Check::Crc32).unwrap();
    {
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        fill(&log, 1, 10, 3);
        assert!(log.sealed_segments().is_empty(), "still one segment");
    }
    assert_eq!(version_of(dir.path(), 1), 1);
    assert!(checks_by(dir.path(), 1, Check::Crc32));
    assert!(
        !checks_by(dir.path(), 1, Check::Xxh3),
        "its records carry CRC-32 checks"
    );
    {
        // Reopened: read, appended to (as version 1) until it is sealed, then new segments.
        let (log, _) = Log::open(dir.path(), 4096).unwrap();
        check_all(&log, 10);
        fill(&log, 11, 300, 5);
        assert!(log.sealed_segments().len() >= 2);
        check_all(&log, 300);
    }
    let (log, _) = Log::open(dir.path(), 4096).unwrap();
    check_all(&log, 300);
    let sealed = log.sealed_segments();
    assert!(
        sealed[0].1 > 10,
        "the first segment took appends after the reopen"
    );
    assert!(checks_by(dir.path(), 1, Check::Crc32));
    let mut bases: Vec<u64> = sealed.iter().map(|s| s.0).collect();
    bases.push(log.active_base());
    for &base in &bases[1..] {
        assert_eq!(version_of(dir.path(), base), VERSION, "segment {base}");
        if base != log.active_base() {
            assert!(checks_by(dir.path(), base, Check::Xxh3), "segment {base}");
            assert!(!checks_by(dir.path(), base, Check::Crc32), "segment {base}");
        }
    }
    // Fetched as a read step fetches them, each segment's records checked by its own version.
    let pool = ReadPool::start(2).unwrap();
    let all: Vec<u64> = (1..=300).rev().collect();
    for (p, r) in all.iter().zip(read_with(&log, &all, Some(&pool)).unwrap()) {
        assert_eq!(r.as_ref(), rec(*p).as_slice());
    }
}

#[test]
fn a_segment_of_a_version_this_build_does_not_know_refuses_to_open_and_is_kept() {
    for sealed in [false, true] {
        let dir = written(4096, if sealed { 300 } else { 10 }, 5);
        // An intact header (its checksum right) of version 3, as a newer build would write.
        let path = dir.path().join(seg_name(1));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..16]);
        bytes[16..20].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        match Log::open(dir.path(), 4096) {
            Err(StoreError::Corrupted(m)) => {
                assert!(m.contains("format version 3"), "{m}");
            }
            Err(e) => panic!("sealed {sealed}: expected Corrupted, got {e:?}"),
            Ok(_) => panic!("sealed {sealed}: opened"),
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "sealed {sealed}: left as it is"
        );
    }
}
