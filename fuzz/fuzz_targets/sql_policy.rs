#![no_main]
//! See `interceptor::fuzzing::sql_policy`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| interceptor::fuzzing::sql_policy(data));
