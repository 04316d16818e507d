//! `cargo +nightly fuzz run der_signature`: see `vphone::fuzzing::der_signature` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vphone::fuzzing::der_signature(data));
