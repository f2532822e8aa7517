//! Storage faults: the data directory stops accepting writes (a file-size limit, as on a full
//! disk). Appends fail with a typed error and nothing acknowledged is lost; reads keep working;
//! once the fault clears the store reopens itself and accepts appends again, without a restart.
//!
//! The fault is `RLIMIT_FSIZE` in a child process (this test binary run again with
//! `DCB_FAULT_CHILD` set) started through `bash -c 'trap "" XFSZ; exec ...'`, so that a write past
//! the limit fails with `EFBIG` instead of killing the process. The file has its own `main`
//! (`harness = false`).
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use dcb_core::{Event, EventStore, Query, ReadOptions, StoreError};
use dcb_embedded::EmbeddedStore;
use rlimit::Resource;

fn main() {
    match std::env::var("DCB_FAULT_CHILD") {
        Ok(dir) => child(&dir),
        Err(_) => {
            parent();
            println!("storage_faults: 1 passed, 0 failed");
        }
    }
}

fn ev(i: u64) -> Event {
    Event::new(
        "Filled",
        format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(400)).into_bytes(),
    )
    .tag(format!("n:{i}"))
}

fn child(dir: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir).unwrap();
        store.append(vec![ev(0)], vec![]).await.unwrap();
        // No file may grow past 512 KiB: the journal (preallocated, but written from its start)
        // soon hits the limit, as on a full disk.
        let (_, hard) = Resource::FSIZE.get().unwrap();
        Resource::FSIZE.set(512 * 1024, hard).unwrap();
        let mut acked = 1u64;
        let failure = loop {
            match store.append(vec![ev(acked)], vec![]).await {
                Ok(_) => acked += 1,
                Err(e) => break e,
            }
            assert!(acked < 100_000, "the file-size limit never took effect");
        };
        assert!(
            matches!(failure, StoreError::Storage(_)),
            "first failure: {failure:?}"
        );
        println!("FAILED_AFTER {acked} {failure}");
        // While the fault lasts: writes are refused, reads still answer.
        let again = store.append(vec![ev(acked)], vec![]).await;
        assert!(
            again.is_err(),
            "append accepted while the disk is still full"
        );
        let seen = store
            .read(Query::of_type("Filled"), ReadOptions::new())
            .await
            .unwrap();
        let seen = seen.collect_all().await.unwrap();
        assert!(
            seen.len() as u64 >= acked,
            "reads lost acknowledged events during the fault"
        );
        // The fault clears: the store reopens itself on a later write.
        Resource::FSIZE.set(hard, hard).unwrap();
        let mut resumed = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match store.append(vec![ev(1_000_000)], vec![]).await {
                Ok(a) => {
                    resumed = Some(a);
                    break;
                }
                Err(StoreError::Unavailable(_) | StoreError::Storage(_)) => {}
                Err(e) => panic!("unexpected error after the fault cleared: {e}"),
            }
        }
        let resumed = resumed.expect("the store did not resume after the fault cleared");
        let all = store
            .read(Query::All, ReadOptions::new())
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert!(all.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(all.last().map(|e| e.position), resumed.last());
        println!("RESUMED {} {}", resumed.positions[0], all.len());
    });
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg("trap '' XFSZ; exec \"$0\"")
        .arg(&exe)
        .env("DCB_FAULT_CHILD", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    let failed_after: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FAILED_AFTER "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no FAILED_AFTER line:\n{stdout}"));
    assert!(stdout.contains("RESUMED"), "{stdout}");
    // After the child exits, a fresh open sees every acknowledged event, in order.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let all = store.read(Query::of_type("Filled"), ReadOptions::new()).await.unwrap().collect_all().await.unwrap();
        let mut expected = 0u64;
        for e in &all {
            let text = String::from_utf8_lossy(&e.event.data);
            if text.contains("\"i\":1000000,") {
                continue;
            }
            if text.contains(&format!("\"i\":{expected},")) {
                expected += 1;
            }
        }
        assert!(expected >= failed_after, "only {expected} of {failed_after} acknowledged events survived");
        assert!(all.iter().any(|e| String::from_utf8_lossy(&e.event.data).contains("\"i\":1000000,")));
        eprintln!(
            "storage faults: writes failed after {failed_after} appends, {} events after recovery and reopen",
            all.len()
        );
    });
}
