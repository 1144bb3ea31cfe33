//! The meta Raft group as real `grape meta` processes on loopback: leader failover under a
//! committing client, restarts, and a linearizability check of the versioned config while a
//! nemesis kills and restarts members.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grape_meta::linearizability::{check, ConfigOp, ConfigOutput, Recorder, Verdict, DEFAULT_MAX_STEPS};
use grape_meta::service::remote::Retry;
use grape_meta::service::RemoteMeta;
use grape_proto::meta::v1 as pb;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::harness::{free_port, grape_bin};

/// A group of `grape meta` processes; all killed when dropped.
struct MetaCluster {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl MetaCluster {
    /// Starts `n` members (ids 1..=n) and waits until they agree on a leader.
    fn start(n: usize) -> MetaCluster {
        let ports = (0..n).map(|_| free_port()).collect();
        let mut cluster = MetaCluster { dir: tempfile::tempdir().unwrap(), ports, children: (0..n).map(|_| None).collect() };
        for id in 1..=n as u64 {
            cluster.start_member(id);
        }
        cluster.wait_for_leader();
        cluster
    }

    fn peers(&self) -> String {
        self.ports.iter().enumerate().map(|(i, p)| format!("{}=127.0.0.1:{p}", i + 1)).collect::<Vec<_>>().join(",")
    }

