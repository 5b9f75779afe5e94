//! `OPTIMIZE`, `VACUUM` and `DESCRIBE HISTORY` of a Delta table.
//!
//! Both rewriting operations are safe beside a sink committing to the same
//! table. `OPTIMIZE` commits its removes and adds with `dataChange = false`
//! and the log's conflict check lets blind appends (a sink's epochs) pass;
//! a rewritten view's overwrite commits wait for it (see `commit_epoch`).
//! `VACUUM` (the crate's default, lite mode) deletes only files a commit
//! removed: never a sink's file that is on disk but not yet added.

use std::num::NonZeroU64;

use super::{DeltaError, TableDir, open, readable};

/// What `OPTIMIZE` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub files_removed: u64,
    pub files_added: u64,
    pub bytes_removed: i64,
    pub bytes_added: i64,
}

/// Bin-packs the table's small files into files of about `target_bytes`
/// (the table's `delta.targetFileSize`, else 100 MB, when `None`).
pub async fn optimize(dir: &TableDir, target_bytes: Option<u64>) -> Result<Compaction, DeltaError> {
    let _one = super::MAINTENANCE.lock().await;
    let table = open(dir, None).await?;
    let mut builder = table.optimize();
    if let Some(target) = target_bytes.and_then(NonZeroU64::new) {
        builder = builder.with_target_size(target);
    }
    let (_, metrics) = builder.await.map_err(|e| DeltaError::at(dir, readable(e)))?;
    Ok(Compaction {
        files_removed: metrics.num_files_removed,
        files_added: metrics.num_files_added,
        bytes_removed: metrics.files_removed.total_size,
        bytes_added: metrics.files_added.total_size,
    })
}

/// Deletes the data files that commits removed more than `retain_hours` ago
/// (the table's `delta.deletedFileRetentionDuration`, a week by default,
/// when `None`). An explicit retention is honoured even below the table's:
/// readers of versions older than it can no longer read them. Returns the
/// files deleted (or, with `dry_run`, that would be).
pub async fn vacuum(dir: &TableDir, retain_hours: Option<f64>, dry_run: bool) -> Result<Vec<String>, DeltaError> {
    let _one = super::MAINTENANCE.lock().await;
    let table = open(dir, None).await?;
    let mut builder = table.vacuum().with_dry_run(dry_run);
    if let Some(hours) = retain_hours {
        let millis = (hours * 3_600_000.0).round() as i64;
        builder =
            builder.with_retention_period(chrono::Duration::milliseconds(millis)).with_enforce_retention_duration(false);
    }
    let (_, metrics) = builder.await.map_err(|e| DeltaError::at(dir, readable(e)))?;
    Ok(metrics.files_deleted)
}

/// One commit of the table's log.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    pub version: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    pub operation: String,
    pub parameters: String,
    /// For a weir sink's commit: the query and its epoch.
    pub query: Option<String>,
    pub epoch: Option<i64>,
}

/// The table's commits, newest first.
pub async fn history(dir: &TableDir, limit: Option<usize>) -> Result<Vec<Commit>, DeltaError> {
    use futures::TryStreamExt;
    let table = open(dir, None).await?;
    let latest = table.version().map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
    let infos: Vec<_> = table.history(limit).try_collect().await.map_err(|e| DeltaError::at(dir, readable(e)))?;
    Ok(infos
        .into_iter()
        .enumerate()
        .map(|(i, info)| Commit {
            version: latest - i as i64,
            timestamp: info.timestamp,
            operation: info.operation.unwrap_or_default(),
            parameters: info.operation_parameters.map(|p| serde_json::to_string(&p).unwrap_or_default()).unwrap_or_default(),
            query: info.info.get(super::EPOCH_QUERY_KEY).and_then(|v| v.as_str()).map(str::to_string),
            epoch: info.info.get(super::EPOCH_KEY).and_then(|v| v.as_i64()),
        })
        .collect())
}
