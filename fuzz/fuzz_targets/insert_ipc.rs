//! An insert's Arrow IPC rows, from the input: an error is fine, a crash is a bug. Inputs
//! starting with an even byte are the rows themselves (any bytes at all); the others damage
//! a valid insert (`grape_compute::fuzzing::sample_insert`) as the rest of the input says, so
//! the fuzzer reaches deep into the decoder without a seed corpus.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn sample() -> &'static [u8] {
    static SAMPLE: OnceLock<Vec<u8>> = OnceLock::new();
    SAMPLE.get_or_init(grape_compute::fuzzing::sample_insert)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = if mode % 2 == 0 { rest.to_vec() } else { grape_storage::fuzzing::damaged(sample(), rest) };
    // Arrow's panics inside the decoder are caught and answered INVALID_ARGUMENT, as on a
    // node (grape_storage::decoder_panics keeps libFuzzer's hook out of them); any other
    // panic aborts and is a finding.
    let _ = grape_compute::fuzzing::decode_insert(&bytes);
});
