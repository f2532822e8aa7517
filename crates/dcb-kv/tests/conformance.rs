//! The shared conformance suite and model test, run on the KV engine over `SimKv`: once without
//! faults, once with injected `commit_unknown_result`, conflicts and `transaction_too_old`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use dcb_core::EventStore;
use dcb_core::conformance::Fixture;
use dcb_kv::{Faults, KvOptions, KvStore, SimConfig, SimKv};

async fn fixture_with(config: SimConfig) -> Fixture {
    let db = SimKv::with_config(config);
    let store = KvStore::open(db.clone(), "conformance", KvOptions::new())
        .await
        .unwrap();
    // SimKv lives as long as a handle does: reopening opens the same namespace again, which
    // exercises the schema check and every read path of a fresh handle.
    Fixture::new(Arc::new(store)).with_reopen(move || {
        let db = db.clone();
        async move {
            let store: Arc<dyn EventStore> = Arc::new(
                KvStore::open(db, "conformance", KvOptions::new())
                    .await
                    .unwrap(),
            );
            store
        }
    })
}

async fn sim() -> Fixture {
    fixture_with(SimConfig::default()).await
}

async fn sim_with_faults() -> Fixture {
    // A fixed seed per process keeps failures reproducible.
    fixture_with(SimConfig {
        faults: Faults::chaos(0x5eed),
        ..SimConfig::default()
    })
    .await
}

mod plain {
    dcb_core::conformance_suite!(super::sim);
    dcb_core::model_test_suite!(super::sim, 64);
}

mod with_faults {
    dcb_core::conformance_suite!(super::sim_with_faults);
    dcb_core::model_test_suite!(super::sim_with_faults, 32);
}
