#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lrsweep_tests::fuzz::spec(data));
