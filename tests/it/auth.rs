//! API keys and the cluster secret: every kind of public RPC against no key, the read-only key
//! and the read-write key; the internal services refused to a process without the secret; a
//! cluster whose members share a secret working as before; Qdrant's clients sending their key.

use std::path::{Path, PathBuf};
use std::process::Command;

use grape_meta::testing::MetaProcesses;
use grape_proto::compute::v1 as leaf;
use grape_proto::meta::v1 as meta;
use grape_proto::raft::v1 as raft;
use grape_proto::v1;
use tonic::transport::Channel;
use tonic::{Code, Request};

use crate::harness::{free_port, grape_bin, DevProcess, ServerFlags};

const RW: &str = "rw-key-for-tests";
const RO: &str = "ro-key-for-tests";
const SECRET: &str = "cluster-secret-for-tests";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    WrongKey,
    ReadOnly,
    ReadWrite,
    Member,
}

const EVERYONE: [Who; 5] = [Who::Nobody, Who::WrongKey, Who::ReadOnly, Who::ReadWrite, Who::Member];

/// `message` with `who`'s credential in its metadata.
fn as_who<T>(who: Who, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let (name, value) = match who {
        Who::Nobody => return request,
        Who::WrongKey => ("api-key", "not-the-key"),
        Who::ReadOnly => ("authorization", "Bearer ro-key-for-tests"),
        Who::ReadWrite => ("api-key", RW),
        Who::Member => ("grape-cluster-secret", SECRET),
    };
    request.metadata_mut().insert(name, value.parse().expect("ascii"));
    request
}

/// The code an RPC needing `access` answers `who` with, if auth refuses it.
fn refusal(access: &str, who: Who) -> Option<Code> {
    match (access, who) {
        (_, Who::Member) => None,
        (_, Who::Nobody | Who::WrongKey) => Some(Code::Unauthenticated),
        ("read", _) => None,
        ("write", Who::ReadOnly) => Some(Code::PermissionDenied),
        ("write", _) => None,
        ("member", _) => Some(Code::PermissionDenied),
        _ => unreachable!("{access}"),
    }
}

/// Asserts that the outcome of an RPC is the refusal `expected`, or anything but an auth
/// refusal when `expected` is `None`.
fn assert_outcome<T: std::fmt::Debug>(what: &str, who: Who, outcome: Result<T, tonic::Status>, expected: Option<Code>) {
    match (outcome, expected) {
        (Err(status), Some(code)) => assert_eq!(status.code(), code, "{what} as {who:?}: {status}"),
        (Ok(answer), Some(code)) => panic!("{what} as {who:?} should be {code:?}, got {answer:?}"),
        (Err(status), None) => {
            assert!(!matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied), "{what} as {who:?} refused: {status}")
        }
        (Ok(_), None) => {}
    }
}

