//! `cargo +nightly fuzz run values`: see `vphone::fuzzing::values` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vphone::fuzzing::values(data));
