//! S3 storage faults: unusable storage is refused at start naming the problem, and an outage
//! during work fails writes cleanly without losing or half-publishing anything.

use std::process::Command;

use arrow::array::RecordBatch;
use grape_compute::datagen;
use grape_compute::ingest::encode_ipc;
use grape_proto::v1;
use grape_proto::v1::grape_client::GrapeClient;
use grape_storage::testing::S3TestServer;
use grape_storage::Storage;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::harness::{free_port, grape_bin, vector_arg, write_parquet, DevProcess, ServerFlags};

/// Runs `grape dev` on `storage` against `endpoint`; it must exit with an error. Returns stderr.
fn dev_fails(storage: &str, endpoint: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(grape_bin())
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--storage", storage, "--s3-endpoint", endpoint, "--s3-retries", "0", "--s3-timeout-secs", "2"])
        .envs([("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")])
        .output()
        .expect("run grape dev");
    assert!(!out.status.success(), "grape dev should refuse {storage} at {endpoint}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unusable_s3_storage_is_refused_at_start_with_the_reason() {
    let s3 = S3TestServer::start().expect("start the S3 test server");
    let err = dev_fails("s3://no-such-bucket/grape", &s3.endpoint());
    assert!(err.contains("the bucket does not exist"), "{err}");
    let err = dev_fails("s3://grape/x", &format!("http://127.0.0.1:{}", free_port()));
    assert!(err.contains("could not be reached"), "{err}");
    let err = dev_fails("s3:///no-bucket", &s3.endpoint());
    assert!(err.contains("names a bucket"), "{err}");
    let strict = S3TestServer::start_rejecting_credentials().expect("start the S3 test server with auth");
    let err = dev_fails("s3://grape/x", &strict.endpoint());
    assert!(err.contains("the credentials were rejected"), "{err}");
}

/// An open `Ingest` stream of the public API, driven message by message.
struct IngestStream {
    tx: mpsc::Sender<v1::IngestRequest>,
    replies: tonic::Streaming<v1::IngestProgress>,
}

impl IngestStream {
    async fn open(endpoint: &str, collection: &str) -> IngestStream {
        let mut client = GrapeClient::connect(endpoint.to_string()).await.expect("connect");
        let (tx, rx) = mpsc::channel(4);
        tx.send(v1::IngestRequest { collection: collection.into(), ..Default::default() }).await.unwrap();
        let mut replies = client.ingest(ReceiverStream::new(rx)).await.expect("open ingest").into_inner();
        replies.message().await.expect("first answer").expect("an answer");
        IngestStream { tx, replies }
    }

    /// Stages one batch; returns the gateway's answer (progress or error).
    async fn stage(&mut self, batch: &RecordBatch) -> Result<v1::IngestProgress, tonic::Status> {
        let ipc = encode_ipc(&batch.schema(), std::slice::from_ref(batch)).unwrap();
        self.tx.send(v1::IngestRequest { arrow_ipc: ipc, ..Default::default() }).await.expect("stream open");
        Ok(self.replies.message().await?.expect("an answer"))
    }
}

/// S3 stops in the middle of one multi-message ingest: the ingest fails with a clear error,
/// nothing half-written becomes visible, queries on loaded data keep answering, and once S3 is
/// back the same ingest succeeds.
#[test]
fn ingest_fails_cleanly_when_s3_stops_midway_and_succeeds_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = S3TestServer::start().expect("start the S3 test server");
    s3.create_bucket("grape").unwrap();
    let mut flags = ServerFlags::s3(&s3, "grape", "faults");
    flags.args.extend(["--s3-retries", "1", "--s3-timeout-secs", "3"].map(String::from));
    let grape = DevProcess::start_with(&dir.path().join("data"), flags);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let first = dir.path().join("first.parquet");
    let second = dir.path().join("second.parquet");
    let (part_a, part_b) = (datagen::batch(16, 1_000, 500, 2), datagen::batch(16, 1_500, 500, 3));
    write_parquet(&first, &[datagen::batch(16, 0, 1_000, 1)]);
    write_parquet(&second, &[part_a.clone(), part_b.clone()]);
    grape.json(&["collection", "create", "docs", "--dim", "16", "--shards", "2"]);
    grape.json(&["ingest", "docs", first.to_str().unwrap()]);
    let q = vector_arg(&datagen::query(16, 3));
    let before = grape.json(&["search", "docs", "--vector", &q, "--k", "5"]);
    let described = grape.json(&["collection", "describe", "docs"]);

    // A job that stages rows and ends without committing publishes nothing.
    rt.block_on(async {
        let mut job = IngestStream::open(&grape.endpoint, "docs").await;
        assert_eq!(job.stage(&part_a).await.expect("staged").rows_staged, 500);
    });
    assert_eq!(grape.json(&["collection", "describe", "docs"]), described, "an uncommitted job is invisible");

    // S3 stops between the first and the second message of one job.
    let port = s3.port;
    let err = rt.block_on(async {
        let mut job = IngestStream::open(&grape.endpoint, "docs").await;
        assert_eq!(job.stage(&part_a).await.expect("staged").rows_staged, 500);
        s3.stop();
        job.stage(&part_b).await.expect_err("staging without S3 fails")
    });
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("cannot write segments to s3://grape/faults"), "{err:?}");
    assert!(err.message().contains("nothing was committed"), "{err:?}");
    let cli_err = grape.fails(&["ingest", "docs", second.to_str().unwrap(), "--batch-rows", "500"]);
    assert!(cli_err.contains("UNAVAILABLE") && cli_err.contains("nothing was committed"), "{cli_err}");

    assert_eq!(grape.json(&["collection", "describe", "docs"]), described, "nothing half-written is visible");
    assert_eq!(grape.count("docs"), 1_000);
    assert_eq!(grape.json(&["search", "docs", "--vector", &q, "--k", "5"]), before, "loaded data keeps answering");

    let s3 = S3TestServer::start_on(port).expect("restart the S3 test server");
    s3.create_bucket("grape").unwrap();
    let done = grape.json(&["ingest", "docs", second.to_str().unwrap(), "--batch-rows", "500"]);
    assert_eq!(done["rows"], 1_000);
    assert_eq!(done["segments"], 4, "two messages, two shards each, one commit");
    assert_eq!(grape.count("docs"), 2_000);
}

