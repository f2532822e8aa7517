//! The shared conformance suite and model test on the embedded store, each rule on a fresh
//! temporary directory; the reopen hook opens the same directory again.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcb_core::conformance::Fixture;
use dcb_core::{EventStore, StoreError};
use dcb_embedded::{EmbeddedStore, Options};

/// Opens `path`, waiting briefly if the previous handle's writer is still releasing the lock.
fn open(path: &PathBuf, options: Options) -> EmbeddedStore {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match EmbeddedStore::open_with(path, options) {
            Ok(s) => return s,
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("reopen failed: {e}"),
        }
    }
}

async fn fixture(options: Options) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let store = open(&path, options);
    Fixture::new(Arc::new(store))
        .with_guard(dir)
        .with_reopen(move || {
            let path = path.clone();
            async move {
                let store: Arc<dyn EventStore> = Arc::new(open(&path, options));
                store
            }
        })
}

/// The default options (recent records served from an 8 MiB cache, 128 MiB segments).
async fn embedded() -> Fixture {
    fixture(Options::default()).await
}

/// A cache of 2 KiB (reads cross from cached records to the segment files in the middle of a
/// read), 4 KiB segments (reads and reopens cross sealed segments), and an index snapshot every 3
/// events (reopens load a snapshot, then index the events after it).
async fn embedded_small_cache() -> Fixture {
    fixture(
        Options::default()
            .recent_bytes(2048)
            .segment_bytes(4096)
            .index_snapshot_every(3),
    )
    .await
}

dcb_core::conformance_suite!(embedded);
dcb_core::model_test_suite!(embedded, 64);

mod small_cache {
    dcb_core::conformance_suite!(super::embedded_small_cache);
    dcb_core::model_test_suite!(super::embedded_small_cache, 64);
}
