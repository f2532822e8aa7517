//! Unit tests of the model's semantics.

use std::time::Duration;

use super::*;
use crate::kv::{KvErrorKind, KvTransaction, RangeRead};

fn rr(begin: &[u8], end: &[u8], snapshot: bool) -> RangeRead<'static> {
    RangeRead {
        begin: Box::leak(begin.to_vec().into_boxed_slice()),
        end: Box::leak(end.to_vec().into_boxed_slice()),
        limit: 100,
        reverse: false,
        snapshot,
        target_bytes: 0,
    }
}

#[tokio::test]
async fn mvcc_and_read_your_writes() {
    let db = SimKv::new();
    let t1 = db.begin().unwrap();
    t1.set(b"a", b"1");
    assert_eq!(t1.get(b"a", false).await.unwrap(), Some(b"1".to_vec()));
    let t2 = db.begin().unwrap();
    t1.commit().await.unwrap();
    assert_eq!(
        t2.get(b"a", true).await.unwrap(),
        None,
        "t2 reads at its own version"
    );
    let t3 = db.begin().unwrap();
    assert_eq!(t3.get(b"a", true).await.unwrap(), Some(b"1".to_vec()));
    t3.clear_range(b"a", b"b");
    assert!(
        t3.get_range(rr(b"a", b"b", true))
            .await
            .unwrap()
            .pairs
            .is_empty()
    );
}

#[tokio::test]
async fn serializable_reads_conflict_snapshot_reads_do_not() {
    let db = SimKv::new();
    let reader = db.begin().unwrap();
    let snap = db.begin().unwrap();
    assert!(
        reader
            .get_range(rr(b"k", b"l", false))
            .await
            .unwrap()
            .pairs
            .is_empty()
    );
    assert!(
        snap.get_range(rr(b"k", b"l", true))
            .await
            .unwrap()
            .pairs
            .is_empty()
    );
    let writer = db.begin().unwrap();
    writer.set(b"k1", b"x");
    writer.commit().await.unwrap();
    reader.set(b"z", b"1");
    snap.set(b"y", b"1");
    assert_eq!(
        reader.commit().await.unwrap_err().kind,
        KvErrorKind::Conflict
    );
    assert!(snap.commit().await.is_ok());
}

#[tokio::test]
async fn versionstamped_keys_conflict_with_range_readers_and_are_unreadable() {
    let db = SimKv::new();
    let reader = db.begin().unwrap();
    reader.get_range(rr(b"p", b"q", false)).await.unwrap();
    let writer = db.begin().unwrap();
    let mut key = b"p".to_vec();
    key.extend_from_slice(&[0; 12]);
    writer.set_versionstamped_key(&key, 1, b"v");
    assert!(writer.get_range(rr(b"p", b"q", true)).await.is_err());
    let stamp = writer.commit().await.unwrap().unwrap();
    reader.set(b"z", b"1");
    assert_eq!(
        reader.commit().await.unwrap_err().kind,
        KvErrorKind::Conflict
    );
    let t = db.begin().unwrap();
    let got = t.get_range(rr(b"p", b"q", true)).await.unwrap().pairs;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].0[1..11], &stamp);
}

#[tokio::test]
async fn watches_fire_on_change() {
    let db = SimKv::new();
    let t = db.begin().unwrap();
    let w = t.watch(b"h");
    t.commit().await.unwrap();
    let t2 = db.begin().unwrap();
    t2.set(b"h", b"1");
    t2.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), w)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn old_transactions_are_too_old() {
    let db = SimKv::with_config(SimConfig {
        max_tx_age: Duration::from_millis(10),
        ..SimConfig::default()
    });
    let t = db.begin().unwrap();
    // On the paused clock this moves the transaction's age past the limit exactly.
    tokio::time::advance(Duration::from_millis(30)).await;
    assert_eq!(
        t.get(b"a", true).await.unwrap_err().kind,
        KvErrorKind::Retryable
    );
}

fn faulty(faults: Faults) -> SimKv {
    SimKv::with_config(SimConfig {
        faults,
        ..SimConfig::default()
    })
}

#[tokio::test]
async fn shared_versions_number_the_batch_and_read_versions_close_it() {
    let db = faulty(Faults {
        seed: 3,
        shared_version: 1.0,
        ..Faults::none()
    });
    // Both transactions start before either commits: the second joins the first's version.
    let (a, b) = (db.begin().unwrap(), db.begin().unwrap());
    a.set_versionstamped_value(b"x", &[0; 10], 0);
    b.set_versionstamped_value(b"y", &[0; 10], 0);
    let (sa, sb) = (
        a.commit().await.unwrap().unwrap(),
        b.commit().await.unwrap().unwrap(),
    );
    assert_eq!(sa[..8], sb[..8], "one commit version");
    assert_eq!((&sa[8..], &sb[8..]), (&[0u8, 0][..], &[0u8, 1][..]));
    // A read version handed out closes the batch: the next commit gets a new version.
    let reader = db.begin().unwrap();
    assert_eq!(reader.get(b"y", true).await.unwrap().unwrap(), sb.to_vec());
    let c = db.begin().unwrap();
    c.set_versionstamped_value(b"z", &[0; 10], 0);
    let sc = c.commit().await.unwrap().unwrap();
    assert!(sc > sb && sc[8..] == [0, 0]);
}

