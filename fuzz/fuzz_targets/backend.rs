#![no_main]
//! See `interceptor::fuzzing::backend`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| interceptor::fuzzing::backend(data));
