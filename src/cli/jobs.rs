//! `grape jobs …` and following a job to its end (`grape collection compact --wait`,
//! `grape ingest URL…`).

use std::time::Duration;

use grape_proto::v1;
use serde_json::{json, Value};

use super::client::Client;
use super::ingest::progress_bar;
use super::output::print_object;
use super::{JobsCommand, OutputFormat};
use crate::error::CliError;

/// How often a followed job is polled.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Runs a `grape jobs` command.
pub async fn run(client: &mut Client, format: OutputFormat, cmd: JobsCommand) -> Result<(), CliError> {
    match cmd {
        JobsCommand::List { state, limit } => {
            let req = v1::ListJobsRequest { state: state.unwrap_or_default(), limit };
            print_jobs(format, &client.list_jobs(req).await?.into_inner().jobs);
        }
        JobsCommand::Show { id } => print_object(format, &job_json(&client.get_job(v1::GetJobRequest { id }).await?.into_inner())),
        JobsCommand::Retry { id } => print_object(format, &job_json(&client.retry_job(v1::GetJobRequest { id }).await?.into_inner())),
        JobsCommand::Cancel { id } => print_object(format, &job_json(&client.cancel_job(v1::GetJobRequest { id }).await?.into_inner())),
    }
    Ok(())
}

/// A job as JSON (and as `grape jobs show` prints it).
pub fn job_json(job: &v1::Job) -> Value {
    let params: Value = serde_json::from_str(&job.params_json).unwrap_or(Value::String(job.params_json.clone()));
    json!({
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "collection": job.collection,
        "params": params,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "worker": job.worker,
        "lease_expires_ms": job.lease_expires_ms,
        "progress": format!("{}/{}", job.progress_done, job.progress_total),
        "created_ms": job.created_ms,
        "updated_ms": job.updated_ms,
        "not_before_ms": job.not_before_ms,
        "last_error": job.last_error,
        "summary": job.summary,
    })
}

/// Prints jobs as a table, or a JSON array.
pub fn print_jobs(format: OutputFormat, jobs: &[v1::Job]) {
    match format {
        OutputFormat::Json => println!("{}", Value::Array(jobs.iter().map(job_json).collect())),
        OutputFormat::Table => {
            println!("{:>6} {:<11} {:<10} {:<16} {:>7} {:>11}  {}", "id", "kind", "state", "collection", "attempt", "progress", "note");
            for j in jobs {
                let note = if j.state == "succeeded" { &j.summary } else { &j.last_error };
                let progress = format!("{}/{}", j.progress_done, j.progress_total);
                let attempt = format!("{}/{}", j.attempt, j.max_attempts);
                println!("{:>6} {:<11} {:<10} {:<16} {:>7} {:>11}  {}", j.id, j.kind, j.state, j.collection, attempt, progress, note);
            }
        }
    }
}

/// Whether a job has reached a state it does not leave by itself.
fn finished(job: &v1::Job) -> bool {
    matches!(job.state.as_str(), "succeeded" | "dead" | "cancelled")
}

/// Polls `ids` until every one has finished, drawing their summed progress on stderr; fails
/// if any ends dead or cancelled (with its last error).
pub async fn follow(client: &mut Client, ids: &[u64], units: &str) -> Result<Vec<v1::Job>, CliError> {
    loop {
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            jobs.push(client.get_job(v1::GetJobRequest { id: *id }).await?.into_inner());
        }
        let (done, total) = jobs.iter().fold((0, 0), |(d, t), j| (d + j.progress_done, t + j.progress_total));
        progress_bar(done, total, units);
        if jobs.iter().all(finished) {
            eprintln!();
            if let Some(bad) = jobs.iter().find(|j| j.state != "succeeded") {
                return Err(CliError::Server(format!("job {} is {}: {}", bad.id, bad.state, bad.last_error)));
            }
            return Ok(jobs);
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}
