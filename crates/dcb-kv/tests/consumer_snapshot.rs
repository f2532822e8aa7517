//! `KvStore::consumer_snapshot`: head, checkpoints and state at one read version.
#![allow(clippy::unwrap_used)]

use dcb_core::{Event, EventStore, StateCommit, StateEntry};
use dcb_kv::{KvOptions, KvStore, SimKv};
use futures::TryStreamExt;

#[tokio::test]
async fn snapshot_holds_every_consumer_at_one_read_version() {
    let store = KvStore::open(SimKv::new(), "snap", KvOptions::new())
        .await
        .unwrap();
    // A neighbouring namespace's consumers must not show.
    let other = KvStore::open(store.database().clone(), "snap2", KvOptions::new())
        .await
        .unwrap();
    let appended = store
        .append(vec![Event::new("A", b"{}".to_vec()).tag("t:1")], vec![])
        .await
        .unwrap();
    let p = appended.last().unwrap();
    // Names that are prefixes of each other, and more keys than one range page.
    for consumer in ["ab", "a"] {
        let writes = (0..1500u32)
            .map(|k| (k.to_be_bytes().to_vec(), Some(consumer.as_bytes().to_vec())))
            .collect();
        store
            .commit_state(StateCommit {
                consumer: consumer.into(),
                writes,
                checkpoint: Some(p),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    other
        .commit_state(StateCommit {
            consumer: "a".into(),
            writes: vec![(b"x".to_vec(), Some(b"y".to_vec()))],
            checkpoint: Some(p),
            ..Default::default()
        })
        .await
        .unwrap();
    let snap = store.consumer_snapshot().await.unwrap();
    store.reset_consumer("a").await.unwrap();
    assert_eq!(snap.head, Some(p));
    assert_eq!(
        snap.checkpoints.into_iter().collect::<Vec<_>>(),
        vec![("a".to_owned(), p), ("ab".to_owned(), p)]
    );
    let state: Vec<StateEntry> = snap.state.try_collect().await.unwrap();
    let mut expected = Vec::new();
    for consumer in ["a", "ab"] {
        for k in 0..1500u32 {
            expected.push(StateEntry {
                consumer: consumer.into(),
                key: k.to_be_bytes().to_vec(),
                value: consumer.as_bytes().to_vec(),
            });
        }
    }
    assert_eq!(state, expected);
}
