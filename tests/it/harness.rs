//! Starting and stopping real `grape` processes, running client commands, and test data.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use grape_storage::testing::S3TestServer;
use parquet::arrow::ArrowWriter;
use serde_json::Value;

/// Path of the binary under test.
pub fn grape_bin() -> &'static str {
    env!("CARGO_BIN_EXE_grape")
}

/// A free TCP port on 127.0.0.1, never one handed out before in this test process (shared with
/// the meta processes' ports, see [`grape_meta::testing::free_port`]).
pub fn free_port() -> u16 {
    grape_meta::testing::free_port().expect("a free port")
}

/// A `grape dev` or `grape compute` process; killed when dropped.
pub struct DevProcess {
    child: Option<Child>,
    /// Gateway endpoint.
    pub endpoint: String,
    /// Data directory.
    pub data_dir: PathBuf,
    pub port: u16,
    extra: ServerFlags,
    /// The subcommand: `dev` or `compute`.
    role: Vec<String>,
}

/// Extra flags and environment for a server process (e.g. S3 storage).
#[derive(Debug, Clone, Default)]
pub struct ServerFlags {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

impl ServerFlags {
    /// Flags that put segments in `bucket` on a loopback S3 server, with test credentials.
    pub fn s3(server: &S3TestServer, bucket: &str, prefix: &str) -> ServerFlags {
        let args = vec!["--storage".into(), format!("s3://{bucket}/{prefix}"), "--s3-endpoint".into(), server.endpoint()];
        let env = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];
        ServerFlags { args, env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }
}

impl DevProcess {
    /// Starts `grape dev` on `data_dir` and waits until it answers `status`.
    pub fn start(data_dir: &Path) -> DevProcess {
        Self::start_with(data_dir, ServerFlags::default())
    }

    /// Starts `grape dev` on `data_dir` with extra flags.
    pub fn start_with(data_dir: &Path, extra: ServerFlags) -> DevProcess {
        Self::start_on(data_dir, free_port(), extra)
    }

    /// Starts `grape dev` on `data_dir` and a given port.
    pub fn start_on(data_dir: &Path, port: u16, extra: ServerFlags) -> DevProcess {
        Self::start_role(&["dev"], data_dir, port, extra)
    }

    /// Starts `grape compute` against the meta members `meta`, storing segments at `storage`.
    pub fn start_compute(meta: &str, storage: &str, data_dir: &Path) -> DevProcess {
        Self::start_compute_with(meta, storage, data_dir, &[])
    }

    /// [`DevProcess::start_compute`] with extra flags.
    pub fn start_compute_with(meta: &str, storage: &str, data_dir: &Path, flags: &[String]) -> DevProcess {
        Self::start_compute_env(meta, storage, data_dir, ServerFlags { args: flags.to_vec(), env: Vec::new() })
    }

    /// [`DevProcess::start_compute`] with extra flags and environment.
    pub fn start_compute_env(meta: &str, storage: &str, data_dir: &Path, extra: ServerFlags) -> DevProcess {
        let mut args = vec!["--meta".into(), meta.into(), "--storage".into(), storage.into()];
        args.extend(extra.args);
        Self::start_role(&["compute"], data_dir, free_port(), ServerFlags { args, env: extra.env })
    }

    /// Starts `grape ROLE…` with the common server flags and waits until it answers `status`.
    fn start_role(role: &[&str], data_dir: &Path, port: u16, extra: ServerFlags) -> DevProcess {
        // `grape dev` serves the Qdrant APIs on 6333 (REST) and 6334 (gRPC) and the metrics
        // port on 9800 by default: tests that want them name a port.
        let off = |flag: &'static str| (role == ["dev"] && !extra.args.iter().any(|a| a == flag)).then_some([flag, "off"]);
        let qdrant_off: Vec<&str> =
            ["--qdrant-listen", "--qdrant-grpc-listen", "--metrics-listen"].into_iter().filter_map(off).flatten().collect();
        let child = Command::new(grape_bin())
            .args(role)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(&extra.args)
            .args(qdrant_off)
            .envs(extra.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn grape");
        let role = role.iter().map(|r| r.to_string()).collect();
        let p = DevProcess {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            port,
            extra,
            role,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.cli(&["status"]);
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "grape {:?} did not become ready: {}", self.role, String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the process with SIGKILL (no chance to flush or clean up) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`STOP`, `CONT`, …) to the process: `STOP` makes it hang without
    /// closing a connection, as a machine that stopped answering.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("a running process").id().to_string();
        // The shell's own `kill`: a fresh machine may have no /bin/kill.
        let status = Command::new("sh").args(["-c", &format!("kill -s {name} {pid}")]).status().expect("run sh");
        assert!(status.success(), "kill -s {name} {pid} failed");
    }

    /// Kills and starts again on the same directory and port.
    pub fn restart_after_kill(mut self) -> DevProcess {
        self.kill();
        let role: Vec<&str> = self.role.iter().map(String::as_str).collect();
        DevProcess::start_role(&role, &self.data_dir.clone(), self.port, self.extra.clone())
    }

    /// Runs a client command against this process.
    pub fn cli(&self, args: &[&str]) -> Output {
        // The server's environment (S3 credentials, GRAPE_API_KEY) serves the client too.
        let env = self.extra.env.iter().map(|(k, v)| (k, v));
        Command::new(grape_bin()).arg("--endpoint").arg(&self.endpoint).args(args).envs(env).output().expect("run grape")
    }

    /// Runs a client command that must succeed, with `--output json`, and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.cli(&all);
        assert!(out.status.success(), "grape {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("grape {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Runs a client command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "grape {args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Row count of a collection, through SQL.
    pub fn count(&self, collection: &str) -> u64 {
        let rows = self.json(&["sql", &format!("SELECT count(*) AS n FROM {collection}")]);
        rows[0]["n"].as_u64().expect("count")
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three `grape meta` processes and a `grape compute` node per name in `names`, sharing object
/// storage under `dir` (each node's data directory is `dir/NAME`): the group, the members as
/// `--meta` takes them, and the nodes.
pub fn cluster(dir: &Path, names: &[&str]) -> (grape_meta::testing::MetaProcesses, String, Vec<DevProcess>) {
    let meta = grape_meta::testing::MetaProcesses::start(Path::new(grape_bin()), 3).expect("start grape meta processes");
    let members = meta.addrs().join(",");
    let storage = format!("file://{}", dir.join("objects").display());
    let nodes = names.iter().map(|name| DevProcess::start_compute(&members, &storage, &dir.join(name))).collect();
    (meta, members, nodes)
}

/// Writes batches to a Parquet file.
pub fn write_parquet(path: &Path, batches: &[RecordBatch]) {
    let file = File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// A JSON array for `--vector`.
pub fn vector_arg(v: &[f32]) -> String {
    serde_json::to_string(v).unwrap()
}

/// The ids of JSON hits, in order.
pub fn hit_ids(hits: &Value) -> Vec<u64> {
    hits.as_array().expect("hits array").iter().map(|h| h["id"].as_u64().expect("id")).collect()
}
