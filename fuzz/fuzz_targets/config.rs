#![no_main]
//! `shoal_gateway::fuzzing::config` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_gateway::fuzzing::config(data));
