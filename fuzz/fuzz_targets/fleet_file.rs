//! `cargo +nightly fuzz run fleet_file`: see `vphone::fuzzing::fleet_file` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vphone::fuzzing::fleet_file(data));
