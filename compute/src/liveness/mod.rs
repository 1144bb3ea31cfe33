//! Which rows of a segment are live at a collection version: ids as keys.
//!
//! Every segment and delete log of a shard has a sequence number, assigned by meta at commit
//! (see [`grape_storage::format::commit_seq`]). A row of segment `S` is live at version `V`
//! unless a *source* of the same shard (another segment, or a delete log) with
//! `S.seq < seq ≤ max_seq(V)` holds its key: a newer segment replaced it (upsert), a newer
//! delete log deleted it. Writers keep one row per key within a segment, so the rule needs
//! nothing else, and concurrent writers need no coordination: the Raft log orders them.
//!
//! A node resolves this for the segments it holds from the *keys* of the newer sources only
//! (a keys file per segment, or the delete log itself), never their rows, so a shard's
//! segments can stay spread over many nodes. Keys read from storage are cached per object;
//! each segment keeps the live mask of the last version asked for and brings it forward by
//! applying only the sources committed since, so a stream of small upserts costs a few hash
//! lookups per read rather than a pass over the segment.
//!
//! # Layout
//! - `mod.rs`: [`LiveSegment`], [`VersionSources`], [`live_segments`] and the per-segment mask
//!   cache.
//! - `keys.rs`: [`RowIndex`] (key → row of one segment) and the engine's cache of sources' keys.

mod keys;

use std::sync::Mutex;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::buffer::BooleanBuffer;
use grape_meta::catalog::{Collection, ShardManifest};
use grape_storage::format::max_seq;

pub use keys::{KeyCache, RowIndex};

use crate::error::ComputeError;
use crate::segment::SegmentRef;

/// A segment as one read sees it: its rows, and which of them are live at the read's version
/// (`None`: all of them).
#[derive(Debug, Clone)]
pub struct LiveSegment {
    /// The loaded segment.
    pub segment: SegmentRef,
    /// Live rows; `None` when no row of the segment was replaced or deleted.
    pub live: Option<BooleanArray>,
}

impl LiveSegment {
    /// A segment none of whose rows are replaced or deleted.
    pub fn all(segment: SegmentRef) -> Self {
        LiveSegment { segment, live: None }
    }

    /// Rows that are live and pass `mask` (if any): what a read may return.
    pub fn visible(&self, mask: Option<BooleanArray>) -> Result<Option<BooleanArray>, ComputeError> {
        Ok(match (mask, &self.live) {
            (None, live) => live.clone(),
            (Some(mask), None) => Some(mask),
            (Some(mask), Some(live)) => {
                // A null in the filter's answer (unknown) does not select the row.
                let mask = if mask.null_count() > 0 { arrow::compute::prep_null_mask_filter(&mask) } else { mask };
                Some(arrow::compute::and(&mask, live)?)
            }
        })
    }
}

/// The live mask a segment computed last: at which source it stops, and the mask.
#[derive(Debug, Clone)]
pub struct MaskCache {
    /// The highest `seq` of the sources applied (the segment's own `seq` if none).
    upto: u64,
    /// Live rows after applying them.
    live: BooleanBuffer,
}

/// The last live mask of one segment, shared by the reads of that segment.
#[derive(Debug, Default)]
pub struct SegmentLiveness {
    index: std::sync::OnceLock<Result<RowIndex, String>>,
    last: Mutex<Option<MaskCache>>,
}

impl SegmentLiveness {
    fn row_index(&self, segment: &SegmentRef) -> Result<&RowIndex, ComputeError> {
        self.index
            .get_or_init(|| RowIndex::build(segment.ids()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ComputeError::Corrupt(format!("segment {}: {e}", segment.meta.path)))
    }
}

/// A source whose keys override older rows: its sequence number, and which entry of its
/// shard's manifest it is (an index, so listing sources copies nothing from the catalog).
#[derive(Debug, Clone, Copy)]
struct Source {
    seq: u64,
    at: SourceAt,
}

/// An entry of a shard manifest, by position.
#[derive(Debug, Clone, Copy)]
enum SourceAt {
    /// `segments[i]`.
    Segment(usize),
    /// `delete_logs[i]`.
    DeleteLog(usize),
}

impl SourceAt {
    /// Where the keys of this entry of `shard` are.
    fn keys<'a>(self, shard: &'a ShardManifest) -> Result<keys::KeysAt<'a>, ComputeError> {
        let missing = || ComputeError::Internal("a source is not in the manifest it was listed from".into());
        Ok(match self {
            SourceAt::Segment(i) => keys::KeysAt::Segment(shard.segments.get(i).ok_or_else(missing)?),
            SourceAt::DeleteLog(i) => keys::KeysAt::DeleteLog(shard.delete_logs.get(i).ok_or_else(missing)?),
        })
    }
}

