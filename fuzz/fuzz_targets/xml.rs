#![no_main]
//! `shoal_gateway::fuzzing::xml` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_gateway::fuzzing::xml(data));
