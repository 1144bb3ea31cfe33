//! `meta`: the meta Raft group as real `grape meta` processes on loopback. Measures commit
//! latency (one client, and many concurrent), the time from a leader's SIGKILL to the next
//! successful commit over repeated kills, and runs the long linearizability check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use grape_meta::linearizability::{check, Outcome, Verdict, DEFAULT_MAX_STEPS};
use grape_meta::service::RemoteMeta;
use grape_meta::testing::{linearizability_workload, MetaProcesses};
use serde_json::json;

use crate::report::{percentile, report, Row};

/// Options of the scenario.
#[derive(Debug, Args)]
pub struct Options {
    /// Members of the group.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Commits per latency measurement.
    #[arg(long, default_value_t = 2000)]
    commits: usize,
    /// Concurrent clients of the second latency measurement.
    #[arg(long, default_value_t = 16)]
    concurrent: usize,
    /// Leader kills to time.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// Seconds of the linearizability workload (0 skips it).
    #[arg(long, default_value_t = 60)]
    linearizability_secs: u64,
    /// The `grape` binary (default: beside this benchmark's binary; build it with
    /// `cargo build --release --workspace`).
    #[arg(long)]
    grape: Option<PathBuf>,
    /// Where to write the JSON result.
    #[arg(long, default_value = "bench/results/meta.json")]
    out: PathBuf,
}

/// Runs the scenario.
pub fn run(o: Options) -> Result<(), Box<dyn std::error::Error>> {
    let bin = super::grape_binary(o.grape.as_deref())?;
    let mut group = MetaProcesses::start(&bin, o.members)?;
    let meta = Arc::new(group.client());

    let one = commit_latencies(&group, &meta, o.commits, 1)?;
    let many = commit_latencies(&group, &meta, o.commits, o.concurrent)?;
    let failovers = time_failovers(&mut group, &meta, o.kills)?;

    let mut rows = vec![
        Row::new("commit p50, 1 client", percentile(&one.0, 0.5), "ms"),
        Row::new("commit p99, 1 client", percentile(&one.0, 0.99), "ms"),
        Row::new("commits/s, 1 client", one.1, "1/s"),
        Row::new(format!("commit p50, {} clients", o.concurrent), percentile(&many.0, 0.5), "ms"),
        Row::new(format!("commit p99, {} clients", o.concurrent), percentile(&many.0, 0.99), "ms"),
        Row::new(format!("commits/s, {} clients", o.concurrent), many.1, "1/s"),
        Row::new("leader kill -> commit, min", percentile(&failovers, 0.0), "ms"),
        Row::new("leader kill -> commit, p50", percentile(&failovers, 0.5), "ms"),
        Row::new("leader kill -> commit, max", percentile(&failovers, 1.0), "ms"),
    ];
    let mut verdict = "skipped".to_string();
    if o.linearizability_secs > 0 {
        let (run, _group) = linearizability_workload(group, 4, Duration::from_secs(o.linearizability_secs), 11);
        let unknown = run.history.operations().iter().filter(|op| matches!(op.outcome, Outcome::Unknown)).count();
        let t = Instant::now();
        verdict = match check(&run.history, DEFAULT_MAX_STEPS) {
            Verdict::Linearizable => "linearizable".into(),
            Verdict::NotLinearizable { key, explanation } => format!("NOT linearizable on {key}: {explanation}"),
            Verdict::Unknown { key } => format!("unknown (checker budget exhausted on {key})"),
        };
        rows.push(Row::new("linearizability: operations", run.history.len() as f64, "ops"));
        rows.push(Row::new("linearizability: unknown outcomes", unknown as f64, "ops"));
        rows.push(Row::new("linearizability: member kills", run.kills as f64, "kills"));
        rows.push(Row::new("linearizability: check time", t.elapsed().as_secs_f64(), "s"));
    }
    let params = json!({
        "members": o.members, "commits": o.commits, "concurrent": o.concurrent, "kills": o.kills,
        "linearizability_secs": o.linearizability_secs, "linearizability": verdict,
        "failover_ms": failovers,
    });
    report("meta", params, &rows, &o.out)?;
    println!("linearizability: {verdict}");
    Ok(())
}

/// Latencies (ms, sorted) of `commits` config puts spread over `clients` concurrent clients,
/// and the commits per second they reached.
fn commit_latencies(
    group: &MetaProcesses,
    meta: &Arc<RemoteMeta>,
    commits: usize,
    clients: usize,
) -> Result<(Vec<f64>, f64), Box<dyn std::error::Error>> {
    let per_client = commits.div_ceil(clients);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let meta = meta.clone();
            group.runtime().spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let t = Instant::now();
                    meta.config_put(&format!("bench/{c}/{}", i % 64), "v", None).await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok::<_, tonic::Status>(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(commits);
    for task in tasks {
        all.extend(group.runtime().block_on(task)??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok((all, rate))
}

/// Kills the leader `kills` times; each time, the milliseconds until a commit succeeds again.
fn time_failovers(group: &mut MetaProcesses, meta: &RemoteMeta, kills: usize) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let mut times = Vec::with_capacity(kills);
    for k in 0..kills {
        let leader = group.wait_for_leader(Duration::from_secs(30))?;
        let t = Instant::now();
        group.kill(leader);
        loop {
            if group.runtime().block_on(meta.config_put("bench/failover", &k.to_string(), None)).is_ok() {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err("no commit within 60 s of a leader kill".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
        group.start_member(leader)?;
        group.wait_for_leader(Duration::from_secs(30))?;
        // Let the restarted member catch up before the next kill.
        std::thread::sleep(Duration::from_millis(500));
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}
