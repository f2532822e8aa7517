//! Tests of the segment index files: exact read-back, damage refused at open or found when read.

#![allow(clippy::unwrap_used)]
use super::*;
use dcb_core::Event;

fn sample(base: u64, n: u64) -> Index {
    let mut ix = Index::continuing_after(base - 1);
    for p in base..base + n {
        let mut e = Event::new(if p % 3 == 0 { "A" } else { "B" }, vec![])
            .tag(format!("t{}", p % 97))
            .with_id(Uuid::from_u128(u128::from(p) * 7919));
        if p % 2 == 0 {
            e = e.tag("even");
        }
        ix.add(p, &e);
    }
    ix
}

#[test]
fn lists_and_ids_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (base, n) = (1001, 5000);
    let ix = sample(base, n);
    write(dir.path(), base, n, &ix).unwrap();
    let from_file = SegIndex::open(dir.path(), base, n).unwrap();
    assert_eq!(from_file.resident(), 0);
    let held = from_file.with_blocks().unwrap();
    assert_eq!(held.resident(), held.blocks_len());
    assert_eq!(held.without_blocks().resident(), 0);
    // The same answers with the blocks read from the file and held in memory.
    for seg in [from_file, held] {
        read_back(&seg, &ix, base, n);
    }
}

fn read_back(seg: &SegIndex, ix: &Index, base: u64, n: u64) {
    assert!(seg.s.pblocks.len() > 3 && seg.s.iblocks.len() > 3);
    assert_eq!(seg.postings(), ix.postings() as u64);
    let (types, tags, _) = ix.parts();
    for (kind, (key, list)) in types
        .map(|x| (Kind::Type, x))
        .chain(tags.map(|x| (Kind::Tag, x)))
    {
        let all = seg.list(kind, key, 0, u64::MAX, None, false).unwrap();
        assert_eq!(all, list, "{key}");
        let mid: Vec<u64> = list
            .iter()
            .copied()
            .filter(|&p| (2000..=4000).contains(&p))
            .collect();
        assert_eq!(seg.list(kind, key, 2000, 4000, None, true).unwrap(), mid);
        let head = seg.list(kind, key, 2000, 4000, Some(3), false).unwrap();
        assert_eq!(head[..3.min(mid.len())], mid[..3.min(mid.len())]);
        let tail = seg.list(kind, key, 2000, 4000, Some(3), true).unwrap();
        assert_eq!(
            tail[tail.len() - 3.min(mid.len())..],
            mid[mid.len() - 3.min(mid.len())..]
        );
    }
    assert!(
        seg.list(Kind::Tag, "absent", 0, u64::MAX, None, false)
            .unwrap()
            .is_empty()
    );
    assert!(
        seg.list(Kind::Type, "even", 0, u64::MAX, None, false)
            .unwrap()
            .is_empty()
    );
    for p in base..base + n {
        let id = Uuid::from_u128(u128::from(p) * 7919);
        assert_eq!(seg.id(&id, id_hash(&id)).unwrap(), Some(p));
    }
    let absent = Uuid::from_u128(3);
    assert_eq!(seg.id(&absent, id_hash(&absent)).unwrap(), None);
}

#[test]
fn damage_is_refused_at_open_or_read() {
    let dir = tempfile::tempdir().unwrap();
    let ix = sample(1, 3000);
    write(dir.path(), 1, 3000, &ix).unwrap();
    let path = dir.path().join(idx_name(1));
    let good = std::fs::read(&path).unwrap();
    assert!(SegIndex::open(dir.path(), 1, 2999).is_err());
    // The header, the directory, a truncation: refused at open.
    for at in [10, good.len() - 5] {
        let mut b = good.clone();
        b[at] ^= 0x20;
        std::fs::write(&path, &b).unwrap();
        assert!(SegIndex::open(dir.path(), 1, 3000).is_err(), "byte {at}");
    }
    std::fs::write(&path, &good[..good.len() - 1]).unwrap();
    assert!(SegIndex::open(dir.path(), 1, 3000).is_err());
    // A block: found when it is read.
    let mut b = good.clone();
    b[HEADER + 100] ^= 0x01;
    std::fs::write(&path, &b).unwrap();
    let seg = SegIndex::open(dir.path(), 1, 3000).unwrap();
    let first = &seg.s.pblocks[0];
    let kind = if first.kind == 0 {
        Kind::Type
    } else {
        Kind::Tag
    };
    match seg.list(kind, &first.key.clone(), 0, u64::MAX, None, false) {
        Err(StoreError::Corrupted(m)) => assert!(m.contains("damaged"), "{m}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    // Loading the blocks into memory checks every one of them.
    match seg.with_blocks() {
        Err(reason) => assert!(reason.contains("damaged"), "{reason}"),
        Ok(_) => panic!("a damaged block was loaded"),
    }
}

#[test]
fn any_flipped_byte_is_refused_or_found_never_a_wrong_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (base, n) = (1, 800);
    let ix = sample(base, n);
    write(dir.path(), base, n, &ix).unwrap();
    let path = dir.path().join(idx_name(base));
    let good = std::fs::read(&path).unwrap();
    let (types, tags, ids) = ix.parts();
    let lists: Vec<(Kind, String, Vec<u64>)> = types
        .map(|(k, v)| (Kind::Type, k.to_owned(), v.to_vec()))
        .chain(tags.map(|(k, v)| (Kind::Tag, k.to_owned(), v.to_vec())))
        .collect();
    let ids: Vec<(Uuid, u64)> = ids.step_by(9).map(|(id, p)| (*id, p)).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut b = good.clone();
        let at = (x % b.len() as u64) as usize;
        b[at] ^= 1 << (x >> 60 & 7);
        if round % 10 == 0 {
            b.truncate(at);
        }
        std::fs::write(&path, &b).unwrap();
        let Ok(seg) = SegIndex::open(dir.path(), base, n) else {
            continue;
        };
        for (kind, key, want) in &lists {
            match seg.list(*kind, key, 0, u64::MAX, None, false) {
                Ok(got) => assert_eq!(&got, want, "byte {at}, {key}"),
                Err(StoreError::Corrupted(_)) => {}
                Err(e) => panic!("byte {at}: {e:?}"),
            }
        }
        for (id, p) in &ids {
            match seg.id(id, id_hash(id)) {
                Ok(got) => assert_eq!(got, Some(*p), "byte {at}"),
                Err(StoreError::Corrupted(_)) => {}
                Err(e) => panic!("byte {at}: {e:?}"),
            }
        }
    }
}

#[test]
fn the_held_run_is_the_newest_segments_that_fit_together() {
    assert_eq!(held_run([10, 20, 30], 0), 0);
    assert_eq!(held_run([10, 20, 30], 29), 1);
    assert_eq!(held_run([10, 20, 30], 30), 2);
    assert_eq!(held_run([10, 20, 30], u64::MAX), 3);
    // A segment that does not fit ends the run, even when an older one would.
    assert_eq!(held_run([10, 50, 5], 20), 1);
    assert_eq!(held_run([u64::MAX, 1], u64::MAX - 1), 0);
    assert_eq!(held_run(std::iter::empty(), 5), 0);
}
