//! `fairway-fuzz`: cargo-fuzz targets for the decoders of untrusted bytes (the stored-record
//! codec, position parsing, query JSON, the index snapshot file, segment files, the KV key
//! layout, session tokens, stored idempotency records, JSON bodies through every module's route,
//! the console's query parameters).
//!
//! Layer: a test tool beside the workspace (its own `[workspace]`, never a member). It depends on
//! the crates whose decoders it drives (the store crates, the runtime, the modules). The target
//! bodies live in [`targets`], [`store_targets`] and [`web_targets`], plain files that the
//! workspace's `fairway-reliability` tests also compile and call, so they build and run on
//! stable too.

pub mod store_targets;
pub mod targets;
pub mod web_targets;
