//! Fuzz target `position`: see `fairway_fuzz::targets::position`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::targets::position(data));
