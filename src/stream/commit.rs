//! The commit protocol's middle and last steps, once an epoch's rows are
//! staged: the operator closes the epoch, every sink prepares, one catalog
//! transaction records files + checkpoint + progress + state, and then the
//! sinks publish. A crash anywhere before the transaction loses nothing
//! (the epoch is read again); after it, recovery publishes what it recorded.

use std::time::Duration;

use super::epoch::{Epoch, Sinks};
use super::inputs::Inputs;
use super::progress::{Progress, format_timestamp};
use super::ready_query::Instance;
use super::runner::{Files, QuerySpec, RunError, fatal};
use crate::catalog::{AsyncStore, EpochCommit};
use crate::error::CatalogError;

/// Epochs of history kept for sources whose checkpoint is cumulative.
const EPOCHS_KEPT: i64 = 1000;

/// What commits one query's epochs, for one attempt.
pub(super) struct Committer<'a> {
    pub(super) spec: &'a QuerySpec,
    pub(super) query: &'a Instance,
    pub(super) store: &'a AsyncStore,
    pub(super) files: &'a Files,
    pub(super) sinks: &'a Sinks,
}

impl Committer<'_> {
    /// Commits `epoch`; `since_previous` is the time since the previous
    /// epoch started (for the input rate).
    pub(super) async fn commit(
        &self,
        source: &mut Inputs,
        mut epoch: Epoch,
        since_previous: Option<Duration>,
    ) -> Result<(), RunError> {
        let (spec, query) = (self.spec, self.query);
        query.advance_watermarks().await;
        let (watermark, snapshot) = {
            let mut operator = query.operator.lock().await;
            let watermark = operator.end_epoch(query, &mut epoch.output).await?;
            (watermark, operator.snapshot(&query.watermarks().await).map_err(fatal)?)
        };
        let (batch_id, started, started_at) = (epoch.batch_id, epoch.started, epoch.started_at_wall);
        let (input_records, output_rows, error_rows, late_rows) =
            (epoch.input_records, epoch.output.rows, epoch.error_rows, epoch.output.late_rows);
        let prepared = epoch.prepare().await?;
        let all = prepared.all();
        let checkpoint = source.checkpoint();
        let duration = started.elapsed();
        let per_sec = |d: Duration| if d.as_secs_f64() > 0.0 { input_records as f64 / d.as_secs_f64() } else { 0.0 };
        let progress = Progress {
            query: spec.name.clone(),
            batch_id,
            started_at: format_timestamp(started_at),
            duration_ms: duration.as_millis() as i64,
            input_rows: input_records as i64,
            output_rows: output_rows as i64,
            input_rows_per_sec: per_sec(since_previous.unwrap_or(duration)),
            processed_rows_per_sec: per_sec(duration),
            bytes_written: all.bytes as i64,
            files_written: all.files.len() as i64,
            error_rows: error_rows as i64,
            source_offsets: checkpoint.to_string(),
            lag: source.lag(),
            watermark: watermark.map(super::progress::format_micros),
            late_rows: late_rows as i64,
            state_rows: snapshot.size.map(|(rows, _)| rows as i64),
            state_bytes: snapshot.size.map(|(_, bytes)| bytes as i64),
            data_loss: source.take_data_loss(),
            version: all.version.as_ref().map(|v| v.display().to_string()),
        };
        let progress = super::progress::commit_record(&progress, query.clocks().await).map_err(RunError::Fatal)?;
        let commit = EpochCommit {
            query: spec.name.clone(),
            batch_id,
            checkpoint,
            files: all.files,
            progress,
            state: snapshot.bytes,
        };
        self.store.commit_epoch(commit).await.map_err(|e| match e {
            CatalogError::EpochConflict { .. } | CatalogError::Internal(_) => RunError::Fatal(e.to_string()),
            other => RunError::Transient(other.to_string()),
        })?;
        self.sinks.commit(&prepared, &self.files.gate).await?;
        if let Some(version) = self.sinks.output.committed_version(batch_id)
            && let Err(e) = self.store.note_table_version(&spec.name, batch_id, version).await
        {
            // The epoch is committed either way; only its progress row lacks the version.
            tracing::warn!(query = %spec.name, batch_id, "table version not noted: {e}");
        }
        if source.checkpoint_is_cumulative()
            && let Err(e) = self.store.prune_epochs(&spec.name, EPOCHS_KEPT).await
        {
            tracing::warn!(query = %spec.name, "old epochs not pruned: {e}");
        }
        Ok(())
    }
}
