#![no_main]
//! See `interceptor::fuzzing::frontend`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| interceptor::fuzzing::frontend(data));
