//! S3 storage faults: unusable storage is refused at start naming the problem, and an outage
//! during work fails writes cleanly without losing or half-publishing anything.

use std::process::Command;

use grape_compute::datagen;
use grape_storage::testing::S3TestServer;

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

/// S3 stops in the middle of work: the ingest fails with a clear error, nothing half-written
/// becomes visible, queries on loaded data keep answering, and once S3 is back the same ingest
/// succeeds.
#[test]
fn ingest_fails_cleanly_while_s3_is_down_and_succeeds_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut s3 = S3TestServer::start().expect("start the S3 test server");
    s3.create_bucket("grape").unwrap();
    let mut flags = ServerFlags::s3(&s3, "grape", "faults");
    flags.args.extend(["--s3-retries", "1", "--s3-timeout-secs", "3"].map(String::from));
    let grape = DevProcess::start_with(&dir.path().join("data"), flags);

    let first = dir.path().join("first.parquet");
    let second = dir.path().join("second.parquet");
    write_parquet(&first, &[datagen::batch(16, 0, 1_000, 1)]);
    write_parquet(&second, &[datagen::batch(16, 1_000, 1_000, 2)]);
    grape.json(&["collection", "create", "docs", "--dim", "16", "--shards", "2"]);
    grape.json(&["ingest", "docs", first.to_str().unwrap()]);
    let q = vector_arg(&datagen::query(16, 3));
    let before = grape.json(&["search", "docs", "--vector", &q, "--k", "5"]);
    let described = grape.json(&["collection", "describe", "docs"]);

    let port = s3.port;
    s3.stop();
    let err = grape.fails(&["ingest", "docs", second.to_str().unwrap()]);
    assert!(err.contains("UNAVAILABLE") && err.contains("cannot write segments to s3://grape/faults"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert_eq!(grape.json(&["collection", "describe", "docs"]), described, "nothing half-written is visible");
    assert_eq!(grape.count("docs"), 1_000);
    assert_eq!(grape.json(&["search", "docs", "--vector", &q, "--k", "5"]), before, "loaded data keeps answering");

    let s3 = S3TestServer::start_on(port).expect("restart the S3 test server");
    s3.create_bucket("grape").unwrap();
    grape.json(&["ingest", "docs", second.to_str().unwrap()]);
    assert_eq!(grape.count("docs"), 2_000);
}
