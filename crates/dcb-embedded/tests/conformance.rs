//! The shared conformance suite and model test on the embedded store, each rule on a fresh
//! temporary directory; the reopen hook opens the same directory again.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcb_core::conformance::Fixture;
use dcb_core::{EventStore, StoreError};
use dcb_embedded::EmbeddedStore;

/// Opens `path`, waiting briefly if the previous handle's writer is still releasing the lock.
fn open(path: &PathBuf) -> EmbeddedStore {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match EmbeddedStore::open(path) {
            Ok(s) => return s,
            Err(StoreError::Locked(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("reopen failed: {e}"),
        }
    }
}

async fn embedded() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let store = open(&path);
    Fixture::new(Arc::new(store))
        .with_guard(dir)
        .with_reopen(move || {
            let path = path.clone();
            async move {
                let store: Arc<dyn EventStore> = Arc::new(open(&path));
                store
            }
        })
}

dcb_core::conformance_suite!(embedded);
dcb_core::model_test_suite!(embedded, 64);
