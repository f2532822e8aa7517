//! Compiles the live FoundationDB tests in (`cfg(fdb_live)`) when `FDB_CLUSTER_FILE` is set at
//! build time and the `fdb` feature is on; otherwise `tests/live.rs` only prints `SKIPPED` lines.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(fdb_live)");
    println!("cargo:rerun-if-env-changed=FDB_CLUSTER_FILE");
    let feature = std::env::var_os("CARGO_FEATURE_FDB").is_some();
    let cluster = std::env::var_os("FDB_CLUSTER_FILE").is_some_and(|v| !v.is_empty());
    if feature && cluster {
        println!("cargo:rustc-cfg=fdb_live");
    }
}
