//! `fairway-fuzz`: cargo-fuzz targets for the decoders of untrusted bytes (the stored-record
//! codec, position parsing, query JSON).
//!
//! Layer: a test tool beside the workspace (its own `[workspace]`, never a member). It depends on
//! `dcb-core` only. The target bodies live in [`targets`], a plain file that the workspace's
//! `fairway-reliability` tests also compile and call, so they build and run on stable too.

pub mod targets;
