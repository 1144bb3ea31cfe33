//! `grape` processes the scenarios start, and what they measure of them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Three `grape meta` processes and object storage on local disk under a temporary
/// directory: what the multi-process scenarios start compute nodes against.
pub struct MetaGroup {
    /// The `grape` binary.
    pub bin: PathBuf,
    /// The meta processes.
    pub group: grape_meta::testing::MetaProcesses,
    /// `ADDR,ADDR,ADDR` of the members, as `--meta` takes them.
    pub members: String,
    /// The storage URL.
    pub storage: String,
    dir: tempfile::TempDir,
}

impl MetaGroup {
    /// Starts the three members with the `grape` binary `grape` (default: beside the
    /// benchmark's own binary).
    pub fn start(grape: Option<&Path>) -> Result<MetaGroup, Box<dyn std::error::Error>> {
        let bin = super::grape_binary(grape)?;
        let dir = tempfile::tempdir()?;
        let group = grape_meta::testing::MetaProcesses::start(&bin, 3)?;
        let members = group.addrs().join(",");
        let storage = format!("file://{}", dir.path().join("objects").display());
        Ok(MetaGroup { bin, group, members, storage, dir })
    }

    /// Starts a `grape compute` process against the group, its data directory named `name`.
    pub fn compute_node(&self, name: &str) -> Result<ComputeNode, Box<dyn std::error::Error>> {
        ComputeNode::start(&self.bin, &self.members, &self.storage, &self.dir.path().join(name))
    }
}

/// A `grape compute` process, killed when dropped.
pub struct ComputeNode {
    child: Child,
    /// Its public API.
    pub endpoint: String,
}

impl ComputeNode {
    /// Starts `grape compute` against the meta `members`, storing segments at `storage`, and
    /// waits until it listens (which means connected to meta and storage checked).
    pub fn start(bin: &Path, members: &str, storage: &str, dir: &Path) -> Result<ComputeNode, Box<dyn std::error::Error>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .args(["compute", "--meta", members, "--storage", storage, "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let node = ComputeNode { child, endpoint: format!("http://127.0.0.1:{port}") };
        wait_listening(port)?;
        Ok(node)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ComputeNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `grape dev` process on a temporary data directory, killed when dropped.
pub struct DevServer {
    child: Child,
    /// Its public API.
    pub endpoint: String,
    /// The `grape` binary it runs, for client commands ([`DevServer::cli`]).
    bin: PathBuf,
    _dir: tempfile::TempDir,
}

impl DevServer {
    /// Starts `grape dev` (garbage collection off, so it does not disturb what is measured)
    /// and waits until it listens.
    pub fn start(grape: Option<&Path>) -> Result<DevServer, Box<dyn std::error::Error>> {
        Self::start_with(grape, &["--qdrant-listen".into(), "off".into(), "--qdrant-grpc-listen".into(), "off".into()])
    }

    /// [`DevServer::start`] with extra flags of `grape dev`.
    pub fn start_with(grape: Option<&Path>, flags: &[String]) -> Result<DevServer, Box<dyn std::error::Error>> {
        let bin = super::grape_binary(grape)?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let child = Command::new(&bin)
            .args(["dev", "--listen", &format!("127.0.0.1:{port}"), "--gc-interval-secs", "0"])
            // No operators' port (9800 by default) unless a scenario names one; a later flag wins.
            .args(["--metrics-listen", "off"])
            .args(flags)
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = DevServer { child, endpoint: format!("http://127.0.0.1:{port}"), bin, _dir: dir };
        wait_listening(port)?;
        Ok(server)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the client command `grape ARGS` against the server; an error if it fails.
    pub fn cli(&self, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
        let out = Command::new(&self.bin).args(["--endpoint", &self.endpoint]).args(args).output()?;
        if !out.status.success() {
            return Err(format!("grape {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(())
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port of loopback that nothing listens on now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits up to a minute until something listens on `port` of loopback.
pub fn wait_listening(port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("grape on port {port} did not start").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`); 0 if unknown.
pub fn resident_bytes(pid: u32) -> u64 {
    status_bytes(pid, "VmRSS")
}

/// CPU time process `pid` has used so far, user and system, all threads, in seconds (from
/// `/proc/PID/stat`, whose clock ticks are Linux's fixed 100 per second); 0 if unknown.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: count fields after its closing parenthesis, where
    // utime and stime are the 12th and 13th.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name.split_whitespace().skip(11).take(2).filter_map(|f| f.parse::<u64>().ok()).sum();
    ticks as f64 / 100.0
}

/// A size in bytes that `/proc/PID/status` gives in kB, by its name: `VmRSS`, `RssAnon`
/// (heap and stacks), `RssFile` (mapped files); 0 if unknown.
pub fn status_bytes(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.split_whitespace().next()?.parse::<u64>().ok());
    kib.map_or(0, |kib| kib * 1024)
}
