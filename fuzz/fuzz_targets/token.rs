//! Fuzz target `token`: see `fairway_fuzz::web_targets::token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::web_targets::token(data));
