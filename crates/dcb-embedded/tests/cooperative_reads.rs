//! Long reads share the async runtime: a read of many chunks yields between chunks, so that
//! more concurrent scans than worker threads still leave a timer and other tasks running (a
//! console scan, a view rebuild or an export must not starve the host's requests).
//!
//! No clock decides these tests: the readers keep scanning until the other task has run (with a
//! large bound on the number of scans), and a store whose reads never yield runs into that
//! bound before the other task gets a turn.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dcb_core::{Event, EventStore, Query, QueryItem, ReadOptions};
use dcb_embedded::EmbeddedStore;
use futures::StreamExt;

/// Scans per reader at most; far more than the other task needs to get a turn.
const MAX_SCANS: u64 = 200;
const EVENTS: u64 = 5_000;

async fn store_with_events(dir: &std::path::Path) -> Arc<EmbeddedStore> {
    let store = Arc::new(EmbeddedStore::open(dir).unwrap());
    for batch in 0..(EVENTS / 1_000) {
        let events: Vec<Event> = (0..1_000)
            .map(|i| Event::new("E", vec![0u8; 32]).tag(format!("t:{}", (batch * 1_000 + i) % 2)))
            .collect();
        store.append(events, Vec::new()).await.unwrap();
    }
    store
}

/// Scans `query` until `stop` is set or `MAX_SCANS` scans are done; returns the scans done.
async fn scan_until(store: Arc<EmbeddedStore>, query: Query, stop: Arc<AtomicBool>) -> u64 {
    let mut scans = 0;
    while scans < MAX_SCANS && !stop.load(Ordering::Relaxed) {
        let mut s = store.read(query.clone(), ReadOptions::new()).await.unwrap();
        let mut n = 0u64;
        while let Some(e) = s.next().await {
            e.unwrap();
            n += 1;
        }
        assert!(n > 0);
        scans += 1;
    }
    scans
}

async fn readers_leave_room_for(flavor_workers: usize, readers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for r in 0..readers {
        let query = if r % 2 == 0 {
            Query::All
        } else {
            Query::item(QueryItem::new().tag("t:1"))
        };
        tasks.push(tokio::spawn(scan_until(store.clone(), query, stop.clone())));
    }
    // A timer task and a plain task, started after the readers occupy every worker.
    let ran = Arc::new(AtomicU64::new(0));
    let timer = {
        let (stop, ran) = (stop.clone(), ran.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            ran.fetch_add(1, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
        })
    };
    timer.await.unwrap();
    let mut scans = Vec::new();
    for t in tasks {
        scans.push(t.await.unwrap());
    }
    assert_eq!(ran.load(Ordering::Relaxed), 1);
    assert!(
        scans.iter().all(|&s| s < MAX_SCANS),
        "with {readers} long reads on {flavor_workers} worker(s) the timer only ran after a \
         reader had done all its {MAX_SCANS} scans: reads do not yield ({scans:?})"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn two_long_reads_on_one_thread_leave_a_timer_running() {
    readers_leave_room_for(1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_long_reads_on_two_workers_leave_a_timer_running() {
    readers_leave_room_for(2, 4).await;
}

/// A read of one chunk never yields: it completes in the poll that started it.
#[tokio::test(flavor = "current_thread")]
async fn a_short_read_completes_without_yielding() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path()).await;
    let mut s = store
        .read(Query::All, ReadOptions::new().limit(100))
        .await
        .unwrap();
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut n = 0;
    loop {
        match s.poll_next_unpin(&mut cx) {
            std::task::Poll::Ready(Some(e)) => {
                e.unwrap();
                n += 1;
            }
            std::task::Poll::Ready(None) => break,
            std::task::Poll::Pending => panic!("a one-chunk read returned Pending"),
        }
    }
    assert_eq!(n, 100);
}