    fn addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.ports[id as usize - 1])
    }

    /// Every member's address, comma-separated, as `--endpoint` takes them.
    fn endpoints(&self) -> String {
        (1..=self.ports.len() as u64).map(|id| self.addr(id)).collect::<Vec<_>>().join(",")
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("meta-{id}"))
    }

    fn start_member(&mut self, id: u64) {
        let child = Command::new(grape_bin())
            .args(["meta", "--id", &id.to_string(), "--listen", &self.addr(id), "--peers", &self.peers(), "--data-dir"])
            .arg(self.data_dir(id))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn grape meta");
        self.children[id as usize - 1] = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.children[id as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `grape status --output json` against one member.
    fn status(&self, id: u64) -> Option<Value> {
        let out = Command::new(grape_bin()).args(["--endpoint", &self.addr(id), "status", "--output", "json"]).output().ok()?;
        out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
    }

    /// Waits until every running member names the same live leader; returns its id.
    fn wait_for_leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let running: Vec<u64> = (1..=self.ports.len() as u64).filter(|id| self.children[*id as usize - 1].is_some()).collect();
            let leaders: BTreeSet<u64> =
                running.iter().filter_map(|id| self.status(*id)).map(|s| s["meta_leader_id"].as_u64().unwrap_or(0)).collect();
            if let Some(&leader) = leaders.iter().next() {
                if leaders.len() == 1 && leader != 0 && running.contains(&leader) {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader among {running:?}: {leaders:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client of every member, for use on `rt`.
    fn client(&self, rt: &tokio::runtime::Runtime) -> RemoteMeta {
        let _inside = rt.enter();
        let addrs: Vec<String> = self.endpoints().split(',').map(String::from).collect();
        RemoteMeta::new(&addrs).expect("meta client")
    }

    /// The config keys under `prefix` as one member has applied them (no leader involved).
    fn local_keys(&self, id: u64, prefix: &str, rt: &tokio::runtime::Runtime) -> BTreeSet<String> {
        let _inside = rt.enter();
        let member = RemoteMeta::new(&[self.addr(id)]).expect("member client");
        let req = pb::ConfigListRequest { prefix: prefix.to_string(), linearizable: false };
        let reply = rt
            .block_on(member.call(Retry::Always, |mut c| {
                let r = req.clone();
                async move { c.config_list(r).await }
            }))
            .expect("list keys");
        reply.values.into_iter().map(|v| v.key).collect()
    }

    /// Waits until member `id` holds every key in `keys`.
    fn wait_until_member_has(&self, id: u64, keys: &BTreeSet<String>, rt: &tokio::runtime::Runtime) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let have = self.local_keys(id, "k/", rt);
            let missing: Vec<&String> = keys.difference(&have).collect();
            if missing.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "member {id} lacks {} acknowledged keys, e.g. {:?}", missing.len(), missing.first());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for MetaCluster {
    fn drop(&mut self) {
        for id in 1..=self.ports.len() as u64 {
            self.kill(id);
        }
    }
}

/// One config put through the group; `Ok(true)` if acknowledged.
async fn put(meta: &RemoteMeta, key: &str, value: &str, expected: Option<u64>) -> Result<pb::ConfigPutResponse, tonic::Status> {
    let req = pb::ConfigPutRequest { key: key.to_string(), value: value.to_string(), expected_version: expected };
    meta.call(Retry::IfNotApplied, |mut c| {
        let r = req.clone();
        async move { c.config_put(r).await }
    })
    .await
}

/// The leader is killed while a client commits in a loop: a new leader is elected, every
/// acknowledged commit is on every member, the killed member catches up after a restart, and
/// a restart of all members at once loses nothing.
#[test]
fn leader_killed_while_committing_loses_no_acknowledged_write() {
    let mut cluster = MetaCluster::start(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let meta = cluster.client(&rt);
    let mut acked = BTreeSet::new();
    let mut killed = None;
    for i in 0..300u32 {
        if i == 100 {
            let leader = cluster.wait_for_leader();
            cluster.kill(leader);
            killed = Some(leader);
        }
        let key = format!("k/{i:04}");
        if rt.block_on(put(&meta, &key, &i.to_string(), None)).is_ok() {
            acked.insert(key);
        }
    }
    let killed = killed.expect("a leader was killed");
    assert!(acked.len() >= 290, "only {} of 300 commits were acknowledged around one leader kill", acked.len());
    let new_leader = cluster.wait_for_leader();
    assert_ne!(new_leader, killed, "a new leader was elected");
    for id in (1..=3).filter(|id| *id != killed) {
        cluster.wait_until_member_has(id, &acked, &rt);
    }

    cluster.start_member(killed);
    cluster.wait_until_member_has(killed, &acked, &rt);

    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.start_member(id);
    }
    cluster.wait_for_leader();
    for id in 1..=3 {
        cluster.wait_until_member_has(id, &acked, &rt);
    }
    let after = rt.block_on(put(&meta, "k/after-restart", "x", None)).expect("commit after restarting every member");
    assert_eq!(after.version, 1);
}

/// Concurrent clients get, put and compare-and-set config keys while a nemesis SIGKILLs and
/// restarts random members; the recorded history must be linearizable.
#[test]
fn config_is_linearizable_while_members_are_killed_and_restarted() {
    let cluster = Arc::new(std::sync::Mutex::new(MetaCluster::start(3)));
    let endpoints = cluster.lock().unwrap().endpoints();
    let recorder = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let run_for = Duration::from_secs(12);

    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (recorder, stop, endpoints) = (recorder.clone(), stop.clone(), endpoints.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let addrs: Vec<String> = endpoints.split(',').map(String::from).collect();
                let _inside = rt.enter();
                let meta = RemoteMeta::new(&addrs).unwrap().with_deadline(Duration::from_secs(5));
                let mut rng = rand::rngs::StdRng::seed_from_u64(client as u64);
                let mut seen = 0u64;
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("lin/{}", rng.gen_range(0..3));
                    n += 1;
                    let value = format!("c{client}-{n}");
                    match rng.gen_range(0..3) {
                        0 => {
                            let pending = recorder.call(client, ConfigOp::Get { key: key.clone() });
                            let req = pb::ConfigGetRequest { key, linearizable: true };
                            let reply = rt.block_on(meta.call(Retry::Always, |mut c| {
                                let r = req.clone();
                                async move { c.config_get(r).await }
                            }));
                            match reply {
                                Ok(r) => {
                                    seen = r.value.as_ref().map_or(0, |v| v.version);
                                    pending.ok(ConfigOutput::Value(r.value.map(|v| (v.value, v.version))))
                                }
                                Err(_) => pending.unknown(),
                            }
                        }
                        op => {
                            let expected = (op == 2).then_some(seen);
                            let pending = recorder.call(client, ConfigOp::Put { key: key.clone(), value: value.clone(), expected });
                            match rt.block_on(put(&meta, &key, &value, expected)) {
                                Ok(r) if r.applied => pending.ok(ConfigOutput::PutOk { version: r.version }),
                                Ok(r) => pending.ok(ConfigOutput::Conflict { current: r.version }),
                                Err(_) => pending.unknown(),
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut kills = 0;
    while started.elapsed() < run_for {
        std::thread::sleep(Duration::from_millis(1200));
        let victim = rng.gen_range(1..=3u64);
        cluster.lock().unwrap().kill(victim);
        kills += 1;
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..900)));
        cluster.lock().unwrap().start_member(victim);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let history = recorder.history();
    assert!(history.len() > 200, "too few operations to mean anything: {}", history.len());
    let unknown = history.operations().iter().filter(|op| matches!(op.outcome, grape_meta::linearizability::Outcome::Unknown)).count();
    eprintln!("linearizability: {} operations ({unknown} with unknown outcome), {kills} member kills", history.len());
    match check(&history, DEFAULT_MAX_STEPS) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, explanation } => panic!("{kills} kills: key {key} is not linearizable:\n{explanation}"),
        Verdict::Unknown { key } => panic!("the checker ran out of budget on key {key}"),
    }
}

/// The watch stream sends every change in log order; a client that reconnects to another
/// member with its last index gets exactly the changes it has not seen, and applying them
/// gives the same catalog as the group's.
#[test]
fn watch_resumes_on_another_member_without_missing_or_repeating_a_change() {
    use futures::StreamExt;
    use grape_meta::{apply::apply, Catalog, Command};

    let cluster = MetaCluster::start(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let meta = cluster.client(&rt);
    let _inside = rt.enter();
    let watch_on = |id: u64, after: u64| {
        let member = RemoteMeta::new(&[cluster.addr(id)]).expect("member client");
        rt.block_on(member.call(Retry::Always, |mut c| async move { c.watch(pb::WatchRequest { after_index: after }).await }))
            .expect("open watch")
    };
    let mut catalog = Catalog::default();
    let mut last = 0u64;
    let follow = |event: pb::WatchEvent, catalog: &mut Catalog, last: &mut u64| {
        assert!(event.index > *last, "index {} after {last}: events go forward, none repeats", event.index);
        *last = event.index;
        if event.catalog_json.is_empty() {
            let cmd: Command = serde_json::from_str(&event.command_json).expect("command json");
            apply(catalog, &cmd);
        } else {
            *catalog = serde_json::from_str(&event.catalog_json).expect("catalog json");
        }
    };

    rt.block_on(put(&meta, "w/a", "1", None)).expect("put");
    let mut stream = watch_on(2, 0);
    let first = rt.block_on(stream.next()).expect("an event").expect("ok");
    assert!(!first.catalog_json.is_empty(), "a watch from nothing starts with the catalog");
    follow(first, &mut catalog, &mut last);
    for i in 0..5 {
        rt.block_on(put(&meta, &format!("w/{i}"), "x", None)).expect("put");
    }
    while catalog.config.list("w/").count() < 6 {
        let event = rt.block_on(stream.next()).expect("an event").expect("ok");
        assert!(event.catalog_json.is_empty(), "changes come one by one");
        follow(event, &mut catalog, &mut last);
    }
    drop(stream);

    for i in 5..8 {
        rt.block_on(put(&meta, &format!("w/{i}"), "y", None)).expect("put");
    }
    let mut resumed = watch_on(3, last);
    for _ in 5..8 {
        let event = rt.block_on(resumed.next()).expect("an event").expect("ok");
        assert!(event.catalog_json.is_empty(), "a resumed watch sends only the missed changes");
        follow(event, &mut catalog, &mut last);
    }
    let reply = rt
        .block_on(meta.call(Retry::Always, |mut c| async move { c.read_catalog(pb::ReadCatalogRequest { linearizable: true }).await }))
        .expect("read catalog");
    let group: Catalog = serde_json::from_str(&reply.catalog_json).expect("catalog json");
    assert_eq!(catalog, group, "the watcher's copy equals the group's catalog");
}
