//! The command line: one `grape` binary for the servers and the client commands.
//!
//! # Layout
//! - this file: the clap definitions, exactly the commands DESIGN.md names;
//! - `client.rs`: connecting to an endpoint; `collection.rs`, `ingest.rs`, `query.rs`, `jobs.rs`:
//!   the client commands; `output.rs`: tables for people, `--output json` for programs.

pub mod client;
pub mod collection;
pub mod ingest;
pub mod jobs;
pub mod meta;
pub mod output;
pub mod query;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{env_or, StorageSection};
pub use crate::security::SecurityArgs;

/// Grape: vector search and SQL over object storage.
#[derive(Debug, Parser)]
#[command(name = "grape", version, about)]
pub struct Cli {
    /// Gateway to talk to (any compute node, or `grape dev`).
    #[arg(long, global = true, env = "GRAPE_ENDPOINT", default_value = "http://127.0.0.1:6800")]
    pub endpoint: String,
    /// Config file for server settings (see the README); flags and environment variables
    /// take precedence over it.
    #[arg(long, global = true, env = "GRAPE_CONFIG")]
    pub config: Option<PathBuf>,
    /// API key: the client commands send it; a server (`dev`, `meta`, `compute`) requires it
    /// of every client, and it may change anything (see also `--read-only-api-key`).
    #[arg(long, global = true, env = "GRAPE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// CA certificate (PEM) to trust: the client commands then speak TLS to `--endpoint`
    /// (`https://…`).
    #[arg(long, global = true, env = "GRAPE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// How to print results: `table` for people, `json` for programs (one JSON document).
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned tables.
    Table,
    /// One JSON document.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start Grape in-process on a temporary directory, ingest generated data, and show
    /// search, filtered search and SQL with timings. Needs nothing installed.
    Demo(DemoArgs),
    /// Run meta, one compute node and the gateway in one process.
    Dev(DevArgs),
    /// Run one member of the meta Raft group.
    Meta(MetaArgs),
    /// Run a stateless compute node of a cluster (gateway, engine) against a meta group.
    Compute(ComputeArgs),
    /// Change the meta group's membership.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Read and change the versioned config kept by the meta group.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create, list, describe or drop collections.
    #[command(subcommand)]
    Collection(CollectionCommand),
    /// Ingest Parquet files into a collection as one job: all rows become visible together.
    Ingest(IngestArgs),
    /// k-nearest-neighbour search, optionally filtered.
    Search(SearchArgs),
    /// Run a SQL query; every collection is a table.
    Sql(SqlArgs),
    /// Delete rows by id (`--ids 1,2,3`) or by filter (`--filter "price > 9"`), in one commit.
    Delete(DeleteArgs),
    /// Read rows by id; ids that do not exist are simply absent.
    Get(GetArgs),
    /// Show the state of the node and the meta group.
    Status,
    /// The job queue: compactions, server-side ingests, garbage collection.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Delete segment objects that no manifest names (left by failed inserts and dropped
    /// collections) and that are older than a grace period. Nodes also do this periodically.
    Gc(GcArgs),
}

/// Arguments of `grape gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Only delete objects older than this many seconds (default: the server's, 1 hour).
    #[arg(long)]
    pub grace_secs: Option<u64>,
}