#[tokio::test]
async fn a_late_commit_lands_later_and_still_checks_its_read_version() {
    let db = SimKv::new();
    db.script([CommitFault::Late, CommitFault::Late]);
    let t1 = db.begin().unwrap();
    t1.get(b"k", false).await.unwrap();
    t1.set(b"a", b"1");
    assert_eq!(t1.commit().await.unwrap_err().kind, KvErrorKind::Timeout);
    let t2 = db.begin().unwrap();
    t2.get(b"k", false).await.unwrap();
    t2.set(b"b", b"1");
    assert_eq!(t2.commit().await.unwrap_err().kind, KvErrorKind::Timeout);
    // Someone writes what the second late commit read.
    let w = db.begin().unwrap();
    w.set(b"k", b"x");
    w.commit().await.unwrap();
    assert_eq!(db.late_in_flight(), 2);
    // The first read `k` too: both were read before `w`, so both conflict... except that the
    // first is checked against `w` as well. Only commits without a conflicting write land.
    assert_eq!(db.land_late_commits(), 0);
    let s = db.stats();
    assert_eq!((s.late_commits, s.late_refused), (2, 2));
    let t3 = db.begin().unwrap();
    db.script([CommitFault::Late]);
    t3.set(b"c", b"1");
    t3.commit().await.unwrap_err();
    assert_eq!(db.land_late_commits(), 1);
    let r = db.begin().unwrap();
    assert_eq!(r.get(b"c", true).await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(r.get(b"a", true).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_commit_future_dropped_in_flight_still_lands() {
    let db = SimKv::with_config(SimConfig {
        latency: Latency::fixed(Duration::from_millis(100)),
        ..SimConfig::default()
    });
    let t = db.begin().unwrap();
    t.set(b"a", b"1");
    let dropped = tokio::time::timeout(Duration::from_millis(10), t.commit()).await;
    assert!(dropped.is_err(), "the commit was still in flight");
    assert_eq!(db.late_in_flight(), 1);
    assert_eq!(db.land_late_commits(), 1);
    let r = db.begin().unwrap();
    assert_eq!(r.get(b"a", true).await.unwrap(), Some(b"1".to_vec()));
}

#[tokio::test]
async fn sizes_are_counted_as_foundationdb_counts_them() {
    let db = SimKv::with_config(SimConfig {
        tx_size_limit: 1000,
        ..SimConfig::default()
    });
    let t = db.begin().unwrap();
    t.get(b"r", false).await.unwrap();
    t.set(b"k", b"vv");
    t.set_versionstamped_key(b"p0123456789ab", 1, b"val");
    t.commit().await.unwrap();
    // read range [r, r\0): 32 + 1 + 2; set: 56 + 1 + 2 + (32 + 1 + 2);
    // stamped key: 56 + (13 + 4) + 3, no client-side conflict range.
    let expected = (32 + 3) + (56 + 3 + 35) + (56 + 17 + 3);
    assert_eq!(db.stats().largest_commit_bytes, expected);
    let big = db.begin().unwrap();
    big.set(b"k", &[0; 1000]);
    assert_eq!(
        big.commit().await.unwrap_err().kind,
        KvErrorKind::TransactionTooLarge
    );
    let key = db.begin().unwrap();
    key.set(&[1; FDB_KEY_SIZE_LIMIT + 1], b"");
    assert_eq!(
        key.commit().await.unwrap_err().kind,
        KvErrorKind::KeyTooLarge
    );
    let value = db.begin().unwrap();
    value.set(b"v", &vec![0; FDB_VALUE_SIZE_LIMIT + 1]);
    assert_eq!(
        value.commit().await.unwrap_err().kind,
        KvErrorKind::ValueTooLarge
    );
}

#[tokio::test]
async fn short_batches_set_more_and_cover_only_what_they_returned() {
    let db = faulty(Faults {
        seed: 11,
        short_batch: 1.0,
        ..Faults::none()
    });
    let w = db.begin().unwrap();
    for i in 0..10u8 {
        w.set(&[b'k', i], b"v");
    }
    w.commit().await.unwrap();
    let t = db.begin().unwrap();
    let mut begin = b"k".to_vec();
    let mut seen = 0;
    for _ in 0..20 {
        let batch = t
            .get_range(RangeRead {
                begin: &begin,
                end: b"l",
                limit: 100,
                reverse: false,
                snapshot: true,
                target_bytes: 0,
            })
            .await
            .unwrap();
        seen += batch.pairs.len();
        let Some((last, _)) = batch.pairs.last() else {
            break;
        };
        begin = last.clone();
        begin.push(0);
        if !batch.more {
            break;
        }
    }
    assert_eq!(seen, 10);
    assert!(db.stats().short_batches > 0);
}

#[tokio::test]
async fn watches_can_fail() {
    let db = faulty(Faults {
        seed: 5,
        watch_error: 1.0,
        ..Faults::none()
    });
    let t = db.begin().unwrap();
    let w = t.watch(b"h");
    t.commit().await.unwrap();
    assert!(w.await.is_err());
}

#[tokio::test]
async fn a_copy_on_another_cluster_restarts_versions() {
    let db = SimKv::new();
    let t = db.begin().unwrap();
    t.set(b"a", b"1");
    t.commit().await.unwrap();
    let copy = db.copy_to_new_cluster(1);
    assert!(copy.version() <= db.version());
    let r = copy.begin().unwrap();
    assert_eq!(r.get(b"a", true).await.unwrap(), Some(b"1".to_vec()));
}
