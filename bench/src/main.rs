//! Grape benchmarks: named scenarios behind one runner. Each prints a table and writes JSON.
//!
//! Run in release mode (the numbers mean nothing in a debug build):
//!
//! ```text
//! cargo run --release -p grape-bench -- exact-search            # 100,000 × 128, k = 10
//! cargo run --release -p grape-bench -- exact-search --rows 1000000 --out results.json
//! cargo run --release -p grape-bench -- cold-load               # needs python3 for the S3 server
//! cargo build --release --workspace && target/release/grape-bench meta   # 3 grape meta processes
//! cargo build --release --workspace && target/release/grape-bench cluster  # + 1 to 3 grape compute
//! ```
//!
//! | scenario       | what it measures                                                        |
//! |----------------|-------------------------------------------------------------------------|
//! | `exact-search` | exact k-NN QPS and latency (recall measured), distance-kernel throughput |
//! |                | in GB/s beside this machine's measured memory bandwidth                  |
//! | `cold-load`    | a fresh node loading 1,000,000 × 128 from loopback S3 to its first query, |
//! |                | with no, an empty and a warm local cache, and the bytes read from S3     |
//! | `meta`         | commit latency (1 and 16 clients), leader kill to next commit over 10     |
//! |                | kills, and a long linearizability check under a kill/restart nemesis     |
//! | `cluster`      | search QPS with 1, 2 and 3 compute nodes on 1,000,000 × 128, and the     |
//! |                | failover time of a killed compute node with replica factor 1 and 2       |
//! | `rpc`          | round trip of trivial RPCs (Status, ListCollections, tiny search and SQL) |
//! |                | through `grape dev`: the network floor every request pays                |
//! | `soak`         | 30 minutes of mixed good and bad traffic on 3 meta + 2 compute: memory    |
//! |                | over time, answers by code, every acknowledged insert readable           |
//! | `upsert`       | upsert rows/s and latency at batch sizes 1, 100, 10,000; delete until    |
//! |                | gone from a Get; search over the small segments left behind              |
//! | `ann`          | HNSW recall@k vs QPS over ef (none/sq8/bq), in process and through       |
//! |                | `grape dev`, build time and memory, beside hnswlib and faiss; plots it   |

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
    /// A fresh node loading a collection from S3 and answering its first query, with and
    /// without a warm local cache.
    ColdLoad(scenarios::cold_load::Options),
    /// The meta Raft group: commit latency, leader failover time, long linearizability check.
    Meta(scenarios::meta::Options),
    /// Compute nodes as processes: QPS with 1, 2 and 3 nodes, failover time with 1 and 2 replicas.
    Cluster(scenarios::cluster::Options),
    /// The round trip of trivial RPCs through `grape dev`: the network floor.
    Rpc(scenarios::rpc::Options),
    /// Mixed good and bad traffic on 3 meta + 2 compute for a long time: memory, errors, writes.
    Soak(scenarios::soak::Options),
    /// Upserts at batch sizes 1, 100 and 10,000, deletes until invisible, through `grape dev`.
    Upsert(scenarios::upsert::Options),
    /// ANN recall/QPS curves of HNSW (none, sq8, bq) in process and through `grape dev`,
    /// beside hnswlib and faiss.
    Ann(scenarios::ann::Options),
    /// Upserts and queries through the Python qdrant-client (REST and gRPC) beside Grape's
    /// own gRPC API, on the same data in the same run.
    Qdrant(scenarios::qdrant::Options),
    /// Filtered searches and counts before and after Qdrant payload indexes, through
    /// qdrant-client and Grape's own API.
    PayloadIndex(scenarios::payload_index::Options),
}

fn main() {
    let args = Args::parse();
    if cfg!(debug_assertions) {
        eprintln!("note: built without --release; the search crates are optimised in dev builds too, but --release is what to quote");
    }
    let result = match args.scenario {
        Scenario::ExactSearch(o) => scenarios::exact_search::run(o),
        Scenario::ColdLoad(o) => scenarios::cold_load::run(o),
        Scenario::Meta(o) => scenarios::meta::run(o),
        Scenario::Cluster(o) => scenarios::cluster::run(o),
        Scenario::Rpc(o) => scenarios::rpc::run(o),
        Scenario::Soak(o) => scenarios::soak::run(o),
        Scenario::Upsert(o) => scenarios::upsert::run(o),
        Scenario::Ann(o) => scenarios::ann::run(o),
        Scenario::Qdrant(o) => scenarios::qdrant::run(o),
        Scenario::PayloadIndex(o) => scenarios::payload_index::run(o),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
