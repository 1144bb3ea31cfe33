//! Test support (feature `testing`): an S3-compatible server on loopback for tests.
//!
//! [`S3TestServer`] runs `minio/s3-server.sh` (moto's server, installed on first use) on a
//! free port and stops it when dropped. Tests that need S3 use it instead of a mock, so the
//! S3 path is exercised over real HTTP with real signing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::store::StorageOptions;

/// The script that starts the server, relative to the repository root.
pub const S3_SERVER_SCRIPT: &str = "minio/s3-server.sh";

/// Finds [`S3_SERVER_SCRIPT`] from the working directory upwards (cargo runs tests in their
/// package's directory), falling back to where this crate was compiled. Looking at run time
/// matters: a build cache shared between checkouts may hold a binary compiled elsewhere.
pub fn s3_server_script() -> PathBuf {
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(S3_SERVER_SCRIPT);
    let found = std::env::current_dir().ok().and_then(|cwd| cwd.ancestors().map(|d| d.join(S3_SERVER_SCRIPT)).find(|p| p.is_file()));
    found.unwrap_or(compiled)
}

/// A running S3-compatible server on 127.0.0.1; killed on drop.
pub struct S3TestServer {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
}

impl S3TestServer {
    /// Starts a server on a free port and waits until it accepts connections (installing it
    /// first if needed, which can take a minute once).
    pub fn start() -> Result<S3TestServer, String> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        Self::start_on(port)
    }

    /// Starts a server that checks request signatures against its (empty) set of users, so
    /// every access key is rejected: for testing what a user with wrong credentials sees.
    pub fn start_rejecting_credentials() -> Result<S3TestServer, String> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        Self::spawn(port, &[("INITIAL_NO_AUTH_ACTION_COUNT", "0")])
    }

    /// Starts a server on `port` (e.g. to bring a stopped one back on the same address).
    pub fn start_on(port: u16) -> Result<S3TestServer, String> {
        Self::spawn(port, &[])
    }

    fn spawn(port: u16, env: &[(&str, &str)]) -> Result<S3TestServer, String> {
        let script = s3_server_script();
        let shown = script.display();
        let install = Command::new("bash").arg(&script).arg("--install-only").status().map_err(|e| format!("run {shown}: {e}"))?;
        if !install.success() {
            return Err(format!("{shown} --install-only failed"));
        }
        let child = Command::new("bash")
            .arg(&script)
            .arg(port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start {shown}: {e}"))?;
        let server = S3TestServer { child: Some(child), port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("S3 test server did not listen on port {port} within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Options that point a store at this server with test credentials.
    pub fn options(&self) -> StorageOptions {
        StorageOptions {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            allow_http: true,
            retries: Some(1),
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        }
    }

    /// Creates a bucket (the server accepts unsigned requests).
    pub fn create_bucket(&self, name: &str) -> Result<(), String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        let request = format!("PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port);
        stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
        if response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(format!("create bucket {name}: {}", response.lines().next().unwrap_or("no answer")))
        }
    }

    /// Stops the server (it keeps objects in memory, so they are gone with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}
