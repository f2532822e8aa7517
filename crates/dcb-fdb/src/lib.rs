//! `dcb-fdb`: the DCB event store on FoundationDB.
//!
//! Layer: a backend. It maps the `dcb-kv` key-value seam onto `foundationdb::Transaction`; all
//! DCB logic (keys, conditions, reads) lives in `dcb-kv`. It must not depend on the framework.
//!
//! Everything is behind the cargo feature **`fdb`**, off by default, so that the default
//! workspace build neither compiles nor links the FoundationDB client. Without the feature this
//! crate is empty. With it, building needs libclang (bindgen) and linking needs `libfdb_c`
//! (FoundationDB 7.3 client); see `docs/fdb.md`.
//!
//! ```text
//! // Cargo.toml: dcb-fdb = { path = "...", features = ["fdb"] }
//! use dcb_core::{Event, EventStore};
//! use dcb_fdb::{FdbOptions, FdbStore};
//! let store = FdbStore::open(Some("/etc/foundationdb/fdb.cluster"), "my-app", FdbOptions::new()).await?;
//! store.append(vec![Event::new("Hello", b"{}".to_vec())], vec![]).await?;
//! ```
//!
//! What the mapping does: every [`dcb_kv::KvTransaction`] call is the FDB call of the same name
//! (`get`, `get_range` in `Exact` streaming mode with a byte target, `set`, `clear`,
//! `clear_range`, `atomic_op` with `SetVersionstampedKey`/`SetVersionstampedValue` and the 4-byte
//! little-endian offset, `watch`, `get_read_version`, `get_versionstamp` + `commit`); every
//! transaction gets FDB's `timeout` option (no `retry_limit`: the engine retries in fresh
//! transactions and bounds the attempts itself); FDB error codes map onto the engine's classes
//! (`not_committed` → conflict, `commit_unknown_result` → maybe committed,
//! `transaction_timed_out` → timeout, `transaction_too_large`/`key_too_large`/`value_too_large`
//! → size refusals reported as typed input errors, other retryable codes → retryable, the rest
//! fatal).

#[cfg(feature = "fdb")]
mod adapter;
#[cfg(feature = "fdb")]
pub mod network;
#[cfg(feature = "fdb")]
mod store;

#[cfg(feature = "fdb")]
pub use adapter::{FdbDatabase, FdbTx};
#[cfg(feature = "fdb")]
pub use store::{FdbOptions, FdbStore};
