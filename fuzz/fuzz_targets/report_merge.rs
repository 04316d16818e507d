//! `cargo +nightly fuzz run report_merge`: see `vphone::fuzzing::report_merge` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vphone::fuzzing::report_merge(data));
