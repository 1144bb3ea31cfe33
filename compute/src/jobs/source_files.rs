//! Server-side ingest: Parquet files already in object storage (`s3://bucket/dir/*.parquet`,
//! `file:///dir/part-?.parquet`), read by the worker and upserted in one fenced commit, so a
//! worker killed midway leaves only orphan objects and the next attempt lands the rows once.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use grape_storage::{Storage, StorageOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Attempt, Done};
use crate::error::ComputeError;
use crate::gateway::Gateway;

/// Rows staged together as one set of segments (one per shard).
const STAGE_ROWS: usize = 262_144;

/// Rows per batch decoded from Parquet.
const DECODE_BATCH_ROWS: usize = 65_536;

/// One file to read: the store of its directory and its name there.
pub struct SourceFile {
    /// The directory's storage.
    pub dir: Storage,
    /// The file's name in it.
    pub name: String,
    /// The URL, as shown in errors and progress.
    pub url: String,
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters and `?` for
/// one character (no other syntax).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic wildcard matching with one backtrack point for the last `*`.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The files `urls` name, globs in the last path part expanded (in name order). A URL must be
/// `s3://…` or `file://…`; a glob that matches nothing is an error, so a typo never ingests
/// nothing quietly.
pub async fn expand_urls(urls: &[String], options: &StorageOptions) -> Result<Vec<SourceFile>, ComputeError> {
    if urls.is_empty() {
        return Err(ComputeError::InvalidArgument("an ingest job needs at least one file URL".into()));
    }
    let mut files = Vec::new();
    for url in urls {
        if !(url.starts_with("s3://") || url.starts_with("file://")) {
            return Err(ComputeError::InvalidArgument(format!(
                "\"{url}\" is not a URL of object storage: give s3://bucket/path or file:///path"
            )));
        }
        let (dir_url, pattern) = url
            .rsplit_once('/')
            .filter(|(_, p)| !p.is_empty())
            .ok_or_else(|| ComputeError::InvalidArgument(format!("\"{url}\" names a directory; name files, e.g. {url}/*.parquet")))?;
        let dir = Storage::from_url_with_options(dir_url, options)
            .map_err(|e| ComputeError::InvalidArgument(format!("cannot open \"{dir_url}\": {e}")))?;
        if !pattern.contains(['*', '?']) {
            files.push(SourceFile { dir, name: pattern.to_string(), url: url.clone() });
            continue;
        }
        let listed = dir.list("").await.map_err(|e| e.add_context(format!("list {dir_url}")))?;
        let matched: Vec<String> =
            listed.into_iter().map(|(path, _)| path).filter(|p| !p.contains('/') && glob_match(pattern, p)).collect();
        if matched.is_empty() {
            return Err(ComputeError::InvalidArgument(format!("\"{url}\" matches no file")));
        }
        files.extend(matched.into_iter().map(|name| SourceFile { url: format!("{dir_url}/{name}"), dir: dir.clone(), name }));
    }
    Ok(files)
}

/// Decodes a whole Parquet file.
fn decode_parquet(bytes: Bytes, url: &str) -> Result<(SchemaRef, Vec<RecordBatch>), ComputeError> {
    let bad = |e: &dyn std::fmt::Display| ComputeError::InvalidArgument(format!("{url} is not a readable Parquet file: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| bad(&e))?;
    let schema = builder.schema().clone();
    let reader = builder.with_batch_size(DECODE_BATCH_ROWS).build().map_err(|e| bad(&e))?;
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
    Ok((schema, batches))
}

impl Gateway {
    /// Runs a server-side ingest of `urls` into `collection` for `attempt`.
    pub(super) async fn ingest_files(&self, collection: &str, urls: &[String], attempt: &Attempt) -> Result<Done, ComputeError> {
        let files = expand_urls(urls, self.storage.options()).await?;
        let mut job = self.begin_ingest(collection).await?;
        job.fence = Some(attempt.fence);
        let total = files.len() as u64;
        for (i, file) in files.iter().enumerate() {
            let bytes = file.dir.get(&file.name).await.map_err(|e| e.add_context(format!("read {}", file.url)))?;
            let url = file.url.clone();
            let (schema, batches) = tokio::task::spawn_blocking(move || decode_parquet(bytes, &url))
                .await
                .map_err(|e| ComputeError::Internal(format!("parquet decoding task: {e}")))??;
            let mut pending: Vec<RecordBatch> = Vec::new();
            for batch in batches {
                pending.push(batch);
                if pending.iter().map(RecordBatch::num_rows).sum::<usize>() >= STAGE_ROWS {
                    self.stage_batches(&mut job, &schema, &std::mem::take(&mut pending)).await?;
                }
            }
            if !pending.is_empty() {
                self.stage_batches(&mut job, &schema, &pending).await?;
            }
            attempt.report(i as u64 + 1, total);
            attempt.pause().await;
        }
        if job.segments() == 0 {
            return Ok(Done::Report(format!("{total} files held no rows; nothing was committed")));
        }
        self.commit_ingest(job).await?;
        Ok(Done::Committed)
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn wildcards() {
        assert!(glob_match("*.parquet", "a.parquet"));
        assert!(glob_match("part-?.parquet", "part-1.parquet"));
        assert!(!glob_match("part-?.parquet", "part-12.parquet"));
        assert!(glob_match("p*t*-*.parquet", "part-12.parquet"));
        assert!(!glob_match("*.parquet", "a.parquet.tmp"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }
}
