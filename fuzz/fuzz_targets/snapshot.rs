//! Fuzz target `snapshot`: see `fairway_fuzz::store_targets::snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::store_targets::snapshot(data));
