//! Fuzz target `query_json`: see `fairway_fuzz::targets::query_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::targets::query_json(data));