#[test]
fn api_keys_guard_every_public_rpc_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![("GRAPE_API_KEY".to_string(), RW.to_string())];
    let args = ["--read-only-api-key", RO, "--cluster-secret", SECRET].map(String::from).to_vec();
    let grape = DevProcess::start_with(dir.path(), ServerFlags { args, env });
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = Channel::from_shared(grape.endpoint.clone()).unwrap().connect().await.unwrap();
        let mut public = v1::grape_client::GrapeClient::new(channel.clone());
        let mut meta = meta::meta_client::MetaClient::new(channel.clone());
        let mut leaf = leaf::leaf_client::LeafClient::new(channel.clone());
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let create = |name: &str| v1::CreateCollectionRequest { name: name.into(), dim: 4, ..Default::default() };
        public.create_collection(as_who(Who::ReadWrite, create("docs"))).await.expect("create with the read-write key");

        for who in EVERYONE {
            let read = refusal("read", who);
            let write = refusal("write", who);
            let member = refusal("member", who);
            assert_outcome("ListCollections", who, public.list_collections(as_who(who, v1::ListCollectionsRequest {})).await, read);
            let search = v1::SearchRequest { collection: "docs".into(), vector: vec![0.0; 4], k: 3, ..Default::default() };
            assert_outcome("Search", who, public.search(as_who(who, search)).await, read);
            let sql = v1::SqlRequest { query: "SELECT count(*) FROM docs".into(), ..Default::default() };
            assert_outcome("Sql", who, public.sql(as_who(who, sql)).await, read);
            assert_outcome("Status", who, public.status(as_who(who, v1::StatusRequest {})).await, read);
            let name = format!("made_by_{who:?}").to_lowercase();
            assert_outcome("CreateCollection", who, public.create_collection(as_who(who, create(&name))).await, write);
            let drop = v1::DropCollectionRequest { name: name.clone() };
            assert_outcome("DropCollection", who, public.drop_collection(as_who(who, drop)).await, write);
            let delete = v1::DeleteRequest { collection: "docs".into(), filter: "id > 0".into(), ..Default::default() };
            assert_outcome("Delete", who, public.delete(as_who(who, delete)).await, write);
            assert_outcome("Meta.Status", who, meta.status(as_who(who, meta::StatusRequest {})).await, read);
            let put = meta::ConfigPutRequest { key: "auth/test".into(), value: "1".into(), ..Default::default() };
            assert_outcome("Meta.ConfigPut", who, meta.config_put(as_who(who, put)).await, write);
            // The raw command tunnel and the catalog are for members only.
            let command = meta::WriteRequest { command_json: r#"{"DrainNode":{"id":999}}"#.into() };
            assert_outcome("Meta.Write", who, meta.write(as_who(who, command)).await, member);
            let catalog = meta::ReadCatalogRequest { linearizable: false };
            assert_outcome("Meta.ReadCatalog", who, meta.read_catalog(as_who(who, catalog)).await, member);
            let segments = leaf::SearchSegmentsRequest { collection: "docs".into(), vector: vec![0.0; 4], k: 1, ..Default::default() };
            assert_outcome("Leaf.SearchSegments", who, leaf.search_segments(as_who(who, segments)).await, member);
            let check = tonic_health::pb::HealthCheckRequest { service: String::new() };
            assert_outcome("Health.Check", who, health.check(as_who(who, check)).await, None);
        }

        // Refused writes changed nothing: only the read-write key's and the member's
        // collections were made (and dropped again); the read-only key's never existed.
        let listed = public.list_collections(as_who(Who::ReadOnly, v1::ListCollectionsRequest {})).await.expect("list").into_inner();
        let names: Vec<&str> = listed.collections.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["docs"], "{names:?}");
        let config = meta.config_get(as_who(Who::ReadOnly, meta::ConfigGetRequest { key: "auth/test".into(), ..Default::default() }));
        let version = config.await.expect("config get").into_inner().value.map(|v| v.version);
        assert_eq!(version, Some(2), "only the read-write key's and the member's puts landed");
    });

    // The CLI sends --api-key or GRAPE_API_KEY; without one it says what is missing.
    let bare = |args: &[&str]| Command::new(grape_bin()).arg("--endpoint").arg(&grape.endpoint).args(args).output().expect("run grape");
    let out = bare(&["collection", "list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("API key"), "{stderr}");
    assert!(bare(&["--api-key", RO, "collection", "list"]).status.success());
    let out = bare(&["--api-key", RO, "collection", "create", "nope", "--dim", "4"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"), "{}", String::from_utf8_lossy(&out.stderr));
    let names = grape.json(&["collection", "list"]);
    assert_eq!(names.as_array().map(Vec::len), Some(1), "{names}");
}

#[test]
fn a_cluster_whose_members_share_a_secret_works_and_refuses_outsiders() {
    let dir = tempfile::tempdir().unwrap();
    let secret = ["--cluster-secret", SECRET];
    let group = MetaProcesses::start_with(Path::new(grape_bin()), 3, &secret).expect("start grape meta with a secret");
    let members = group.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let flags = ServerFlags { args: secret.map(String::from).to_vec(), env: Vec::new() };
    let a = DevProcess::start_compute_env(&members, &storage, &dir.path().join("a"), flags.clone());
    let b = DevProcess::start_compute_env(&members, &storage, &dir.path().join("b"), flags);
    // Members talk to each other: a write through one node is searchable through the other
    // (which asks the first over the leaf service when it holds the segment).
    a.json(&["collection", "create", "docs", "--dim", "4"]);
    let file = dir.path().join("rows.parquet");
    crate::harness::write_parquet(&file, &[grape_compute::datagen::batch(4, 0, 100, 1)]);
    a.json(&["ingest", "docs", file.to_str().unwrap()]);
    let version = a.json(&["collection", "describe", "docs"])["version"].as_u64().expect("version").to_string();
    let hits = b.json(&["search", "docs", "--vector", "[0,0,0,0]", "--k", "5", "--min-version", &version]);
    assert_eq!(hits.as_array().map(Vec::len), Some(5), "{hits}");
    // The drain of `grape cluster drain` is a typed operator RPC now, forwarded by a node.
    let node_ids: Vec<u64> =
        crate::compute_cluster::compute_nodes(&members).iter().filter_map(|n| n["id"].as_u64()).collect();
    assert_eq!(node_ids.len(), 2, "{node_ids:?}");

    // A process without the secret reaches none of the internal services.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let member = Channel::from_shared(format!("http://{}", group.addr(1))).unwrap().connect().await.unwrap();
        let command = meta::WriteRequest { command_json: r#"{"DrainNode":{"id":999}}"#.into() };
        let refused = meta::meta_client::MetaClient::new(member.clone()).write(command).await.expect_err("Write without the secret");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
        let vote = raft::JsonRequest { json: b"{}".to_vec() };
        let refused = raft::raft_service_client::RaftServiceClient::new(member.clone()).vote(vote).await.expect_err("Vote");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
        // Not even a member may write the leader's own decisions, such as a node's death.
        let death = meta::WriteRequest { command_json: r#"{"DeclareDead":{"id":1,"reason":"said so"}}"#.into() };
        let refused = meta::meta_client::MetaClient::new(member.clone()).write(as_who(Who::Member, death)).await.expect_err("DeclareDead");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
        let node = Channel::from_shared(a.endpoint.clone()).unwrap().connect().await.unwrap();
        let segments = leaf::SearchSegmentsRequest { collection: "docs".into(), vector: vec![0.0; 4], k: 1, ..Default::default() };
        let refused = leaf::leaf_client::LeafClient::new(node).search_segments(segments).await.expect_err("leaf");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
        // Status stays readable for operators (no API key is set).
        meta::meta_client::MetaClient::new(member).status(meta::StatusRequest {}).await.expect("status");
    });
    let drained = a.json(&["cluster", "drain", &node_ids[0].to_string(), "--timeout-secs", "60"]);
    assert_eq!(drained["drained"], true, "{drained}");
}

#[test]
fn qdrant_clients_send_their_api_key_over_rest_and_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let (rest, grpc) = (free_port(), free_port());
    let args = ["--qdrant-listen", &format!("127.0.0.1:{rest}"), "--qdrant-grpc-listen", &format!("127.0.0.1:{grpc}"), "--read-only-api-key", RO]
        .map(String::from)
        .to_vec();
    let env = vec![("GRAPE_API_KEY".to_string(), RW.to_string())];
    let _grape = DevProcess::start_with(dir.path(), ServerFlags { args, env });
    let script = format!(
        r#"
import sys
from qdrant_client import QdrantClient, models as m
for grpc in (False, True):
    kw = dict(url="http://127.0.0.1:{rest}", grpc_port={grpc}, prefer_grpc=grpc, check_compatibility=False)
    how = "gRPC" if grpc else "REST"
    def refused(call, code):
        try:
            call()
        except Exception as e:
            text = str(e)
            assert code in text, f"{{how}}: expected {{code}}, got {{text}}"
            return
        raise AssertionError(f"{{how}}: {{call}} should have been refused with {{code}}")
    nobody = QdrantClient(**kw)
    ro = QdrantClient(api_key="{RO}", **kw)
    rw = QdrantClient(api_key="{RW}", **kw)
    name = f"q_{{how.lower()}}"
    refused(lambda: nobody.get_collections(), "401" if not grpc else "UNAUTHENTICATED")
    refused(lambda: ro.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT)), "403" if not grpc else "PERMISSION_DENIED")
    rw.create_collection(name, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT))
    rw.upsert(name, points=[m.PointStruct(id=1, vector=[1, 0, 0, 0], payload={{"a": 1}})], wait=True)
    refused(lambda: ro.delete(name, points_selector=m.PointIdsList(points=[1])), "403" if not grpc else "PERMISSION_DENIED")
    hits = ro.query_points(name, query=[1, 0, 0, 0], limit=3).points
    assert [h.id for h in hits] == [1], hits
    assert ro.count(name).count == 1
    print(how, "ok")
"#
    );
    let out = Command::new(crate::qdrant::python()).arg("-c").arg(script).output().expect("run python");
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// A test CA and a certificate it signed for 127.0.0.1, made with the `openssl` command:
/// (ca.pem, server.pem, server.key) in `dir`, and a second, unrelated CA (other-ca.pem).
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (install it: .ci/run does)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    for (name, cn) in [("ca", "grape test CA"), ("other-ca", "another CA")] {
        let (key, cert, subject) = (format!("{name}.key"), format!("{name}.pem"), format!("/CN={cn}"));
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &cert, "-days", "2", "-subj", &subject]);
        openssl(&args);
    }
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n").unwrap();
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    openssl(&args);
    openssl(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"), dir.join("other-ca.pem"))
}

