//! The FoundationDB client network thread: booted once per process, stopped at exit.
//!
//! `foundationdb::api::NetworkBuilder::boot` is `unsafe` because its contract cannot be checked
//! by the compiler:
//!
//! 1. the API version can be selected, and the network booted, **once per process** (a second
//!    attempt panics, and a stopped network can never be restarted);
//! 2. the returned `NetworkAutoStop` **must be dropped before the process exits** (it stops the
//!    network and joins its thread; exiting with the thread running is undefined behaviour in
//!    the C client), except when the process aborts.
//!
//! [`boot`] upholds both: a `OnceLock` makes the boot happen at most once, the guard is kept in a
//! static, and a C `atexit` handler drops it when the process exits normally (returning from
//! `main`, `std::process::exit`, the end of a test binary). The network therefore outlives every
//! store, including stores held in statics or by concurrently running tests. A process that also
//! uses the `foundationdb` crate directly must not boot the network itself.

use std::sync::{Mutex, OnceLock};

use dcb_core::StoreError;
use foundationdb::api::{FdbApiBuilder, NetworkAutoStop};

static BOOTED: OnceLock<Result<(), String>> = OnceLock::new();
static GUARD: Mutex<Option<NetworkAutoStop>> = Mutex::new(None);

extern "C" fn stop_network_at_exit() {
    // Never unwind across the C boundary.
    let _ = std::panic::catch_unwind(|| {
        let guard = GUARD
            .lock()
            .map(|mut g| g.take())
            .unwrap_or_else(|p| p.into_inner().take());
        drop(guard);
    });
}

/// Boots the FoundationDB network thread if it is not running yet (idempotent, thread-safe).
///
/// Every [`crate::FdbStore::open`] calls it; call it yourself only to surface a boot failure early.
pub fn boot() -> Result<(), StoreError> {
    let outcome = BOOTED.get_or_init(|| {
        let builder = FdbApiBuilder::default()
            .build()
            .map_err(|e| format!("selecting the FDB API version: {e}"))?;
        // SAFETY: (1) the OnceLock runs this closure at most once per process, and this module
        // is the only place that selects the API version or boots the network; (2) the guard is
        // stored in GUARD and dropped by the atexit handler registered below, before the process
        // exits.
        #[allow(unsafe_code)]
        let guard =
            unsafe { builder.boot() }.map_err(|e| format!("booting the FDB network: {e}"))?;
        match GUARD.lock() {
            Ok(mut g) => *g = Some(guard),
            Err(p) => *p.into_inner() = Some(guard),
        }
        // SAFETY: registers a plain `extern "C" fn()` that never unwinds.
        #[allow(unsafe_code)]
        let registered = unsafe { libc::atexit(stop_network_at_exit) };
        if registered != 0 {
            tracing::warn!("could not register the FDB network stop at exit");
        }
        Ok(())
    });
    outcome.clone().map_err(StoreError::storage_msg)
}
