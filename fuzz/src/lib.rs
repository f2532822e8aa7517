//! `fairway-fuzz`: cargo-fuzz targets for the decoders of untrusted bytes (the stored-record
//! codec, position parsing, query JSON, the index snapshot file, the KV key layout).
//!
//! Layer: a test tool beside the workspace (its own `[workspace]`, never a member). It depends on
//! the store crates only (`dcb-core`, `dcb-embedded`, `dcb-kv`). The target bodies live in
//! [`targets`] and [`store_targets`], plain files that the workspace's `fairway-reliability`
//! tests also compile and call, so they build and run on stable too.

pub mod store_targets;
pub mod targets;