#[test]
fn tls_on_every_port_of_grape_dev_and_only_the_right_ca_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key, other_ca) = make_certificates(dir.path());
    let (rest, metrics) = (free_port(), free_port());
    let path = |p: &Path| p.display().to_string();
    let args = vec![
        "--tls-cert".into(),
        path(&cert),
        "--tls-key".into(),
        path(&key),
        "--qdrant-listen".into(),
        format!("127.0.0.1:{rest}"),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics}"),
    ];
    let env = vec![("GRAPE_CA_CERT".to_string(), path(&ca))];
    let grape = DevProcess::start_with(dir.path().join("data").as_path(), ServerFlags { args, env });
    let https = grape.endpoint.replace("http://", "https://");
    let cli = |args: &[&str]| Command::new(grape_bin()).arg("--endpoint").arg(&https).args(args).output().expect("run grape");
    let out = cli(&["--ca-cert", &path(&ca), "collection", "create", "docs", "--dim", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&["--ca-cert", &path(&ca), "--output", "json", "collection", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("docs"), "{}", String::from_utf8_lossy(&out.stderr));
    // A client that does not speak TLS, or trusts another CA, gets nowhere.
    assert!(!cli(&["collection", "list"]).status.success(), "plain HTTP/2 to a TLS port");
    let out = cli(&["--ca-cert", &path(&other_ca), "collection", "list"]);
    assert!(!out.status.success(), "a certificate from an untrusted CA was accepted");

    // The HTTP ports (Qdrant REST, metrics) speak TLS too.
    let script = format!(
        r#"
import ssl, urllib.request
ok = ssl.create_default_context(cafile="{ca}")
for url in ["https://127.0.0.1:{rest}/collections", "https://127.0.0.1:{metrics}/metrics"]:
    assert urllib.request.urlopen(url, context=ok).status == 200, url
wrong = ssl.create_default_context(cafile="{other}")
try:
    urllib.request.urlopen("https://127.0.0.1:{rest}/collections", context=wrong)
    raise SystemExit("an untrusted certificate was accepted")
except urllib.error.URLError:
    pass
"#,
        ca = path(&ca),
        other = path(&other_ca)
    );
    let out = Command::new(crate::qdrant::python()).arg("-c").arg(script).output().expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_cluster_speaks_tls_between_all_its_members() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key, _) = make_certificates(dir.path());
    let (ca, cert, key) = (ca.display().to_string(), cert.display().to_string(), key.display().to_string());
    let tls = ["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca];
    // Members elect a leader over TLS only (this test process speaks no TLS, so it does not
    // wait for them itself: the compute node's readiness does).
    let _group = MetaProcesses::spawn_with(Path::new(grape_bin()), 3, &tls).expect("start grape meta with TLS");
    let members = _group.addrs().join(",");
    let storage = format!("file://{}", dir.path().join("objects").display());
    let flags = ServerFlags { args: tls.map(String::from).to_vec(), env: vec![("GRAPE_CA_CERT".into(), ca.clone())] };
    let a = DevProcess::start_compute_env(&members, &storage, &dir.path().join("a"), flags.clone());
    let b = DevProcess::start_compute_env(&members, &storage, &dir.path().join("b"), flags);
    a.json(&["collection", "create", "docs", "--dim", "4", "--shards", "2"]);
    let file = dir.path().join("rows.parquet");
    crate::harness::write_parquet(&file, &[grape_compute::datagen::batch(4, 0, 200, 1)]);
    a.json(&["ingest", "docs", file.to_str().unwrap()]);
    let version = a.json(&["collection", "describe", "docs"])["version"].as_u64().expect("version").to_string();
    let hits = b.json(&["search", "docs", "--vector", "[0,0,0,0]", "--k", "7", "--min-version", &version]);
    assert_eq!(hits.as_array().map(Vec::len), Some(7), "{hits}");
    let status = b.json(&["status"]);
    assert!(status.to_string().contains("leader"), "{status}");
}
