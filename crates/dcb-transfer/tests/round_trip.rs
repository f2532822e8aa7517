//! embedded → KvStore<SimKv> → embedded through export files: identical logs, checkpoints mapped,
//! consumers' state kept, throughput printed. (The 1M-event run is `fairway-bench --transfer`.)
#![allow(clippy::unwrap_used)]

mod support;

use std::io::BufReader;
use std::time::Instant;

use dcb_core::{EventStore, Position};
use dcb_embedded::EmbeddedStore;
use dcb_kv::{KvOptions, KvStore, SimKv};
use dcb_transfer::{ImportOptions, export, import_from};

const N: u64 = 20_000;

async fn export_file<S: EventStore>(store: &S, path: &std::path::Path, what: &str) -> u64 {
    let t = Instant::now();
    let file = std::fs::File::create(path).unwrap();
    let summary = export(store, file, &mut |_| {}).await.unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "export {what}: {} events, {} bytes in {s:.2} s = {:.0} events/s",
        summary.events,
        summary.bytes,
        summary.events as f64 / s
    );
    assert!(summary.consumers, "{what} exports its consumers");
    summary.events
}

async fn import_file<S: EventStore>(
    store: &S,
    path: &std::path::Path,
    what: &str,
) -> dcb_transfer::Imported {
    let t = Instant::now();
    let imported = import_from(
        store,
        || std::fs::File::open(path).map(BufReader::new),
        ImportOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    let s = t.elapsed().as_secs_f64();
    println!(
        "import {what}: {} events in {s:.2} s = {:.0} events/s (both passes)",
        imported.source.events,
        imported.source.events as f64 / s
    );
    imported
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_to_kv_to_embedded_keeps_the_log_and_maps_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedStore::open(dir.path().join("a")).unwrap();
    support::fill(&a, N).await;
    let cp_a = Position::from_u64(N / 2);
    support::consumers(&a, cp_a).await;
    let source = support::all(&a).await;
    assert_eq!(source.len() as u64, N);

    let file_a = dir.path().join("a.jsonl");
    assert_eq!(export_file(&a, &file_a, "embedded").await, N);

    // Into FoundationDB's engine on the simulator: new positions (versionstamps).
    let kv = KvStore::open(SimKv::new(), "moved", KvOptions::new())
        .await
        .unwrap();
    let into_kv = import_file(&kv, &file_a, "into KvStore<SimKv>").await;
    assert!(!into_kv.same_positions);
    let moved = support::all(&kv).await;
    assert_eq!(moved.len(), source.len());
    for (s, m) in source.iter().zip(&moved) {
        assert_eq!(s.event, m.event, "at source position {}", s.position);
    }
    // view-a's checkpoint is the new position of the event that was at N/2; auto-b's the head.
    let at_cp = moved[(N / 2 - 1) as usize].position;
    assert_eq!(kv.checkpoint("view-a").await.unwrap(), Some(at_cp));
    assert_eq!(
        kv.checkpoint("auto-b").await.unwrap(),
        kv.head().await.unwrap()
    );
    assert_eq!(kv.checkpoint("idem").await.unwrap(), None);
    for c in ["view-a", "idem"] {
        assert_eq!(
            support::state(&kv, c).await,
            support::state(&a, c).await,
            "{c}"
        );
    }
    assert_eq!(into_kv.checkpoints.get("view-a"), Some(&at_cp));

    // And back into an embedded store: the same positions as at the start.
    let file_kv = dir.path().join("kv.jsonl");
    assert_eq!(export_file(&kv, &file_kv, "KvStore<SimKv>").await, N);
    let b = EmbeddedStore::open(dir.path().join("b")).unwrap();
    let into_b = import_file(&b, &file_kv, "into embedded").await;
    // KvStore's versionstamps became dense positions again, those of the original store.
    assert!(!into_b.same_positions);
    assert_eq!(support::all(&b).await, source);
    for c in ["view-a", "auto-b", "idem"] {
        assert_eq!(
            b.checkpoint(c).await.unwrap(),
            a.checkpoint(c).await.unwrap(),
            "{c}"
        );
        assert_eq!(
            support::state(&b, c).await,
            support::state(&a, c).await,
            "{c}"
        );
    }
    // The strongest check: the embedded copy exports byte for byte what the original did.
    let file_b = dir.path().join("b.jsonl");
    export_file(&b, &file_b, "embedded copy").await;
    assert!(std::fs::read(&file_a).unwrap() == std::fs::read(&file_b).unwrap());
}

/// Regression: the embedded store orders consumers by name length first (its keys are
/// length-prefixed), so an export's state lines are grouped by consumer but not in name order;
/// the importer refused such an export as "consumer state out of order".
#[tokio::test]
async fn consumers_in_backend_order_import() {
    let dir = tempfile::tempdir().unwrap();
    let a = EmbeddedStore::open(dir.path().join("a")).unwrap();
    support::fill(&a, 10).await;
    for consumer in ["b", "aa", "todo-lists", "idempotency"] {
        a.commit_state(dcb_core::StateCommit {
            consumer: consumer.into(),
            writes: vec![
                (b"k1".to_vec(), Some(b"v".to_vec())),
                (b"k2".to_vec(), Some(b"v".to_vec())),
            ],
            checkpoint: Some(Position::from_u64(5)),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let file = dir.path().join("a.jsonl");
    export_file(&a, &file, "embedded").await;
    let b = EmbeddedStore::open(dir.path().join("b")).unwrap();
    let imported = import_file(&b, &file, "embedded").await;
    assert_eq!(imported.source.state_entries, 8);
    for consumer in ["b", "aa", "todo-lists", "idempotency"] {
        assert_eq!(support::state(&b, consumer).await.len(), 2, "{consumer}");
        assert_eq!(
            b.checkpoint(consumer).await.unwrap(),
            Some(Position::from_u64(5))
        );
    }
}
