//! Fuzz target `segment`: see `fairway_fuzz::store_targets::segment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::store_targets::segment(data));
