//! Any bytes as an insert's Arrow IPC rows: an error is fine, a crash is a bug. Seed the
//! corpus with `grape_compute::fuzzing::sample_insert()` for deeper runs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arrow's panics inside the decoder are caught and answered INVALID_ARGUMENT, as on a
    // node (grape_compute::decoder_panics keeps libFuzzer's hook out of them); any other
    // panic aborts and is a finding.
    let _ = grape_compute::fuzzing::decode_insert(data);
});
