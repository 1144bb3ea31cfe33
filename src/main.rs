//! `grape`: the one binary of Grape — servers (`dev`, and later `meta` and `compute`) and the
//! client commands that talk to any gateway.
//!
//! # Layout
//! - `cli/`: the command line and the client commands;
//! - `config.rs`: the config file (`--config`), below flags and environment in precedence;
//! - `dev.rs`: meta, compute and gateway in one process;
//! - `meta_server.rs`: `grape meta`, one member of the meta Raft group;
//! - `compute_server.rs`: `grape compute`, a stateless compute node of a cluster;
//! - `node.rs`: a node's gateway and engine over any meta, shared by `dev` and `compute`;
//! - `demo.rs`: the main job on the embedded default;
//! - `security.rs`: API keys and the cluster secret of a server;
//! - `observe/`: the operators' HTTP port (metrics, health, readiness, the status page);
//! - `error.rs`: what a command can fail with;
//! - `allocator.rs`: the process's allocator (jemalloc).

mod allocator;
mod cli;
mod compute_server;
mod config;
mod demo;
mod dev;
mod error;
mod meta_forward;
mod meta_server;
mod node;
mod observe;
mod security;

use clap::Parser;

use cli::{client::connect, Cli, Command};
use config::ConfigFile;
use error::CliError;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("GRAPE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // Larger stacks than the 2 MiB default on every runtime and rayon thread: expression
    // depth is limited before planning (grape_compute::limits), and this is the margin.
    let _ = rayon::ThreadPoolBuilder::new().stack_size(THREAD_STACK_BYTES).build_global();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(THREAD_STACK_BYTES).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Work still running on blocking threads (a query past its deadline) must not keep a
    // stopped server from exiting.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long a stopping process waits for work left on its threads.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Stack size of the runtime's and rayon's threads.
const THREAD_STACK_BYTES: usize = grape_proto::serving::STACK_BYTES;

async fn run(cli: Cli) -> Result<(), CliError> {
    let format = cli.output;
    let api_key = cli.api_key.as_deref();
    if !matches!(cli.command, Command::Demo(_) | Command::Dev(_) | Command::Meta(_) | Command::Compute(_)) {
        security::present_client_key(api_key);
        security::use_client_ca(cli.ca_cert.as_deref())?;
    }
    match cli.command {
        Command::Demo(args) => {
            let storage = args.storage.resolve(&ConfigFile::load_optional(cli.config.as_deref())?.storage);
            demo::run(args, storage).await
        }
        Command::Dev(args) => {
            let config = ConfigFile::load_optional(cli.config.as_deref())?;
            let storage = args.storage.resolve(&config.storage);
            let keys = args.security.keys(api_key, &config.security)?;
            args.security.use_tls(&config.security)?;
            let server = dev::DevServer::start(&args.data_dir, &args.listen, &storage, &args.gc.settings(), config.limits, keys, cli::serving_threads(args.serving_threads)).await?;
            eprintln!("grape dev: listening on {} (data in {})", server.endpoint(), args.data_dir.display());
            if args.qdrant_listen != "off" {
                let addr = server.serve_qdrant(&args.qdrant_listen).await?;
                eprintln!("grape dev: Qdrant REST API on http://{addr}");
            }
            if args.qdrant_grpc_listen != "off" {
                let addr = server.serve_qdrant_grpc(&args.qdrant_grpc_listen).await?;
                eprintln!("grape dev: Qdrant gRPC API on {addr}");
            }
            if args.metrics_listen != "off" {
                let addr = server.serve_metrics(&args.metrics_listen).await?;
                eprintln!("grape dev: metrics and status page on http://{addr}");
            }
            server.run_until_signal().await
        }
        Command::Collection(cmd) => cli::collection::run(&mut connect(&cli.endpoint).await?, format, cmd).await,
        Command::Ingest(args) => cli::ingest::run(&mut connect(&cli.endpoint).await?, format, args).await,
        Command::Search(args) => cli::query::search(&mut connect(&cli.endpoint).await?, format, args).await,
        Command::Sql(args) => cli::query::sql(&mut connect(&cli.endpoint).await?, format, args).await,
        Command::Delete(args) => cli::query::delete(&mut connect(&cli.endpoint).await?, format, args).await,
        Command::Get(args) => cli::query::get(&mut connect(&cli.endpoint).await?, format, args).await,
        Command::Status => cli::meta::status(&cli.endpoint, format).await,
        Command::Jobs(cmd) => cli::jobs::run(&mut connect(&cli.endpoint).await?, format, cmd).await,
        Command::Meta(args) => {
            let config = ConfigFile::load_optional(cli.config.as_deref())?;
            let keys = args.security.keys(api_key, &config.security)?;
            args.security.use_tls(&config.security)?;
            meta_server::run(args, keys).await
        }
        Command::Compute(args) => {
            let config = ConfigFile::load_optional(cli.config.as_deref())?;
            let keys = args.security.keys(api_key, &config.security)?;
            args.security.use_tls(&config.security)?;
            compute_server::run(args, &config, keys).await
        }
        Command::Cluster(cmd) => cli::meta::cluster(&cli.endpoint, format, cmd).await,
        Command::Config(cmd) => cli::meta::config(&cli.endpoint, format, cmd).await,
        Command::Gc(args) => cli::query::gc(&mut connect(&cli.endpoint).await?, format, args.grace_secs).await,
    }
}