/// Every S3 setting can come from the config file alone, and a typo in it is named.
#[test]
fn s3_settings_come_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start().expect("start the S3 test server");
    s3.create_bucket("grape").unwrap();
    let config = dir.path().join("grape.toml");
    let text = format!(
        "[storage]\nurl = \"s3://grape/from-config\"\ncache_bytes = 0\n\n[storage.s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"test\"\nsecret_access_key = \"test\"\ntimeout_secs = 5\nretries = 1\n",
        s3.endpoint()
    );
    std::fs::write(&config, text).unwrap();
    // Empty AWS_* variables count as unset, whatever the environment running the tests has.
    let env = ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"];
    let flags = ServerFlags {
        args: vec!["--config".into(), config.display().to_string()],
        env: env.iter().map(|k| (k.to_string(), String::new())).collect(),
    };
    let grape = DevProcess::start_with(&dir.path().join("data"), flags);
    let file = dir.path().join("rows.parquet");
    write_parquet(&file, &[datagen::batch(16, 0, 300, 1)]);
    grape.json(&["collection", "create", "docs", "--dim", "16"]);
    grape.json(&["ingest", "docs", file.to_str().unwrap()]);
    assert_eq!(grape.count("docs"), 300);
    let bucket = Storage::from_url_with_options("s3://grape", &s3.options()).expect("s3 storage");
    let objects = tokio::runtime::Runtime::new().unwrap().block_on(bucket.list("from-config/collections")).expect("list the bucket");
    assert!(!objects.is_empty(), "segments went to the configured prefix");

    std::fs::write(&config, "[storage.s3]\nendpont = \"http://127.0.0.1:1\"\n").unwrap();
    let out = Command::new(grape_bin())
        .args(["dev", "--config"])
        .arg(&config)
        .args(["--data-dir"])
        .arg(dir.path().join("other"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("run grape dev");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("grape.toml") && err.contains("endpont"), "{err}");
}