/// The sources of `shard` visible at `version`, oldest first.
fn shard_sources(shard: &ShardManifest, version: u64) -> Vec<Source> {
    let horizon = max_seq(version);
    let segments = shard.segments.iter().enumerate().map(|(i, s)| Source { seq: s.seq, at: SourceAt::Segment(i) });
    let deletes = shard.delete_logs.iter().enumerate().map(|(i, d)| Source { seq: d.seq, at: SourceAt::DeleteLog(i) });
    let mut sources: Vec<Source> = segments.chain(deletes).filter(|s| s.seq <= horizon).collect();
    sources.sort_by_key(|s| s.seq);
    sources
}

/// The sources of every shard of a collection visible at one version, listed once for all
/// the segments one read touches (listing them per segment would cost the square of the
/// segment count).
#[derive(Debug, Clone)]
pub struct VersionSources {
    by_shard: Vec<Vec<Source>>,
}

impl VersionSources {
    /// The sources of `collection` (a catalog entry at `version` or later) visible at `version`.
    pub fn new(collection: &Collection, version: u64) -> Self {
        VersionSources { by_shard: collection.shards.iter().map(|shard| shard_sources(shard, version)).collect() }
    }

    /// The rows of `segment` live at this version: `None` when none was replaced or deleted.
    /// `collection` is the catalog entry these sources were listed from; the keys of newer
    /// sources are read through `cache`.
    pub async fn live_rows(
        &self,
        segment: &SegmentRef,
        collection: &Collection,
        cache: &KeyCache,
    ) -> Result<Option<BooleanArray>, ComputeError> {
        let shard = segment.meta.shard as usize;
        let (Some(sources), Some(manifest)) = (self.by_shard.get(shard), collection.shards.get(shard)) else { return Ok(None) };
        // Sequence numbers are unique, so the segment itself is not among the newer ones.
        let newer = &sources[sources.partition_point(|s| s.seq <= segment.meta.seq)..];
        live_rows_among(segment, manifest, newer, cache).await
    }
}

/// The live rows of `segment` given the `newer` sources of its shard `manifest` that a read
/// sees, oldest first.
async fn live_rows_among(
    segment: &SegmentRef,
    manifest: &ShardManifest,
    newer: &[Source],
    cache: &KeyCache,
) -> Result<Option<BooleanArray>, ComputeError> {
    let Some(upto) = newer.last().map(|s| s.seq) else { return Ok(None) };
    let liveness = &segment.liveness;
    let start = liveness.last.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Bring the last mask forward when it is older than this read; otherwise start afresh.
    let (from, mut live) = match start {
        Some(c) if c.upto == upto => return Ok(all_or_some(c.live)),
        Some(c) if c.upto < upto => (c.upto, c.live),
        _ => (segment.meta.seq, BooleanBuffer::new_set(segment.rows())),
    };
    let index = liveness.row_index(segment)?;
    let mut dead = Vec::new();
    for source in newer.iter().filter(|s| s.seq > from) {
        let keys: ArrayRef = cache.keys(&source.at.keys(manifest)?).await?;
        index.rows_of(&keys, &mut dead)?;
    }
    if !dead.is_empty() {
        let mut builder = arrow::array::BooleanBufferBuilder::new(live.len());
        builder.append_buffer(&live);
        for row in dead {
            builder.set_bit(row as usize, false);
        }
        live = builder.finish();
    }
    let mut last = liveness.last.lock().unwrap_or_else(|e| e.into_inner());
    if last.as_ref().is_none_or(|c| c.upto < upto) {
        *last = Some(MaskCache { upto, live: live.clone() });
    }
    Ok(all_or_some(live))
}

/// `None` when every row is live (reads then skip the mask), else the mask.
fn all_or_some(live: BooleanBuffer) -> Option<BooleanArray> {
    (live.count_set_bits() < live.len()).then(|| BooleanArray::new(live, None))
}

/// The live rows of each of `segments` at `version` of `collection` (see
/// [`VersionSources::live_rows`]).
pub async fn live_segments(
    segments: Vec<SegmentRef>,
    collection: &Collection,
    version: u64,
    cache: &KeyCache,
) -> Result<Vec<LiveSegment>, ComputeError> {
    let sources = VersionSources::new(collection, version);
    let mut out = Vec::with_capacity(segments.len());
    for segment in segments {
        let live = sources.live_rows(&segment, collection, cache).await?;
        out.push(LiveSegment { segment, live });
    }
    Ok(out)
}
