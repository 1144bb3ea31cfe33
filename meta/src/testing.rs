//! Test and benchmark support (feature `testing`): a meta group of real `grape meta`
//! processes on loopback, and the linearizability workload that runs against it.
//!
//! The end-to-end tests run a short workload; `grape-bench meta` runs a long one and measures
//! commit latency and failover time on the same processes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grape_proto::meta::v1 as pb;
use rand::{Rng, SeedableRng};
use tonic::Status;

use crate::linearizability::{ConfigOp, ConfigOutput, History, Recorder};
use crate::service::RemoteMeta;

/// A group of `grape meta` processes with ids `1..=n` on free loopback ports; all are killed
/// when it is dropped.
#[derive(Debug)]
pub struct MetaProcesses {
    bin: PathBuf,
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    rt: tokio::runtime::Runtime,
    /// Arguments every member gets (e.g. `--cluster-secret S`).
    common: Vec<String>,
}

impl MetaProcesses {
    /// Starts `n` members of a new group with the `grape` binary at `bin`, and waits until
    /// they agree on a leader.
    pub fn start(bin: &Path, n: usize) -> std::io::Result<MetaProcesses> {
        MetaProcesses::start_with(bin, n, &[])
    }

    /// Starts `n` members of a new group and returns at once, before they have a leader (as
    /// a compose file starts a cluster).
    pub fn spawn(bin: &Path, n: usize) -> std::io::Result<MetaProcesses> {
        MetaProcesses::spawn_with(bin, n, &[])
    }

    /// [`MetaProcesses::start`] with `common` arguments for every member.
    pub fn start_with(bin: &Path, n: usize, common: &[&str]) -> std::io::Result<MetaProcesses> {
        let group = MetaProcesses::spawn_with(bin, n, common)?;
        group.wait_for_leader(Duration::from_secs(30)).map_err(std::io::Error::other)?;
        Ok(group)
    }

    /// [`MetaProcesses::spawn`] with `common` arguments for every member.
    pub fn spawn_with(bin: &Path, n: usize, common: &[&str]) -> std::io::Result<MetaProcesses> {
        let ports = (0..n).map(|_| free_port()).collect::<std::io::Result<Vec<_>>>()?;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let children = (0..n).map(|_| None).collect();
        let common = common.iter().map(|a| a.to_string()).collect();
        let mut group = MetaProcesses { bin: bin.to_path_buf(), dir: tempfile::tempdir()?, ports, children, rt, common };
        for id in group.ids() {
            group.start_member(id)?;
        }
        Ok(group)
    }

    /// Ids of all members, running or not.
    pub fn ids(&self) -> Vec<u64> {
        (1..=self.ports.len() as u64).collect()
    }

    /// The `--peers` value of the group.
    fn peers(&self) -> String {
        self.ids().iter().map(|id| format!("{id}={}", self.addr(*id))).collect::<Vec<_>>().join(",")
    }

