//! Shared test helpers: a compact generated log and comparisons.
#![allow(dead_code, clippy::unwrap_used)]

use dcb_core::{
    Event, EventStore, Position, Query, ReadOptions, SequencedEvent, StateCommit, Uuid,
};
use futures::StreamExt;

/// Event `i` (1-based) of the generated log: 5 types, 100 events per `k:` tag, a second tag on
/// every tenth, JSON data mostly and raw bytes on every seventh, metadata on every fourth, an id
/// on every other one.
pub fn event(i: u64) -> Event {
    let data = if i.is_multiple_of(7) {
        let mut d = vec![0u8, 0xff, b'\n'];
        d.extend_from_slice(&i.to_le_bytes());
        d
    } else {
        format!(
            "{{\"i\":{i},\"pad\":\"{}\"}}",
            "x".repeat((i % 50) as usize)
        )
        .into_bytes()
    };
    let mut e = Event::new(format!("T{}", i % 5), data).tag(format!("k:{}", i / 100));
    if i.is_multiple_of(10) {
        e = e.tag(format!("m:{}", i % 3));
    }
    if i.is_multiple_of(4) {
        e = e.meta("at", format!("{i}"));
    }
    if i.is_multiple_of(2) {
        e = e.with_id(Uuid::from_u128(u128::from(i) + 1));
    }
    e
}

/// Appends events `1..=n` in batches of 500.
pub async fn fill<S: EventStore + ?Sized>(store: &S, n: u64) {
    let mut i = 1;
    while i <= n {
        let end = (i + 499).min(n);
        store
            .append((i..=end).map(event).collect(), vec![])
            .await
            .unwrap();
        i = end + 1;
    }
}

/// Three consumers: `view-a` (state and a checkpoint at `cp_a`), `auto-b` (a checkpoint at the
/// head) and `idem` (state, no checkpoint).
pub async fn consumers<S: EventStore + ?Sized>(store: &S, cp_a: Position) {
    let head = store.head().await.unwrap().unwrap();
    let writes = (0..300u32)
        .map(|k| (k.to_be_bytes().to_vec(), Some(format!("v{k}").into_bytes())))
        .collect();
    store
        .commit_state(StateCommit {
            consumer: "view-a".into(),
            writes,
            checkpoint: Some(cp_a),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .commit_state(StateCommit {
            consumer: "auto-b".into(),
            checkpoint: Some(head),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .commit_state(StateCommit {
            consumer: "idem".into(),
            writes: vec![(b"key-1".to_vec(), Some(b"{\"status\":201}".to_vec()))],
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Every event of a store.
pub async fn all<S: EventStore + ?Sized>(store: &S) -> Vec<SequencedEvent> {
    let mut out = Vec::new();
    let mut read = store.read(Query::All, ReadOptions::new()).await.unwrap();
    while let Some(e) = read.next().await {
        out.push(e.unwrap());
    }
    out
}

/// Every state entry of `consumer`.
pub async fn state<S: EventStore + ?Sized>(store: &S, consumer: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan_state(consumer, b"", None, 100_000)
        .await
        .unwrap()
}
