//! `cargo +nightly fuzz run json_body`: see `vphone::fuzzing::json_body` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vphone::fuzzing::json_body(data));
