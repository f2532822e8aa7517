//! Fuzz target `module_json`: see `fairway_fuzz::web_targets::module_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fairway_fuzz::web_targets::module_json(data));
