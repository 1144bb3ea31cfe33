//! Any bytes as an insert's Arrow IPC rows: an error is fine, a crash is a bug. Seed the
//! corpus with `grape_compute::fuzzing::sample_insert()` for deeper runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = grape_compute::fuzzing::decode_insert(data);
});