/// Arguments of `grape demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows to generate.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Vector dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: u32,
    /// Where the demo's segments go (default: a temporary directory).
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Arguments of `grape dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Where meta's Raft log and (by default) the segment objects are kept.
    #[arg(long, default_value = "./grape-data")]
    pub data_dir: PathBuf,
    /// Address the gateway listens on.
    #[arg(long, default_value = "127.0.0.1:6800")]
    pub listen: String,
    /// Address to serve Qdrant's REST API on, for existing Qdrant clients (`off`: none).
    #[arg(long, default_value = "127.0.0.1:6333")]
    pub qdrant_listen: String,
    /// Address to serve Qdrant's gRPC API on, for Qdrant clients with `prefer_grpc` (`off`:
    /// none).
    #[arg(long, default_value = "127.0.0.1:6334")]
    pub qdrant_grpc_listen: String,
    /// Address of the HTTP port for operators: Prometheus `/metrics`, `/healthz`, `/readyz`
    /// and the status page at `/` (`off`: none).
    #[arg(long, default_value = "127.0.0.1:9800")]
    pub metrics_listen: String,
    /// Threads serving the gRPC port, each a single-threaded runtime that owns the
    /// connections it is given: a request is read, answered and written by one thread
    /// (default: one per core; 0: serve on the process's shared runtime).
    #[arg(long)]
    pub serving_threads: Option<usize>,
    /// Where segments are stored.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Garbage collection of orphan objects.
    #[command(flatten)]
    pub gc: GcJobArgs,
    /// Read-only key and cluster secret.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Arguments of `grape meta`.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// This member's id (a positive integer, unique in the group).
    #[arg(long)]
    pub id: u64,
    /// Address to serve the Raft transport and the meta service on; peers and clients use it.
    #[arg(long, default_value = "127.0.0.1:6900")]
    pub listen: String,
    /// Where this member's Raft log and snapshots are kept.
    #[arg(long, default_value = "./grape-meta")]
    pub data_dir: PathBuf,
    /// The group's members when it is first started, as `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
    /// The lowest id initialises the group once; after that the membership lives in the log
    /// and changes only with `grape cluster add-meta|remove-meta`.
    #[arg(long, default_value = "")]
    pub peers: String,
    /// Join an existing group: start with an empty data directory, never initialise, and wait
    /// to be added with `grape cluster add-meta ID ADDR` (a member whose data was lost rejoins
    /// this way, after `grape cluster remove-meta ID`).
    #[arg(long)]
    pub join: bool,
    /// A compute node not heard from for this many milliseconds is declared dead by the
    /// leader, and its segments go elsewhere.
    #[arg(long, default_value_t = 2000)]
    pub heartbeat_timeout_ms: u64,
    /// Address of the HTTP port for operators: Prometheus `/metrics`, `/healthz`, `/readyz`
    /// and the status page at `/` (default: none).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Read-only key and cluster secret.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Arguments of `grape compute`.
#[derive(Debug, Args)]
pub struct ComputeArgs {
    /// Meta members to talk to, `HOST:PORT[,HOST:PORT…]` (any of them; more is safer).
    #[arg(long)]
    pub meta: String,
    /// Address to serve the public API on.
    #[arg(long, default_value = "127.0.0.1:6800")]
    pub listen: String,
    /// Address to serve Qdrant's REST API on, for existing Qdrant clients (default: none).
    #[arg(long)]
    pub qdrant_listen: Option<String>,
    /// Address to serve Qdrant's gRPC API on, for Qdrant clients with `prefer_grpc` (default:
    /// none).
    #[arg(long)]
    pub qdrant_grpc_listen: Option<String>,
    /// Address of the HTTP port for operators: Prometheus `/metrics`, `/healthz`, `/readyz`
    /// and the status page at `/` (default: none).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Threads serving the gRPC port, each a single-threaded runtime that owns the
    /// connections it is given: a request is read, answered and written by one thread
    /// (default: one per core; 0: serve on the process's shared runtime).
    #[arg(long)]
    pub serving_threads: Option<usize>,
    /// Address other nodes and clients reach this node at, `HOST:PORT` (default: the address
    /// it listens on; required when that is unspecified, such as 0.0.0.0).
    #[arg(long)]
    pub advertise: Option<String>,
    /// This node's id in `grape status` (default: the one kept in DATA_DIR/node-id, chosen at
    /// random on the node's first start).
    #[arg(long)]
    pub id: Option<u64>,
    /// Memory this node offers for segments, in bytes (its share of the placement)
    /// [default: the machine's memory].
    #[arg(long)]
    pub memory_limit: Option<u64>,
    /// Local directory for the segment cache (nothing durable is kept here).
    #[arg(long, default_value = "./grape-compute")]
    pub data_dir: PathBuf,
    /// Where segments are stored (the same for every node of the cluster).
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Garbage collection of orphan objects.
    #[command(flatten)]
    pub gc: GcJobArgs,
    /// Read-only key and cluster secret.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// `grape cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Add a meta member: it joins as a learner, catches up, then votes. Start it first with
    /// `grape meta --id ID --listen ADDR` (and an id that is not the lowest of its --peers).
    AddMeta {
        /// The new member's id.
        id: u64,
        /// The address it listens on.
        addr: String,
    },
    /// Remove a meta member from the group.
    RemoveMeta {
        /// The member's id.
        id: u64,
    },
    /// Drain a compute node: it keeps serving while its segments move to the other nodes
    /// (each dropped only once ready elsewhere), then holds nothing and can be stopped
    /// without a failed request. Waits until it is drained.
    Drain {
        /// The compute node's id (see `grape status`).
        node: u64,
        /// Give up waiting after this many seconds (the drain goes on).
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
}

/// `grape config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a key's value and version.
    Get {
        /// The key.
        key: String,
        /// Read the answering member's state instead of a linearizable read (may be stale).
        #[arg(long)]
        stale: bool,
    },
    /// Set a key; with --expect-version, only if the key is still at that version (0: absent).
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: String,
        /// Compare-and-set: the version the key must be at.
        #[arg(long)]
        expect_version: Option<u64>,
    },
    /// List keys starting with a prefix, with their values and versions.
    List {
        /// Key prefix (default: every key).
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Print a key's current and earlier versions, newest first.
    History {
        /// The key.
        key: String,
    },
}

