//! One request must never take a node down: hostile and heavy input against a real
//! `grape dev`, each answered (OK or a clear error) and the node still answering `Status`
//! after it; a flood of heavy SQL shed with RESOURCE_EXHAUSTED while a light search
//! answers; a query too big for the SQL memory pool refused; an abandoned query's work freed.

use std::time::{Duration, Instant};

use grape_compute::datagen;
use grape_compute::ingest::encode_ipc;
use grape_proto::v1::{self, grape_client::GrapeClient};
use tonic::transport::Channel;
use tonic::Code;

use crate::harness::{DevProcess, ServerFlags};

const DIM: u32 = 8;

/// A client of `grape dev` with the message limits of the server.
pub async fn client(grape: &DevProcess) -> GrapeClient<Channel> {
    GrapeClient::connect(grape.endpoint.clone())
        .await
        .expect("connect")
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

/// Creates `docs` (dimension [`DIM`]) with `rows` generated rows.
pub async fn docs_with_rows(client: &mut GrapeClient<Channel>, rows: usize) {
    let create = v1::CreateCollectionRequest { name: "docs".into(), dim: DIM, metric: "l2".into(), shards: 2, ..Default::default() };
    client.create_collection(create).await.expect("create");
    let batch = datagen::batch(DIM, 0, rows, 7);
    let arrow_ipc = encode_ipc(&batch.schema(), &[batch]).expect("ipc");
    client.insert(v1::InsertRequest { collection: "docs".into(), arrow_ipc }).await.expect("insert");
}

/// The node answers `Status`.
pub async fn assert_alive(client: &mut GrapeClient<Channel>, after: &str) -> v1::StatusResponse {
    match client.status(v1::StatusRequest {}).await {
        Ok(s) => s.into_inner(),
        Err(e) => panic!("the node stopped answering after {after}: {e}"),
    }
}

/// A `grape dev` (with `limits` as its config file's `[limits]` section) holding `docs`,
/// the runtime the test talks to it from, and a client.
pub struct Scene {
    /// The server.
    pub grape: DevProcess,
    /// The test's runtime.
    pub runtime: tokio::runtime::Runtime,
    /// A client with the server's message limits.
    pub client: GrapeClient<Channel>,
    /// Where its data lives; removed when dropped.
    pub dir: tempfile::TempDir,
}

impl Scene {
    /// Starts the server and loads `rows` generated rows into `docs`.
    pub fn start(limits: &str, rows: usize) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("grape.toml");
        std::fs::write(&config, format!("[limits]\n{limits}\n")).unwrap();
        let flags = ServerFlags { args: vec!["--config".into(), config.display().to_string()], env: Vec::new() };
        let grape = DevProcess::start_with(&dir.path().join("data"), flags);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let client = runtime.block_on(async {
            let mut client = client(&grape).await;
            docs_with_rows(&mut client, rows).await;
            client
        });
        Scene { grape, runtime, client, dir }
    }
}

fn or_chain(n: usize) -> String {
    (0..n).map(|i| format!("id = {i}")).collect::<Vec<_>>().join(" OR ")
}

fn in_list(n: usize) -> String {
    format!("id IN ({})", (0..n).map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
}

fn nested_parens(n: usize) -> String {
    format!("{}id = 1{}", "(".repeat(n), ")".repeat(n))
}

fn nots(n: usize) -> String {
    format!("{}id = 1", "NOT ".repeat(n))
}

fn deep_case(n: usize) -> String {
    let mut e = "1".to_string();
    for i in 0..n {
        e = format!("CASE WHEN id = {i} THEN {e} ELSE 0 END");
    }
    format!("{e} = 1")
}

fn nested_subqueries(n: usize) -> String {
    let mut q = "SELECT id FROM docs".to_string();
    for _ in 0..n {
        q = format!("SELECT id FROM ({q})");
    }
    format!("SELECT count(*) FROM ({q})")
}

/// What one hostile input must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// An answer.
    Ok,
    /// A clear refusal.
    Invalid,
    /// Either.
    OkOrInvalid,
}

