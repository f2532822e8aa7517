//! Fuzz target `console_params`: see `fairway_fuzz::web_targets::console_params`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fairway_fuzz::web_targets::console_params(data);
});