/// Garbage-collection flags, shared by every command that runs a server.
#[derive(Debug, Clone, Args)]
pub struct GcJobArgs {
    /// Seconds between garbage-collection passes over the storage (0 turns them off).
    #[arg(long, default_value_t = 600)]
    pub gc_interval_secs: u64,
    /// Unreferenced objects younger than this many seconds are never collected; an ingest job
    /// must commit within half of it.
    #[arg(long, default_value_t = 3600)]
    pub gc_grace_secs: u64,
}

impl GcJobArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> crate::node::GcSettings {
        let interval = (self.gc_interval_secs > 0).then(|| Duration::from_secs(self.gc_interval_secs));
        crate::node::GcSettings { interval, grace: Duration::from_secs(self.gc_grace_secs) }
    }
}

/// Object storage flags, shared by every command that runs a server.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Object storage URL for segments: `file:///dir`, `s3://bucket/prefix`, `memory://`
    /// (default: the config file's `storage.url`, else DATA_DIR/objects on local disk).
    #[arg(long)]
    pub storage: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:9000` for MinIO
    /// (default: `AWS_ENDPOINT_URL`, then the config file, else AWS). Credentials come from
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, then the config file.
    #[arg(long, env = "GRAPE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default: `AWS_REGION`, then the config file, else us-east-1).
    #[arg(long)]
    pub s3_region: Option<String>,
    /// Timeout of one S3 request, in seconds [default: 30].
    #[arg(long)]
    pub s3_timeout_secs: Option<u64>,
    /// Retries of a failed S3 request, with exponential backoff [default: 3].
    #[arg(long)]
    pub s3_retries: Option<usize>,
    /// Local cache of segment objects read from a remote store (default: DATA_DIR/cache).
    /// Not used for local-disk storage.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Bound of the segment cache in bytes; 0 turns it off [default: 8 GiB].
    #[arg(long)]
    pub cache_bytes: Option<u64>,
}

/// Storage settings of a server after merging flags, environment and the config file.
#[derive(Debug, Clone, Default)]
pub struct StorageSettings {
    /// Object storage URL; `None`: DATA_DIR/objects.
    pub url: Option<String>,
    /// How to connect to it.
    pub options: grape_storage::StorageOptions,
    /// Segment cache directory; `None`: DATA_DIR/cache.
    pub cache_dir: Option<PathBuf>,
    /// Segment cache bound in bytes (0: no cache).
    pub cache_bytes: u64,
}

impl StorageArgs {
    /// These flags over the config file's `[storage]` section: a flag wins, then the
    /// environment, then the file, then the default.
    pub fn resolve(&self, file: &StorageSection) -> StorageSettings {
        let s3 = &file.s3;
        let region = std::env::var("AWS_DEFAULT_REGION").ok().filter(|r| !r.is_empty()).or_else(|| s3.region.clone());
        let options = grape_storage::StorageOptions {
            endpoint: self.s3_endpoint.clone().or_else(|| env_or("AWS_ENDPOINT_URL", &s3.endpoint)),
            region: self.s3_region.clone().or_else(|| env_or("AWS_REGION", &region)),
            access_key_id: env_or("AWS_ACCESS_KEY_ID", &s3.access_key_id),
            secret_access_key: env_or("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key),
            virtual_hosted_style: s3.virtual_hosted_style.unwrap_or(false),
            allow_http: s3.allow_http.unwrap_or(false),
            timeout: Some(Duration::from_secs(self.s3_timeout_secs.or(s3.timeout_secs).unwrap_or(DEFAULT_S3_TIMEOUT_SECS).max(1))),
            retries: Some(self.s3_retries.or(s3.retries).unwrap_or(DEFAULT_S3_RETRIES)),
        };
        StorageSettings {
            url: self.storage.clone().or_else(|| file.url.clone()),
            options,
            cache_dir: self.cache_dir.clone().or_else(|| file.cache_dir.clone()),
            cache_bytes: self.cache_bytes.or(file.cache_bytes).unwrap_or(DEFAULT_CACHE_BYTES),
        }
    }
}

/// Default timeout of one S3 request, in seconds.
pub const DEFAULT_S3_TIMEOUT_SECS: u64 = 30;
/// Default retries of a failed S3 request.
pub const DEFAULT_S3_RETRIES: usize = 3;
/// Default bound of the segment cache: 8 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 8 << 30;

/// `grape collection …`.
#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    /// Create a collection.
    Create(CreateArgs),
    /// List collections.
    List,
    /// Describe a collection: schema, shards, rows, version.
    Describe {
        /// Collection name.
        name: String,
    },
    /// Drop a collection.
    Drop {
        /// Collection name.
        name: String,
    },
    /// Compact a collection: merge the small segments of each shard and leave deleted and
    /// replaced rows out (a job per shard; the meta leader also enqueues these by itself).
    Compact {
        /// Collection name.
        name: String,
        /// Only this shard.
        #[arg(long)]
        shard: Option<u32>,
        /// Follow the jobs until they finish.
        #[arg(long)]
        wait: bool,
    },
    /// Change how many compute nodes hold each segment of a collection.
    SetReplicas {
        /// Collection name.
        name: String,
        /// The new replica factor (at least 1).
        replicas: u32,
    },
    /// Change how a collection's ANN indexes compress vectors (none, sq8 or bq); index-build
    /// jobs rebuild every index, and searches use the old indexes meanwhile.
    SetQuantization {
        /// Collection name.
        name: String,
        /// none, sq8 or bq.
        quantization: String,
        /// Only this named vector field (default: every field).
        #[arg(long = "vector", default_value = "")]
        vector_name: String,
    },
}

/// `grape jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state: pending, running, failed, succeeded, dead, cancelled.
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one job: parameters, state, attempts, progress, last error.
    Show {
        /// Job id.
        id: u64,
    },
    /// Make a dead (or failed, or cancelled) job pending again with a fresh set of attempts.
    Retry {
        /// Job id.
        id: u64,
    },
    /// Cancel a job that has not finished; a running attempt then commits nothing.
    Cancel {
        /// Job id.
        id: u64,
    },
}

