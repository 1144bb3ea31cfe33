//! `grape demo`: the main job on the embedded default, start to finish, with timings.
//!
//! Starts Grape in-process on a temporary directory (meta, compute and gateway, segments on
//! local disk), creates a collection, ingests generated rows through the public gRPC API, and
//! shows a search, a filtered search and SQL results. Everything it does, a user can do with
//! `grape dev` and the client commands.

use std::time::Instant;

use grape_compute::datagen;
use grape_compute::ingest::{decode_ipc, encode_ipc};
use grape_proto::v1;

use crate::cli::client::connect;
use crate::cli::output::print_rows;
use crate::cli::{DemoArgs, OutputFormat, StorageSettings};
use crate::dev::DevServer;
use crate::error::CliError;
use crate::node::GcSettings;

const BATCH_ROWS: usize = 25_000;

/// Runs the demo.
pub async fn run(args: DemoArgs, storage: StorageSettings) -> Result<(), CliError> {
    let dir = tempfile::tempdir().map_err(|source| CliError::File { path: "temporary directory".into(), source })?;
    println!("Grape demo: one process, data under {}\n", dir.path().display());
    let server = DevServer::start(dir.path(), "127.0.0.1:0", &storage, &GcSettings::default(), Default::default(), Default::default(), 0).await?;
    let mut client = connect(&server.endpoint()).await?;

    let t = Instant::now();
    let create = v1::CreateCollectionRequest {
        name: "demo".into(),
        dim: args.dim,
        metric: "l2".into(),
        shards: 2,
        replicas: 1,
        ..Default::default()
    };
    client.create_collection(create).await?;
    println!("created collection \"demo\" (dim {}, l2, 2 shards) in {:.1} ms", args.dim, ms(t));

    let t = Instant::now();
    let mut version = 0;
    let mut first = 0usize;
    while first < args.rows {
        let n = BATCH_ROWS.min(args.rows - first);
        let batch = datagen::batch(args.dim, first as u64, n, first as u64);
        let ipc = encode_ipc(&batch.schema(), &[batch]).map_err(|e| CliError::Server(e.to_string()))?;
        version = client.insert(v1::InsertRequest { collection: "demo".into(), arrow_ipc: ipc }).await?.into_inner().version;
        first += n;
    }
    let secs = t.elapsed().as_secs_f64();
    println!("ingested {} rows in {:.2} s ({:.0} rows/s), collection version {version}\n", args.rows, secs, args.rows as f64 / secs);

    let query = datagen::query(args.dim, 7);
    for (title, filter) in
        [("search: 5 nearest neighbours", ""), ("filtered search: category = 3 AND price < 50", "category = 3 AND price < 50")]
    {
        let t = Instant::now();
        let req = v1::SearchRequest {
            collection: "demo".into(),
            vector: query.clone(),
            k: 5,
            filter: filter.into(),
            min_version: version,
            include_vectors: false,
            ..Default::default()
        };
        let reply = client.search(req).await?.into_inner();
        println!("{title} ({:.1} ms, {} rows compared)", ms(t), reply.rows_scanned);
        let (_, hits) = decode_ipc(&reply.arrow_ipc).map_err(|e| CliError::Server(e.to_string()))?;
        print_rows(OutputFormat::Table, &hits)?;
        println!();
    }

    let sql = "SELECT tag, count(*) AS n, round(avg(price), 2) AS avg_price FROM demo WHERE in_stock GROUP BY tag ORDER BY n DESC";
    let t = Instant::now();
    let reply = client.sql(v1::SqlRequest { query: sql.into(), ..Default::default() }).await?.into_inner();
    println!("SQL ({:.1} ms): {sql}", ms(t));
    let (_, rows) = decode_ipc(&reply.arrow_ipc).map_err(|e| CliError::Server(e.to_string()))?;
    print_rows(OutputFormat::Table, &rows)?;

    server.shutdown().await?;
    println!("\nNext: `grape dev` keeps a server running; see the README for the client commands.");
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}
