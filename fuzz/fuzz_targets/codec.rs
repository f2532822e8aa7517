//! Fuzz target `codec`: see `fairway_fuzz::targets::codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::targets::codec(data));
