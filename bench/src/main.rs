//! Grape benchmarks: named scenarios behind one runner. Each prints a table and writes JSON.
//!
//! Run in release mode (the numbers mean nothing in a debug build):
//!
//! ```text
//! cargo run --release -p grape-bench -- exact-search            # 100,000 × 128, k = 10
//! cargo run --release -p grape-bench -- exact-search --rows 1000000 --out results.json
//! ```
//!
//! | scenario       | what it measures                                                        |
//! |----------------|-------------------------------------------------------------------------|
//! | `exact-search` | exact k-NN QPS and latency (recall 1.0 by construction), distance-kernel |
//! |                | throughput in GB/s beside this machine's measured memory bandwidth      |

mod report;
mod scenarios;

use clap::{Parser, Subcommand};

/// Grape's benchmark runner.
#[derive(Debug, Parser)]
#[command(name = "grape-bench")]
struct Args {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Exact search QPS, and kernel throughput against memory bandwidth.
    ExactSearch(scenarios::exact_search::Options),
}

fn main() {
    let args = Args::parse();
    if cfg!(debug_assertions) {
        eprintln!("note: built without --release; the search crates are optimised in dev builds too, but --release is what to quote");
    }
    let result = match args.scenario {
        Scenario::ExactSearch(o) => scenarios::exact_search::run(o),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
