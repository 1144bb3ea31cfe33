//! The meta Raft group as real `grape meta` processes on loopback: leader failover under a
//! committing client, restarts, the watch stream, and a linearizability check of the versioned
//! config while a nemesis kills and restarts members (`grape_meta::testing`; `grape-bench
//! meta` runs the long version).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use grape_meta::linearizability::{check, Outcome, Verdict, DEFAULT_MAX_STEPS};
use grape_meta::service::remote::Retry;
use grape_meta::testing::{linearizability_workload, MetaProcesses};
use grape_meta::{apply::apply, Catalog, Command};
use grape_proto::meta::v1 as pb;

use crate::harness::grape_bin;

fn start(n: usize) -> MetaProcesses {
    MetaProcesses::start(Path::new(grape_bin()), n).expect("start grape meta processes")
}

/// Waits until member `id` holds every key in `keys`.
fn wait_until_member_has(group: &MetaProcesses, id: u64, keys: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let have = group.local_keys(id, "k/").unwrap_or_default();
        let missing: Vec<&String> = keys.difference(&have).collect();
        if missing.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "member {id} lacks {} acknowledged keys, e.g. {:?}", missing.len(), missing.first());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The leader is killed while a client commits in a loop: a new leader is elected, every
/// acknowledged commit is on every member, the killed member catches up after a restart, and
/// a restart of all members at once loses nothing.
#[test]
fn leader_killed_while_committing_loses_no_acknowledged_write() {
    let mut group = start(3);
    let meta = group.client();
    let mut acked = BTreeSet::new();
    let mut killed = None;
    for i in 0..300u32 {
        if i == 100 {
            let leader = group.wait_for_leader(Duration::from_secs(10)).expect("leader");
            group.kill(leader);
            killed = Some(leader);
        }
        let key = format!("k/{i:04}");
        if group.runtime().block_on(meta.config_put(&key, &i.to_string(), None)).is_ok() {
            acked.insert(key);
        }
    }
    let killed = killed.expect("a leader was killed");
    assert!(acked.len() >= 290, "only {} of 300 commits were acknowledged around one leader kill", acked.len());
    let new_leader = group.wait_for_leader(Duration::from_secs(10)).expect("new leader");
    assert_ne!(new_leader, killed, "a new leader was elected");
    for id in group.ids().into_iter().filter(|id| *id != killed) {
        wait_until_member_has(&group, id, &acked);
    }

    group.start_member(killed).expect("restart");
    wait_until_member_has(&group, killed, &acked);

    for id in group.ids() {
        group.kill(id);
    }
    for id in group.ids() {
        group.start_member(id).expect("restart");
    }
    group.wait_for_leader(Duration::from_secs(30)).expect("leader after restarting everything");
    for id in group.ids() {
        wait_until_member_has(&group, id, &acked);
    }
    let after = group.runtime().block_on(meta.config_put("k/after-restart", "x", None)).expect("commit after restarting every member");
    assert_eq!(after.version, 1);
}

/// Concurrent clients get, put and compare-and-set config keys while a nemesis SIGKILLs and
/// restarts random members; the recorded history must be linearizable.
#[test]
fn config_is_linearizable_while_members_are_killed_and_restarted() {
    let (report, _group) = linearizability_workload(start(3), 4, Duration::from_secs(12), 7);
    let history = &report.history;
    let unknown = history.operations().iter().filter(|op| matches!(op.outcome, Outcome::Unknown)).count();
    eprintln!("linearizability: {} operations ({unknown} with unknown outcome), {} member kills", history.len(), report.kills);
    assert!(history.len() > 200, "too few operations to mean anything: {}", history.len());
    match check(history, DEFAULT_MAX_STEPS) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, explanation } => panic!("key {key} is not linearizable:\n{explanation}"),
        Verdict::Unknown { key } => panic!("the checker ran out of budget on key {key}"),
    }
}

/// The watch stream sends every change in log order; a client that reconnects to another
/// member with its last index gets exactly the changes it has not seen, and applying them
/// gives the same catalog as the group's.
#[test]
fn watch_resumes_on_another_member_without_missing_or_repeating_a_change() {
    let group = start(3);
    let rt = group.runtime();
    let meta = group.client();
    let watch_on = |id: u64, after: u64| {
        let member = group.member_client(id);
        rt.block_on(member.call(Retry::Always, |mut c| async move { c.watch(pb::WatchRequest { after_index: after }).await }))
            .expect("open watch")
    };
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
    let (mut catalog, mut last) = (Catalog::default(), 0u64);

    rt.block_on(meta.config_put("w/a", "1", None)).expect("put");
    let mut stream = watch_on(2, 0);
    let first = rt.block_on(stream.next()).expect("an event").expect("ok");
    assert!(!first.catalog_json.is_empty(), "a watch from nothing starts with the catalog");
    follow(first, &mut catalog, &mut last);
    for i in 0..5 {
        rt.block_on(meta.config_put(&format!("w/{i}"), "x", None)).expect("put");
    }
    while catalog.config.list("w/").count() < 6 {
        let event = rt.block_on(stream.next()).expect("an event").expect("ok");
        assert!(event.catalog_json.is_empty(), "changes come one by one");
        follow(event, &mut catalog, &mut last);
    }
    drop(stream);

    for i in 5..8 {
        rt.block_on(meta.config_put(&format!("w/{i}"), "y", None)).expect("put");
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
    let group_catalog: Catalog = serde_json::from_str(&reply.catalog_json).expect("catalog json");
    assert_eq!(catalog, group_catalog, "the watcher's copy equals the group's catalog");
}

/// A member whose data directory was wiped does not take its old place (the lowest id would
/// otherwise initialise a second group): it refuses to start, and rejoins only when removed,
/// started with `--join` and added back with add-meta.
#[test]
fn a_wiped_member_rejoins_only_through_add_meta() {
    let mut group = start(3);
    let meta = group.client();
    let keys: BTreeSet<String> = (0..20).map(|i| format!("k/{i:02}")).collect();
    for k in &keys {
        group.runtime().block_on(meta.config_put(k, "v", None)).expect("put");
    }
    group.kill(1);
    std::fs::remove_dir_all(group.data_dir(1)).expect("wipe member 1");
    group.start_member(1).expect("start");
    let exit = group.wait_exit(1, Duration::from_secs(20)).expect("a wiped member refuses to start");
    assert!(!exit.success());
    let log = std::fs::read_to_string(group.log_path(1)).unwrap_or_default();
    assert!(log.contains("empty data directory") && log.contains("add-meta"), "{log}");

    let endpoints = group.addrs().join(",");
    let grape = |args: &[&str]| {
        let out = std::process::Command::new(grape_bin()).args(["--endpoint", &endpoints]).args(args).output().unwrap();
        assert!(out.status.success(), "grape {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    grape(&["cluster", "remove-meta", "1"]);
    group.start_member_with(1, &["--join"]).expect("start joining");
    grape(&["cluster", "add-meta", "1", &group.addr(1)]);
    wait_until_member_has(&group, 1, &keys);
    let status = group.status(1).expect("member 1 answers");
    assert!(status.members.iter().any(|m| m.id == 1 && m.voter), "member 1 votes again: {:?}", status.members);
}
