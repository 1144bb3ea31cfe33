//! A valid segment damaged as the input says, then read: a `Corrupt` error is fine, a crash
//! (an abort, an allocation that takes the process down) is a bug.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

fn segment() -> &'static [u8] {
    static SEGMENT: OnceLock<Vec<u8>> = OnceLock::new();
    SEGMENT.get_or_init(|| runtime().block_on(grape_storage::fuzzing::sample_segment()).expect("sample segment").to_vec())
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = runtime().block_on(grape_storage::fuzzing::read_damaged_segment(segment(), data)) {
        assert_eq!(e.kind(), grape_storage::error::StorageErrorKind::Corrupt, "{e}");
    }
});
