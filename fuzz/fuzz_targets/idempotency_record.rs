//! Fuzz target `idempotency_record`: see `fairway_fuzz::web_targets::idempotency_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::web_targets::idempotency_record(data));
