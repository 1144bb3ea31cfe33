//! `grape` processes the scenarios start, and what they measure of them.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("grape compute on port {port} did not start").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// Resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`); 0 if unknown.
pub fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
