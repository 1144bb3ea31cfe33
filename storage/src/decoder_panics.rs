//! Catching the panics of third-party decoders on untrusted bytes: arrow's IPC reader on a
//! client's insert, Lance's reader on a damaged segment.
//!
//! Such a panic is bad input (answered `INVALID_ARGUMENT`, or a `Corrupt` segment): it is
//! logged at debug level, not printed with a backtrace as a crash would be (a fuzzer sends
//! thousands, and libFuzzer's own hook would abort on it). Panics anywhere else still go to
//! the hook that was installed before.
//!
//! The flag that marks a panic as expected is per thread, so a decoder that spawns tasks must
//! run them on the thread that called [`catch_decoder_panic`] (a current-thread runtime
//! there, as [`crate::segment::decode_lance`] does).

use std::cell::Cell;
use std::panic::{catch_unwind, UnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a decoder whose panics are expected.
    static EXPECTED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `decode`, turning a panic into `Err` with the panic's message.
pub fn catch_decoder_panic<T>(decode: impl FnOnce() -> T + UnwindSafe) -> Result<T, String> {
    install_hook();
    let was = EXPECTED.with(|e| e.replace(true));
    let result = catch_unwind(decode);
    EXPECTED.with(|e| e.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the decoder failed".to_string())
    })
}

/// Wraps the panic hook in place (once per process) so that expected panics are quiet.
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if EXPECTED.with(|e| e.get()) {
                tracing::debug!(%info, "a decoder panicked on a client's bytes; the request is refused");
            } else {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_other_results_pass() {
        assert_eq!(catch_decoder_panic(|| 7), Ok(7));
        let err = catch_decoder_panic(|| -> u8 { panic!("offset {} past the end", 9) }).unwrap_err();
        assert_eq!(err, "offset 9 past the end");
    }
}
