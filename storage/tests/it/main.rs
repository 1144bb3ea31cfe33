//! Integration tests of `grape-storage`, one binary: the conformance suite and the backends it
//! runs on.

mod backends;
mod conformance;
mod data;
