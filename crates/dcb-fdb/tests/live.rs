//! Live tests against a real FoundationDB cluster (feature `fdb`).
//!
//! With `FDB_CLUSTER_FILE` set when the tests are built and run
//! (`FDB_CLUSTER_FILE=/path/fdb.cluster cargo test -p dcb-fdb --features fdb`), the whole
//! conformance suite and the model test run, each rule in a fresh random namespace that is
//! cleared afterwards, plus the FDB-specific tests below. Without it, every test here prints a
//! loud `SKIPPED: FDB_CLUSTER_FILE is not set` line and passes without touching any cluster.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use dcb_core::{AppendCondition, Event, EventStore, Query, QueryItem, ReadOptions, StoreError};
use dcb_fdb::{FdbOptions, FdbStore};

const SKIPPED: &str = "SKIPPED: FDB_CLUSTER_FILE is not set";

/// The cluster file, or `None` after printing the skip line.
fn cluster_file() -> Option<String> {
    match std::env::var("FDB_CLUSTER_FILE") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            println!("{SKIPPED}");
            eprintln!("{SKIPPED}");
            None
        }
    }
}

/// Clears the namespace of a store when dropped (from a thread of its own, since the drop
/// happens inside the test's runtime).
struct ClearOnDrop(FdbStore);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        let store = self.0.clone();
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(store.destroy())
        })
        .join();
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not clear the test namespace: {e}"),
            Err(_) => eprintln!("could not clear the test namespace: the clearing thread panicked"),
        }
    }
}

async fn fresh_store(cluster: &str) -> (FdbStore, ClearOnDrop) {
    let namespace = format!("dcb-fdb-test-{}", uuid::Uuid::new_v4());
    let store = FdbStore::open(Some(cluster), &namespace, FdbOptions::new())
        .await
        .unwrap();
    (store.clone(), ClearOnDrop(store))
}

#[cfg(fdb_live)]
mod suite {
    use std::sync::Arc;

    use super::*;
    use dcb_core::conformance::Fixture;

    async fn fixture() -> Fixture {
        let Some(cluster) = cluster_file() else {
            panic!("{SKIPPED}, but the suite was compiled in")
        };
        let (store, guard) = fresh_store(&cluster).await;
        let namespace_store = store.clone();
        Fixture::new(Arc::new(store))
            .with_guard(guard)
            .with_reopen(move || {
                // A new handle on the same namespace (the network and cluster are the same).
                let store = namespace_store.clone();
                async move { Arc::new(store) as Arc<dyn EventStore> }
            })
    }

    dcb_core::conformance_suite!(fixture);
    dcb_core::model_test_suite!(fixture, 16);
}

#[cfg(not(fdb_live))]
#[test]
fn conformance_suite_and_model_test() {
    // The suite's tests are generated at build time; `FDB_CLUSTER_FILE` was not set then.
    println!("{SKIPPED} (when building): the conformance suite and the model test did not run");
    eprintln!("{SKIPPED} (when building): the conformance suite and the model test did not run");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn live_positions_are_versionstamps_in_commit_order() {
    let Some(cluster) = cluster_file() else {
        return;
    };
    runtime().block_on(async {
        let (store, _guard) = fresh_store(&cluster).await;
        let a = store
            .append(
                vec![Event::new("A", vec![]), Event::new("B", vec![])],
                vec![],
            )
            .await
            .unwrap();
        let b = store
            .append(vec![Event::new("C", vec![])], vec![])
            .await
            .unwrap();
        let (p0, p1, p2) = (a.positions[0], a.positions[1], b.positions[0]);
        // One commit: same 10-byte versionstamp, index 0 and 1.
        assert_eq!(p0.to_bytes()[..10], p1.to_bytes()[..10]);
        assert_eq!(&p1.to_bytes()[10..], &[0, 1]);
        assert!(p2 > p1);
        assert_eq!(store.head().await.unwrap(), Some(p2));
    });
}

#[test]
fn live_conflicting_appends_have_exactly_one_winner() {
    let Some(cluster) = cluster_file() else {
        return;
    };
    runtime().block_on(async {
        let (store, _guard) = fresh_store(&cluster).await;
        let head = store.head().await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let q = Query::item(QueryItem::new().tag("seat:1"));
                    let e = Event::new("Claimed", vec![])
                        .tags(["seat:1".to_string(), format!("by:{i}")]);
                    store
                        .append(vec![e], vec![AppendCondition::new(q, head)])
                        .await
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => wins += 1,
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(wins, 1);
    });
}

#[test]
fn live_read_longer_than_one_transaction() {
    let Some(cluster) = cluster_file() else {
        return;
    };
    runtime().block_on(async {
        let (store, _guard) = fresh_store(&cluster).await;
        for i in 0..20 {
            let batch: Vec<Event> = (0..50)
                .map(|j| Event::new("E", format!("{i}-{j}").into_bytes()).tag("t"))
                .collect();
            store.append(batch, vec![]).await.unwrap();
        }
        // A reader slow enough to outlive FoundationDB's 5-second transaction limit.
        let mut stream = store
            .read(Query::tagged("t"), ReadOptions::new())
            .await
            .unwrap();
        let mut seen = Vec::new();
        use futures::StreamExt;
        while let Some(e) = stream.next().await {
            seen.push(e.unwrap().position);
            if seen.len() % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        assert_eq!(seen.len(), 1000);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
    });
}

#[test]
fn live_wait_for_head_wakes_on_append() {
    let Some(cluster) = cluster_file() else {
        return;
    };
    runtime().block_on(async {
        let (store, _guard) = fresh_store(&cluster).await;
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.wait_for_head(None).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a = store
            .append(vec![Event::new("A", vec![])], vec![])
            .await
            .unwrap();
        let head = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(head, a.last());
    });
}
