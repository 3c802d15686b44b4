#![no_main]
//! `shoal_gateway::fuzzing::wss` under libFuzzer.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_gateway::fuzzing::wss(data));
