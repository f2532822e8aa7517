//! An import refuses a store that is not empty and an export that is truncated or damaged, with
//! a typed error and nothing written.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Cursor;

use dcb_core::{EventStore, MemoryStore, Position, StateCommit};
use dcb_transfer::{ImportOptions, Imported, TransferError, export, import_from, verify};
use futures::StreamExt;

async fn exported(n: u64) -> Vec<u8> {
    let source = MemoryStore::new();
    support::fill(&source, n).await;
    support::consumers(&source, Position::from_u64(n / 2)).await;
    let mut file = Vec::new();
    export(&source, &mut file, &mut |_| {}).await.unwrap();
    file
}

async fn import(store: &MemoryStore, file: &[u8]) -> Result<Imported, TransferError> {
    let file = file.to_vec();
    import_from(
        store,
        move || Ok(Cursor::new(file.clone())),
        ImportOptions::default(),
        &mut |_| {},
    )
    .await
}

async fn assert_untouched(store: &MemoryStore) {
    assert_eq!(store.head().await.unwrap(), None);
    let mut snap = store.consumer_snapshot().await.unwrap();
    assert!(snap.checkpoints.is_empty());
    assert!(snap.state.next().await.is_none(), "state was written");
}

#[tokio::test]
async fn import_refuses_a_store_with_events_or_consumers() {
    let file = exported(50).await;
    let with_events = MemoryStore::new();
    support::fill(&with_events, 1).await;
    match import(&with_events, &file).await {
        Err(TransferError::NotEmpty(m)) => assert!(m.contains("events"), "{m}"),
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    assert_eq!(support::all(&with_events).await.len(), 1);

    let with_state = MemoryStore::new();
    with_state
        .commit_state(StateCommit {
            consumer: "someone".into(),
            writes: vec![(b"k".to_vec(), Some(b"v".to_vec()))],
            ..Default::default()
        })
        .await
        .unwrap();
    match import(&with_state, &file).await {
        Err(TransferError::NotEmpty(m)) => assert!(m.contains("someone"), "{m}"),
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    assert_eq!(with_state.head().await.unwrap(), None);

    let empty = MemoryStore::new();
    let done = import(&empty, &file).await.unwrap();
    assert_eq!(done.source.events, 50);
    assert_eq!(support::all(&empty).await.len(), 50);
}

#[tokio::test]
async fn import_refuses_truncated_exports_and_writes_nothing() {
    let file = exported(300).await;
    let lines: Vec<usize> = file
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    // Cut at every kind of place: mid-line, after the header, after some state, after some
    // events, just before the trailer, inside the trailer, and the trailer's final newline.
    let cuts = [
        0,
        10,
        lines[0],
        lines[5],
        lines[400],
        lines[400] + 7,
        lines[lines.len() - 2],
        file.len() - 5,
        file.len() - 1,
    ];
    for cut in cuts {
        let store = MemoryStore::new();
        match import(&store, &file[..cut]).await {
            Err(TransferError::Damaged(_) | TransferError::Format { .. }) => {}
            other => panic!("cut at {cut}: expected a damaged export, got {other:?}"),
        }
        assert!(verify(Cursor::new(&file[..cut])).is_err());
        assert_untouched(&store).await;
    }
    // A missing event line in the middle (the trailer's counts and CRC no longer match).
    let mut gap = file[..lines[400]].to_vec();
    gap.extend_from_slice(&file[lines[401]..]);
    let store = MemoryStore::new();
    assert!(matches!(
        import(&store, &gap).await,
        Err(TransferError::Damaged(_))
    ));
    assert_untouched(&store).await;
}

#[tokio::test]
async fn import_refuses_damaged_exports_and_writes_nothing() {
    let file = exported(300).await;
    let text = String::from_utf8(file.clone()).unwrap();
    let damaged: Vec<Vec<u8>> = vec![
        // One character of a payload changed: still valid JSON, the CRC catches it.
        text.replacen("\"i\":150,", "\"i\":151,", 1).into_bytes(),
        // A type changed.
        text.replacen("\"type\":\"T3\"", "\"type\":\"T4\"", 1)
            .into_bytes(),
        // A line that is not JSON.
        text.replacen("{\"position\":\"7\"", "{\"position\":\"7\"!!", 1)
            .into_bytes(),
        // Two lines swapped (positions out of order).
        {
            let mut v: Vec<&str> = text.split_inclusive('\n').collect();
            v.swap(310, 311);
            v.concat().into_bytes()
        },
        // Data after the trailer.
        [file.clone(), b"{\"position\":\"301\"}\n".to_vec()].concat(),
        // Another format version.
        text.replacen("{\"fairway_export\":1", "{\"fairway_export\":9", 1)
            .into_bytes(),
    ];
    for (i, bytes) in damaged.iter().enumerate() {
        assert_ne!(bytes, &file, "case {i} changed nothing");
        let store = MemoryStore::new();
        match import(&store, bytes).await {
            Err(TransferError::Damaged(_) | TransferError::Format { .. }) => {}
            other => panic!("case {i}: expected a damaged export, got {other:?}"),
        }
        assert_untouched(&store).await;
    }
}