/// Arguments of `grape collection create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Collection name.
    pub name: String,
    /// Vector dimension (of the one vector column `vector`).
    #[arg(long, required_unless_present = "vector_fields", conflicts_with = "vector_fields")]
    pub dim: Option<u32>,
    /// Named vector fields instead of the one column `vector`, each
    /// `name:dim[:metric[:quantization]]`; repeat for each field. Searches pick one with
    /// `--using`.
    #[arg(long = "vector-field", value_name = "NAME:DIM[:METRIC[:QUANTIZATION]]")]
    pub vector_fields: Vec<String>,
    /// Distance metric.
    #[arg(long, default_value = "l2", conflicts_with = "vector_fields")]
    pub metric: String,
    /// Number of shards.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Replica factor.
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// Payload columns as `name:type,…` (types: int8..int64, uint8..uint64, float32, float64,
    /// utf8, bool, timestamp, date). Default: taken from the first ingested file.
    #[arg(long)]
    pub schema: Option<String>,
    /// Type of the `id` column when `--schema` is given: uint64 or utf8.
    #[arg(long, default_value = "uint64")]
    pub id_type: String,
    /// How ANN indexes compress vectors: none, sq8 (a byte per dimension) or bq (a bit per
    /// dimension); hits are always rescored on the full vectors.
    #[arg(long, default_value = "none", conflicts_with = "vector_fields")]
    pub quantization: String,
    /// Keep the f32 vectors in files on the compute nodes' local disk, mapped, instead of in
    /// memory: nodes hold the codes and graphs, and read vectors from disk when a search
    /// touches them (rescoring, exact scans). Best with `--quantization sq8` or `bq`.
    #[arg(long)]
    pub vectors_on_disk: bool,
}