    /// The address member `id` listens on.
    pub fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[id as usize - 1])
    }

    /// Every member's address.
    pub fn addrs(&self) -> Vec<String> {
        self.ids().iter().map(|id| self.addr(*id)).collect()
    }

    /// The data directory of member `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("meta-{id}"))
    }

    /// Starts member `id` (again) on its port and data directory.
    pub fn start_member(&mut self, id: u64) -> std::io::Result<()> {
        self.start_member_with(id, &[])
    }

    /// Starts member `id` with extra `grape meta` arguments (e.g. `--join`); its stderr goes
    /// to [`MetaProcesses::log_path`].
    pub fn start_member_with(&mut self, id: u64, extra: &[&str]) -> std::io::Result<()> {
        let log = std::fs::File::create(self.log_path(id))?;
        let child = Command::new(&self.bin)
            .args(["meta", "--id", &id.to_string(), "--listen", &self.addr(id), "--peers", &self.peers(), "--data-dir"])
            .arg(self.data_dir(id))
            .args(&self.common)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.children[id as usize - 1] = Some(child);
        Ok(())
    }

    /// Where member `id`'s stderr goes.
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("meta-{id}.log"))
    }

    /// Waits up to `timeout` for member `id` to exit by itself; its exit status if it did.
    pub fn wait_exit(&mut self, id: u64, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let child = self.children[id as usize - 1].as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.children[id as usize - 1] = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Kills member `id` with SIGKILL: no chance to flush anything.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children[id as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id of member `id`, if it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children[id as usize - 1].as_ref().map(Child::id)
    }

    /// Whether member `id` was started and not killed since.
    pub fn is_running(&self, id: u64) -> bool {
        self.children[id as usize - 1].is_some()
    }

    /// A client of every member; use it on `self.runtime()` or another runtime it was made in.
    pub fn client(&self) -> RemoteMeta {
        let _inside = self.rt.enter();
        RemoteMeta::new(&self.addrs()).expect("addresses are valid")
    }

    /// A client of member `id` alone.
    pub fn member_client(&self, id: u64) -> RemoteMeta {
        let _inside = self.rt.enter();
        RemoteMeta::new(&[self.addr(id)]).expect("address is valid").with_deadline(Duration::from_secs(2))
    }

    /// The runtime the group's clients run on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// Member `id`'s status, if it answers.
    pub fn status(&self, id: u64) -> Option<pb::StatusResponse> {
        self.rt.block_on(self.member_client(id).status()).ok()
    }

    /// Waits until every running member names the same running leader; returns its id.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let running: Vec<u64> = self.ids().into_iter().filter(|id| self.is_running(*id)).collect();
            let leaders: BTreeSet<u64> = running.iter().filter_map(|id| self.status(*id)).map(|s| s.leader_id).collect();
            if let Some(&leader) = leaders.iter().next() {
                if leaders.len() == 1 && leader != 0 && running.contains(&leader) {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no agreed leader among running members {running:?}: they name {leaders:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The config keys under `prefix` as member `id` has applied them (no leader involved).
    pub fn local_keys(&self, id: u64, prefix: &str) -> Result<BTreeSet<String>, Status> {
        let values = self.rt.block_on(self.member_client(id).config_list(prefix, false))?;
        Ok(values.into_iter().map(|v| v.key).collect())
    }
}

impl Drop for MetaProcesses {
    fn drop(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
    }
}

/// A free TCP port on 127.0.0.1.
/// A free TCP port on 127.0.0.1 that this process has not handed out before: the kernel may
/// give the same ephemeral port to two binds in a row once the first socket is closed, and two
/// members (or two tests running in parallel) on one port make a group that never forms.
pub fn free_port() -> std::io::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

/// What a run of [`linearizability_workload`] recorded.
#[derive(Debug)]
pub struct WorkloadReport {
    /// Every operation with its call and return times.
    pub history: History,
    /// Members killed (and restarted) by the nemesis.
    pub kills: usize,
}

/// Runs `clients` threads of random gets, puts and compare-and-sets on three config keys for
/// `duration`, while a nemesis SIGKILLs a random member every ~1.2 s and restarts it after
/// 0.2–0.9 s. Operations that fail are recorded with an unknown outcome.
pub fn linearizability_workload(group: MetaProcesses, clients: usize, duration: Duration, seed: u64) -> (WorkloadReport, MetaProcesses) {
    let addrs = group.addrs();
    let group = Arc::new(Mutex::new(group));
    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (recorder, stop, addrs) = (recorder.clone(), stop.clone(), addrs.clone());
            std::thread::spawn(move || run_client(client, seed, &addrs, &recorder, &stop))
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let mut kills = 0;
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(1200));
        let victim = rng.gen_range(1..=addrs.len() as u64);
        lock(&group).kill(victim);
        kills += 1;
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..900)));
        if let Err(e) = lock(&group).start_member(victim) {
            tracing::warn!(victim, error = %e, "nemesis could not restart a member");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let group = Arc::try_unwrap(group).map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).expect("client threads are done");
    (WorkloadReport { history: recorder.history(), kills }, group)
}

fn lock(group: &Mutex<MetaProcesses>) -> std::sync::MutexGuard<'_, MetaProcesses> {
    group.lock().unwrap_or_else(|e| e.into_inner())
}

/// One client of the workload: random operations until `stop`.
fn run_client(client: usize, seed: u64, addrs: &[String], recorder: &Recorder, stop: &AtomicBool) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    let _inside = rt.enter();
    let Ok(meta) = RemoteMeta::new(addrs) else { return };
    let meta = meta.with_deadline(Duration::from_secs(5));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(client as u64));
    let mut seen = 0u64;
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("lin/{}", rng.gen_range(0..3));
        n += 1;
        let value = format!("c{client}-{n}");
        if rng.gen_range(0..3) == 0 {
            let pending = recorder.call(client, ConfigOp::Get { key: key.clone() });
            match rt.block_on(meta.config_get(&key, true)) {
                Ok(v) => {
                    seen = v.as_ref().map_or(0, |v| v.version);
                    pending.ok(ConfigOutput::Value(v.map(|v| (v.value, v.version))))
                }
                Err(_) => pending.unknown(),
            }
        } else {
            let expected = rng.gen_bool(0.5).then_some(seen);
            let pending = recorder.call(client, ConfigOp::Put { key: key.clone(), value: value.clone(), expected });
            match rt.block_on(meta.config_put(&key, &value, expected)) {
                Ok(r) if r.applied => pending.ok(ConfigOutput::PutOk { version: r.version }),
                Ok(r) => pending.ok(ConfigOutput::Conflict { current: r.version }),
                Err(_) => pending.unknown(),
            }
        }
    }
}
