//! One module per scenario.

pub mod cluster;
pub mod cold_load;
pub mod exact_search;
pub mod meta;