/// Arguments of `grape ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Collection to ingest into.
    pub collection: String,
    /// Parquet files with columns `id`, `vector` and payload: local paths (streamed from
    /// here), or `s3://…` / `file://…` URLs of files already in object storage (read by a
    /// compute node as a server-side ingest job; `*` and `?` allowed in the file name).
    #[arg(required = true)]
    pub files: Vec<String>,
    /// With URLs: enqueue the job and return at once (follow it with `grape jobs show ID`).
    #[arg(long)]
    pub detach: bool,
    /// Rows per message of the ingest stream (each becomes one segment per shard).
    #[arg(long, default_value_t = 50_000)]
    pub batch_rows: usize,
}

/// Arguments of `grape search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Collection to search.
    pub collection: String,
    /// Query vector as a JSON array, e.g. `[0.1, 0.2, …]`.
    #[arg(long)]
    pub vector: String,
    /// Number of hits.
    #[arg(long, default_value_t = 10)]
    pub k: u32,
    /// SQL boolean filter over payload columns, e.g. `category = 3 AND price < 9.5`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Wait until the collection is at least at this version (read your writes).
    #[arg(long, default_value_t = 0)]
    pub min_version: u64,
    /// Answer from the segments that can be reached when some have no ready replica (a
    /// warning on stderr names how many were missed) instead of failing.
    #[arg(long)]
    pub allow_partial: bool,
    /// ANN search breadth (default 128, 256 with bq): larger finds more of the true neighbours, slower.
    #[arg(long)]
    pub ef: Option<u32>,
    /// Scan every row instead of using the ANN indexes: exact hits, to measure recall.
    #[arg(long)]
    pub exact: bool,
    /// With quantized indexes, rescore the best `oversampling × k` candidates on the full
    /// vectors (default 1 for none, 2 for sq8; bq rescores every candidate, at least 10 × k).
    #[arg(long)]
    pub oversampling: Option<f32>,
    /// The named vector field to search (default: the first).
    #[arg(long, default_value = "")]
    pub using: String,
}

/// Arguments of `grape delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Collection to delete from.
    pub collection: String,
    /// Ids to delete, comma-separated.
    #[arg(long, value_delimiter = ',', conflicts_with = "filter", required_unless_present = "filter")]
    pub ids: Vec<String>,
    /// SQL boolean filter: every row matching it is deleted.
    #[arg(long)]
    pub filter: Option<String>,
}

/// Arguments of `grape get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Collection to read.
    pub collection: String,
    /// Ids to read, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<String>,
    /// Wait until the collection is at least at this version (read your writes).
    #[arg(long, default_value_t = 0)]
    pub min_version: u64,
    /// Include the vector column.
    #[arg(long)]
    pub vectors: bool,
}

/// Arguments of `grape sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query.
    pub query: String,
    /// Scan the segments that can be reached when some have no ready replica (a warning on
    /// stderr says how many were left out) instead of failing.
    #[arg(long)]
    pub allow_partial: bool,
}

/// The serving threads `--serving-threads` asks for: one per core by default.
pub fn serving_threads(flag: Option<usize>) -> usize {
    flag.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