#[test]
fn hostile_filters_and_sql_are_answered_and_the_node_stays_up() {
    let Scene { grape: _grape, runtime, mut client, dir: _dir } = Scene::start("", 50_000);
    runtime.block_on(async {
        let filters: Vec<(&str, String, Expect)> = vec![
            ("2,000 ORs of id = N", or_chain(2_000), Expect::Ok),
            ("10,000 ORs of id = N", or_chain(10_000), Expect::Ok),
            ("100,000-item IN list", in_list(100_000), Expect::Ok),
            ("5,000 nested parentheses", nested_parens(5_000), Expect::OkOrInvalid),
            ("2,000 NOTs", nots(2_000), Expect::OkOrInvalid),
            ("1,000-deep CASE", deep_case(1_000), Expect::OkOrInvalid),
            // Found by the fuzz test: each level of a damaged CASE doubled the parser's work.
            ("40-deep CASE missing a THEN", deep_case(40).replacen("THEN 1", "1", 1), Expect::Invalid),
            ("a 10-deep CASE", deep_case(10), Expect::Ok),
            ("5,000 ANDs over 5 columns", (0..5_000).map(|i| format!("price > {}", i % 5)).collect::<Vec<_>>().join(" AND "), Expect::Ok),
            ("price + 1 repeated 20,000 times", format!("price{} > 0", " + 1".repeat(20_000)), Expect::Invalid),
            ("IS NULL repeated 20,000 times", format!("tag{}", " IS NULL".repeat(20_000)), Expect::Invalid),
            ("a 2 MiB filter", or_chain(150_000), Expect::Invalid),
        ];
        let mut table = Vec::new();
        for (name, text, expect) in &filters {
            let req = v1::SearchRequest { collection: "docs".into(), vector: vec![0.0; DIM as usize], k: 10, filter: text.clone(), ..Default::default() };
            let start = Instant::now();
            let answer = client.search(req).await;
            table.push((format!("search filter: {name}"), outcome(&answer), start.elapsed()));
            check(name, &answer, *expect);
            assert_alive(&mut client, name).await;
        }
        let queries: Vec<(&str, String, Expect)> = vec![
            ("count(*) WHERE 2,000 ORs", format!("SELECT count(*) AS n FROM docs WHERE {}", or_chain(2_000)), Expect::Ok),
            ("count(*) WHERE 10,000 ORs", format!("SELECT count(*) AS n FROM docs WHERE {}", or_chain(10_000)), Expect::Ok),
            ("count(*) WHERE 100,000-item IN", format!("SELECT count(*) AS n FROM docs WHERE {}", in_list(100_000)), Expect::Ok),
            ("WHERE 5,000 nested parentheses", format!("SELECT count(*) FROM docs WHERE {}", nested_parens(5_000)), Expect::OkOrInvalid),
            ("WHERE 1,000-deep CASE", format!("SELECT count(*) FROM docs WHERE {}", deep_case(1_000)), Expect::OkOrInvalid),
            ("50 nested subqueries", nested_subqueries(50), Expect::OkOrInvalid),
            ("SELECT 1 + 1 repeated 20,000 times", format!("SELECT 1{}", " + 1".repeat(20_000)), Expect::Invalid),
            ("COPY to a file", "COPY docs TO '/tmp/grape-copy.csv'".into(), Expect::Invalid),
            ("a 3-way cross join (1.25e14 rows)", "SELECT count(*) FROM docs a, docs b, docs c".into(), Expect::Invalid),
        ];
        for (name, text, expect) in &queries {
            let start = Instant::now();
            let answer = client.sql(v1::SqlRequest { query: text.clone(), ..Default::default() }).await;
            table.push((format!("sql: {name}"), outcome(&answer), start.elapsed()));
            check(name, &answer, *expect);
            assert_alive(&mut client, name).await;
        }
        println!("{:<52} {:<18} {:>9}", "input", "answer", "time");
        for (name, answer, took) in &table {
            println!("{name:<52} {answer:<18} {:>7.0} ms", took.as_secs_f64() * 1e3);
        }

        // The rewrites keep the meaning: 2,000 ORs select exactly ids 0..2000.
        let answer = client
            .sql(v1::SqlRequest { query: format!("SELECT count(*) AS n FROM docs WHERE {} OR tag = 'none'", or_chain(2_000)), ..Default::default() })
            .await
            .expect("count");
        let (_, batches) = grape_compute::ingest::decode_ipc(&answer.into_inner().arrow_ipc).expect("decode");
        let n = batches[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().expect("count column").value(0);
        assert_eq!(n, 2_000);
        let hits = client
            .search(v1::SearchRequest { collection: "docs".into(), vector: vec![0.0; DIM as usize], k: 50, filter: or_chain(2_000), ..Default::default() })
            .await
            .expect("search")
            .into_inner();
        assert!(hits.rows_scanned == 2_000, "the filter matched {} rows", hits.rows_scanned);
    });
}

/// How an answer reads in the catalogue.
fn outcome<T>(answer: &Result<T, tonic::Status>) -> String {
    match answer {
        Ok(_) => "OK".into(),
        Err(s) => format!("{:?}", s.code()),
    }
}

/// Panics unless `answer` is what `expect` allows; a refusal must say what to do.
fn check<T>(name: &str, answer: &Result<T, tonic::Status>, expect: Expect) {
    match (answer, expect) {
        (Ok(_), Expect::Ok | Expect::OkOrInvalid) => {}
        (Err(s), Expect::Invalid | Expect::OkOrInvalid) if s.code() == Code::InvalidArgument => {
            assert!(s.message().len() < 2_000, "{name}: the message repeats the input: {} bytes", s.message().len());
        }
        (Ok(_), Expect::Invalid) => panic!("{name}: answered, but should have been refused"),
        (Err(s), _) => panic!("{name}: {:?} {}", s.code(), &s.message()[..s.message().len().min(500)]),
    }
}

/// Heavy enough to keep a core busy for a while: a nested-loop join of every pair of rows.
const HEAVY_SQL: &str = "SELECT count(*) FROM docs a JOIN docs b ON a.price + b.price > 1000000";

#[test]
fn a_flood_of_heavy_sql_is_shed_while_a_light_search_answers() {
    let Scene { grape: _grape, runtime, mut client, dir: _dir } = Scene::start("sql_concurrency = 2\nsql_queue = 8", 10_000);
    runtime.block_on(async {
        let flood: Vec<_> = (0..200)
            .map(|_| {
                let mut c = client.clone();
                tokio::spawn(async move { c.sql(v1::SqlRequest { query: HEAVY_SQL.into(), ..Default::default() }).await.map(|_| ()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let busy = assert_alive(&mut client, "the flood").await;
        assert!(busy.requests_running >= 1, "{busy:?}");
        let light = v1::SearchRequest { collection: "docs".into(), vector: vec![0.0; DIM as usize], k: 5, ..Default::default() };
        client.search(light).await.expect("a light search answers during the flood");
        let (mut ok, mut shed) = (0, 0);
        for answer in flood {
            match answer.await.unwrap() {
                Ok(()) => ok += 1,
                Err(s) if s.code() == Code::ResourceExhausted => {
                    assert!(s.message().contains("limits/sql_queue"), "{}", s.message());
                    shed += 1;
                }
                Err(s) => panic!("heavy query: {s}"),
            }
        }
        assert!(ok >= 2 && shed >= 100, "{ok} answered, {shed} shed");
        let after = assert_alive(&mut client, "the flood").await;
        assert_eq!(after.requests_rejected, shed as u64);
        assert_eq!((after.requests_running, after.requests_queued), (0, 0));
    });
}

#[test]
fn a_query_too_big_for_sql_memory_is_refused_and_others_run() {
    let Scene { grape: _grape, runtime, mut client, dir: _dir } = Scene::start("sql_memory_bytes = 4000000", 20_000);
    runtime.block_on(async {
        let big = "SELECT a.id, b.id FROM docs a JOIN docs b ON a.category = b.category ORDER BY a.price, b.price";
        let err = client.sql(v1::SqlRequest { query: big.into(), ..Default::default() }).await.expect_err("too big");
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        assert!(err.message().contains("limits/sql_memory_bytes"), "{}", err.message());
        client.sql(v1::SqlRequest { query: "SELECT category, count(*) FROM docs GROUP BY 1".into(), ..Default::default() }).await.expect("small query");
        let status = assert_alive(&mut client, "the big query").await;
        assert_eq!(status.sql_memory_limit, 4_000_000);
    });
}

#[test]
fn an_abandoned_query_is_cancelled_and_its_work_freed() {
    let Scene { grape, runtime, mut client, dir: _dir } = Scene::start("", 50_000);
    runtime.block_on(async {
        // A client that goes away mid-query: its call is dropped, and with it the HTTP/2 stream.
        let mut abandoning = GrapeClient::connect(grape.endpoint.clone()).await.unwrap();
        let call = tokio::spawn(async move { abandoning.sql(v1::SqlRequest { query: HEAVY_SQL.into(), ..Default::default() }).await });
        let deadline = Instant::now() + Duration::from_secs(30);
        while assert_alive(&mut client, "starting the query").await.requests_running == 0 {
            assert!(Instant::now() < deadline, "the heavy query never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        call.abort();
        let status = loop {
            let s = assert_alive(&mut client, "the abandoned query").await;
            if s.requests_running == 0 {
                break s;
            }
            assert!(Instant::now() < deadline, "the abandoned query still runs: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status.requests_cancelled, 1, "{status:?}");
    });
}

#[test]
fn a_join_past_its_deadline_is_stopped_and_the_node_keeps_serving() {
    // A nested-loop join over 500,000 × 500,000 rows whose condition matches nothing, run
    // past a 4 s deadline. The soak benchmark found the same join over 3.6 million rows
    // holding the node's runtime threads for minutes, in polls that do not yield; SQL now
    // runs on threads of its own (limits::on_sql_threads). At this size the polls are short
    // enough that the test passes either way: it checks the deadline and the other requests,
    // the soak checks the starvation.
    let Scene { grape: _grape, runtime, mut client, dir: _dir } = Scene::start("request_timeout_secs = 4\nmax_join_pairs = 1000000000000", 500_000);
    runtime.block_on(async {
        let mut joining = client.clone();
        let join = tokio::spawn(async move {
            let query = "SELECT count(*) FROM docs a JOIN docs b ON a.price + b.price > 1e12".to_string();
            joining.sql(v1::SqlRequest { query, ..Default::default() }).await
        });
        // By then the join has read both sides and is looping over their pairs.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Everything else is still served while the join holds the SQL threads.
        let status = tokio::time::timeout(Duration::from_secs(5), client.status(v1::StatusRequest {})).await;
        assert!(matches!(status, Ok(Ok(_))), "Status during the join: {status:?}");
        let search = v1::SearchRequest { collection: "docs".into(), vector: vec![0.5; DIM as usize], k: 3, ..Default::default() };
        let hits = tokio::time::timeout(Duration::from_secs(5), client.search(search)).await;
        assert!(matches!(hits, Ok(Ok(_))), "a search during the join: {hits:?}");
        let answer = tokio::time::timeout(Duration::from_secs(10), join).await.expect("the deadline fires").unwrap();
        assert_eq!(answer.expect_err("stopped by the deadline").code(), Code::DeadlineExceeded);
        let after = assert_alive(&mut client, "the join").await;
        assert_eq!(after.requests_timed_out, 1, "{after:?}");
    });
}
