//! Fuzz target `kv_keys`: see `fairway_fuzz::store_targets::kv_keys`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::store_targets::kv_keys(data));
