//! Fuzzing through the public gRPC API of a real `grape dev`, for a bounded time
//! (`GRAPE_FUZZ_SECS`, default 60; `GRAPE_FUZZ_SEED` replays a run): generated filters and
//! SQL over the collection's schema (`grammar.rs`), searches with odd parameters, and raw
//! and damaged protobuf and Arrow IPC messages (`raw.rs`). After every case the node must
//! answer `Status`, and the answer must be OK or a clear error: a code that blames the
//! request or a limit, never INTERNAL or UNKNOWN, and a message that says something.

mod grammar;
mod raw;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use grape_compute::datagen;
use grape_compute::ingest::encode_ipc;
use grape_proto::v1;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::hostile_input::{assert_alive, Scene};
use grammar::Grammar;

/// Codes a fuzz case may get: the request's fault, a limit, or "not there".
const CLEAR: &[Code] = &[
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::FailedPrecondition,
    Code::OutOfRange,
    Code::ResourceExhausted,
    Code::DeadlineExceeded,
    Code::Unimplemented,
];

/// The unary methods raw bytes are sent to.
const METHODS: &[&str] = &[
    "/grape.v1.Grape/Search",
    "/grape.v1.Grape/Sql",
    "/grape.v1.Grape/Insert",
    "/grape.v1.Grape/CreateCollection",
    "/grape.v1.Grape/DescribeCollection",
    "/grape.v1.Grape/SetReplicas",
    "/grape.v1.Grape/NoSuchMethod",
];

/// What went wrong in one case.
struct Finding {
    case: String,
    answer: String,
}

#[test]
fn generated_filters_sql_and_raw_requests_never_take_the_node_down() {
    let secs: u64 = std::env::var("GRAPE_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 = std::env::var("GRAPE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::thread_rng().gen());
    println!("fuzzing for {secs} s with GRAPE_FUZZ_SEED={seed}");
    let Scene { grape, runtime, mut client, dir: _dir } = Scene::start("", 2_000);
    let (counts, findings) = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(grape.endpoint.clone()).unwrap().connect().await.unwrap();
        let valid_ipc = {
            let batch = datagen::batch(8, 10_000, 20, 3);
            encode_ipc(&batch.schema(), &[batch]).unwrap()
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut findings: Vec<Finding> = Vec::new();
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let mut raw_protobuf = false;
            let (case, answer) = match rng.gen_range(0..10) {
                0..=3 => {
                    let filter = Grammar::new(&mut rng).filter();
                    let k = [0u32, 1, 10, 10_000, 10_001, u32::MAX][rng.gen_range(0..6)];
                    let dim = if rng.gen_bool(0.9) { 8 } else { rng.gen_range(0..20) };
                    let value = [0.0f32, 1e38, -1e-38, f32::MAX, f32::NAN][rng.gen_range(0..5)];
                    let collection = if rng.gen_bool(0.95) { "docs" } else { "nope" };
                    let req = v1::SearchRequest {
                        collection: collection.into(),
                        vector: vec![value; dim],
                        k,
                        filter: filter.clone(),
                        allow_partial: rng.gen_bool(0.1),
                        include_vectors: rng.gen_bool(0.2),
                        ..Default::default()
                    };
                    (format!("search k={k} dim={dim} value={value} filter: {filter}"), code_of(client.search(req).await))
                }
                4..=7 => {
                    let query = Grammar::new(&mut rng).sql();
                    (format!("sql: {query}"), code_of(client.sql(v1::SqlRequest { query, allow_partial: rng.gen_bool(0.1), ..Default::default() }).await))
                }
                8 => {
                    let mut ipc = valid_ipc.clone();
                    damage(&mut rng, &mut ipc);
                    let body = v1::InsertRequest { collection: "docs".into(), arrow_ipc: ipc }.encode_to_vec();
                    ("insert of damaged Arrow IPC".to_string(), code_of(raw::call(channel.clone(), "/grape.v1.Grape/Insert", body).await))
                }
                _ => {
                    let path = METHODS[rng.gen_range(0..METHODS.len())];
                    let mut body = v1::SearchRequest { collection: "docs".into(), vector: vec![0.5; 8], k: 3, ..Default::default() }.encode_to_vec();
                    if rng.gen_bool(0.5) {
                        body = (0..rng.gen_range(0..256)).map(|_| rng.gen()).collect();
                    } else {
                        damage(&mut rng, &mut body);
                    }
                    raw_protobuf = true;
                    (format!("raw bytes to {path}: {body:?}"), code_of(raw::call(channel.clone(), path, body).await))
                }
            };
            *counts.entry(format!("{:?}", answer.0)).or_default() += 1;
            let clear = (CLEAR.contains(&answer.0) && (answer.0 == Code::Ok || !answer.1.trim().is_empty()))
                || (raw_protobuf && is_grpc_protocol_answer(&answer));
            if !clear {
                findings.push(Finding { case: abbreviate(&case), answer: format!("{:?}: {}", answer.0, abbreviate(&answer.1)) });
            }
            assert_alive(&mut client, &abbreviate(&case)).await;
        }
        (counts, findings)
    });
    let total: u64 = counts.values().sum();
    println!("{total} cases in {secs} s (seed {seed}); answers by code: {counts:?}; {} findings", findings.len());
    for f in &findings {
        println!("FINDING\n  case:   {}\n  answer: {}", f.case, f.answer);
    }
    assert!(total >= 500, "only {total} cases ran");
    assert!(findings.is_empty(), "{} cases got an unclear answer (seed {seed}); see above", findings.len());
}

/// tonic's own answers to bytes that are not a request of the method, as the gRPC status
/// code spec has them: INTERNAL for a message that does not parse (with what failed), and
/// UNIMPLEMENTED for a method that does not exist. Grape's code never sees these requests.
fn is_grpc_protocol_answer((code, message): &(Code, String)) -> bool {
    (*code == Code::Internal && message.starts_with("failed to decode Protobuf message")) || *code == Code::Unimplemented
}

/// The code and message of an answer.
fn code_of<T>(answer: Result<T, tonic::Status>) -> (Code, String) {
    match answer {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

/// Flips, truncates or overwrites a few bytes of `bytes`.
fn damage(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    if bytes.is_empty() {
        return;
    }
    match rng.gen_range(0..3) {
        0 => bytes.truncate(rng.gen_range(0..bytes.len())),
        1 => {
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        _ => {
            let at = rng.gen_range(0..bytes.len());
            let value: u8 = rng.gen();
            let end = (at + rng.gen_range(1..16)).min(bytes.len());
            bytes[at..end].fill(value);
        }
    }
}

/// The first 300 characters of a text.
fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()),
        None => text.to_string(),
    }
}
