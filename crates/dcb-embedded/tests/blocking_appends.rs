//! `EmbeddedStore::append_blocking`: a synchronous caller commits on its own thread when the
//! writer is idle, and through the queue otherwise, with every guarantee of a queued append.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use dcb_core::{
    AppendCondition, AppendRequest, Event, EventStore, Position, Query, ReadOptions, StoreError,
    Uuid,
};
use dcb_embedded::EmbeddedStore;

fn ev(tag: &str, n: u64) -> Event {
    Event::new("Written", n.to_string().into_bytes()).tag(tag.to_owned())
}

fn read_all(store: &EmbeddedStore) -> Vec<(u64, Vec<u8>)> {
    futures::executor::block_on(async {
        store
            .read(Query::All, ReadOptions::new())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.position.as_u64().unwrap(), e.event.data.to_vec()))
            .collect()
    })
}

#[test]
fn sequential_blocking_appends_commit_on_the_caller_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        for n in 1..=50u64 {
            let a = store
                .append_blocking(AppendRequest::new(vec![ev("t", n)]))
                .unwrap();
            assert_eq!(a.positions, [Position::from_u64(n)]);
        }
        // Nothing else writes, so the writer was idle for every one of them.
        assert_eq!(store.stats().caller_commits, 50);
        // The async path still works beside it and continues the positions.
        let a = futures::executor::block_on(store.append(vec![ev("t", 51)], vec![])).unwrap();
        assert_eq!(a.positions, [Position::from_u64(51)]);
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let all = read_all(&store);
    assert_eq!(all.len(), 51);
    for (i, (p, data)) in all.iter().enumerate() {
        assert_eq!(*p, i as u64 + 1);
        assert_eq!(data, &(i as u64 + 1).to_string().into_bytes());
    }
}

#[test]
fn a_blocking_append_checks_conditions_ids_and_input_as_a_queued_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let first = store
        .append_blocking(AppendRequest::new(vec![ev("k", 1)]))
        .unwrap();
    let head = first.positions[0];
    let guarded = |after: Option<Position>| {
        AppendRequest::new(vec![ev("k", 2)])
            .condition(AppendCondition::new(Query::tagged("k"), after))
    };
    match store.append_blocking(guarded(None)) {
        Err(StoreError::ConditionFailed { condition: 0 }) => {}
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    assert_eq!(
        read_all(&store).len(),
        1,
        "a failed condition writes nothing"
    );
    store.append_blocking(guarded(Some(head))).unwrap();
    // An idempotent retry is replayed, not written twice.
    let id = Uuid::from_u128(7);
    let once = store
        .append_blocking(AppendRequest::new(vec![ev("i", 3).with_id(id)]))
        .unwrap();
    let again = store
        .append_blocking(AppendRequest::new(vec![ev("i", 3).with_id(id)]))
        .unwrap();
    assert!(!once.replayed && again.replayed);
    assert_eq!(once.positions, again.positions);
    // Bad input is a typed error and changes nothing.
    assert!(matches!(
        store.append_blocking(AppendRequest::new(vec![])),
        Err(StoreError::InvalidInput(_))
    ));
    assert_eq!(read_all(&store).len(), 3);
}

#[test]
fn blocking_and_queued_appends_from_many_threads_get_every_position_once() {
    const THREADS: u64 = 4;
    const EACH: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        // Async appenders through the queue, beside blocking ones on their own threads.
        let tasks: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                runtime.spawn(async move {
                    for n in 0..EACH {
                        store
                            .append(vec![ev(&format!("async:{t}"), n)], vec![])
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for n in 0..EACH {
                        let request = AppendRequest::new(vec![ev(&format!("sync:{t}"), n)]);
                        store.append_blocking(request).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        runtime.block_on(async {
            for t in tasks {
                t.await.unwrap();
            }
        });
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let all = read_all(&store);
    let total = 2 * THREADS * EACH;
    assert_eq!(all.len() as u64, total);
    let positions: Vec<u64> = all.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    // Each appender's events are all there, in its own order.
    for kind in ["async", "sync"] {
        for t in 0..THREADS {
            let events = futures::executor::block_on(async {
                store
                    .read(Query::tagged(format!("{kind}:{t}")), ReadOptions::new())
                    .await
                    .unwrap()
                    .collect_all()
                    .await
                    .unwrap()
            });
            let data: Vec<Vec<u8>> = events.iter().map(|e| e.event.data.to_vec()).collect();
            let expected: Vec<Vec<u8>> = (0..EACH).map(|n| n.to_string().into_bytes()).collect();
            assert_eq!(data, expected, "{kind}:{t}");
        }
    }
}

/// A caller that (against the advice) appends with `append_blocking` from inside a tokio task
/// gets its appends: waiting for the reply does not draw on the task's cooperative budget,
/// which a runtime resets only when the task yields (and it never does while blocked here).
#[test]
fn blocking_appends_inside_a_tokio_task_do_not_hang_once_its_budget_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            // Far more than the budget of 128 polls a task gets between yields.
            for n in 1..=400u64 {
                store
                    .append_blocking(AppendRequest::new(vec![ev("t", n)]))
                    .unwrap();
            }
        });
        done.send(read_all(&store).len()).unwrap();
    });
    // The deadline is only a bound on a hang, generous for a loaded machine.
    let appended = finished
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("400 blocking appends inside a tokio task finish");
    assert_eq!(appended, 400);
    writer.join().unwrap();
}
