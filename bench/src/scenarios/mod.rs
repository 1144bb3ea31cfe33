//! One module per scenario.

pub mod exact_search;
