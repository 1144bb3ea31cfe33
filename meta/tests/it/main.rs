//! Integration tests of the meta service, one binary with one module per scenario.

mod cluster;
mod helpers;
mod restart;
mod snapshot;
mod storage_suite;
