//! `cargo +nightly fuzz run lean_answer`: see `vphone::fuzzing::lean_answer` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vphone::fuzzing::lean_answer(data));
