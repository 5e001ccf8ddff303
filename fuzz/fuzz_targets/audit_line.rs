#![no_main]
//! See `interceptor::fuzzing::audit_line`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| interceptor::fuzzing::audit_line(data));
