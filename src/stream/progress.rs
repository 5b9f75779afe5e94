//! What a continuous query is doing: its live status (`SHOW SINKS`) and
//! one progress row per committed epoch (`weir.query_progress`, Spark's
//! `lastProgress` as a table). Progress rows are committed with their epoch,
//! so they survive restarts and never describe an epoch that did not land.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DFResult};
use serde::Serialize;

use crate::catalog::CatalogStore;

/// The lifecycle of a continuous query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Running,
    /// A transient failure (broker down, disk full); retried with backoff.
    Retrying,
    /// Stopped by an error retrying cannot fix; the reason is kept.
    Failed,
    /// A `once` / `available_now` query that processed everything.
    Finished,
    /// Paused by `ALTER ... PAUSE` after its last committed epoch; stays so
    /// across restarts until `ALTER ... RESUME`.
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Retrying => "retrying",
            Status::Failed => "failed",
            Status::Finished => "finished",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "starting" => Status::Starting,
            "running" => Status::Running,
            "retrying" => Status::Retrying,
            "failed" => Status::Failed,
            "finished" => Status::Finished,
            "paused" => Status::Paused,
            "stopped" => Status::Stopped,
            _ => return None,
        })
    }
}

/// Shared between a runner (writer) and SHOW statements (readers).
#[derive(Debug, Clone)]
pub struct QueryState {
    pub status: Status,
    pub error: Option<String>,
    /// The newest committed epoch, if any.
    pub last_batch_id: Option<i64>,
}

pub type SharedState = Arc<Mutex<QueryState>>;

/// A query registered without running it: finished (an available_now query
/// that ended before a restart) or paused. It shows its last committed
/// batch, as it did while it ran.
pub struct Dormant {
    pub status: Status,
    pub last_batch_id: Option<i64>,
    /// The committed version of an update / complete view, which readers
    /// keep seeing while no runner publishes one.
    pub version: Option<std::path::PathBuf>,
}

pub fn new_state() -> SharedState {
    Arc::new(Mutex::new(QueryState { status: Status::Starting, error: None, last_batch_id: None }))
}

/// One row of `weir.query_progress`, serialised into the commit log.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    pub query: String,
    pub batch_id: i64,
    /// UTC, `YYYY-MM-DDTHH:MM:SS.ffffff`.
    pub started_at: String,
    pub duration_ms: i64,
    pub input_rows: i64,
    pub output_rows: i64,
    /// Input rows over the time since the previous epoch started (Spark's
    /// `inputRowsPerSecond`).
    pub input_rows_per_sec: f64,
    /// Input rows over this epoch's duration (`processedRowsPerSecond`).
    pub processed_rows_per_sec: f64,
    pub bytes_written: i64,
    pub files_written: i64,
    /// Records that did not decode (skipped or dead-lettered).
    pub error_rows: i64,
    /// The source's checkpoint after this epoch, as JSON text
    /// (Kafka: next offset per partition).
    pub source_offsets: String,
    pub lag: Option<i64>,
    /// Event time up to which input is complete (aggregations with a
    /// watermark), `YYYY-MM-DDTHH:MM:SS.ffffff`.
    pub watermark: Option<String>,
    /// Rows dropped for being older than the watermark.
    pub late_rows: i64,
    /// Groups held in state after this epoch, and their memory.
    pub state_rows: Option<i64>,
    pub state_bytes: Option<i64>,
    /// Input found gone before it was read and skipped in this epoch
    /// (`fail_on_data_loss = false`): which partitions' offsets or files.
    pub data_loss: Option<String>,
    /// The view version this epoch wrote (update/complete); not a column,
    /// recovery reads it to know which version readers should see.
    pub version: Option<String>,
}

/// Key in a commit's progress record: each input's per-partition event
/// times (see watermark.rs).
pub(super) const CLOCKS_KEY: &str = "event_time_clocks";

/// The progress record an epoch commits: `progress` plus the inputs'
/// event-time `clocks`, which recovery restores the watermarks from. Not a
/// JSON object is an error of the epoch: committing it empty would lose
/// the progress row and the clocks without a word.
pub(super) fn commit_record(progress: &impl Serialize, clocks: serde_json::Value) -> Result<serde_json::Value, String> {
    let mut record = serde_json::to_value(progress).map_err(|e| format!("recording the epoch's progress: {e}"))?;
    let Some(fields) = record.as_object_mut() else {
        return Err(format!("recording the epoch's progress: {record} is not a JSON object"));
    };
    fields.insert(CLOCKS_KEY.into(), clocks);
    Ok(record)
}

pub fn progress_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    Arc::new(Schema::new(vec![
        Field::new("query", DataType::Utf8, false),
        Field::new("batch_id", DataType::Int64, false),
        Field::new("started_at", ts, true),
        Field::new("duration_ms", DataType::Int64, true),
        Field::new("input_rows", DataType::Int64, true),
        Field::new("output_rows", DataType::Int64, true),
        Field::new("input_rows_per_sec", DataType::Float64, true),
        Field::new("processed_rows_per_sec", DataType::Float64, true),
        Field::new("bytes_written", DataType::Int64, true),
        Field::new("files_written", DataType::Int64, true),
        Field::new("error_rows", DataType::Int64, true),
        Field::new("source_offsets", DataType::Utf8, true),
        Field::new("lag", DataType::Int64, true),
        Field::new("watermark", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("late_rows", DataType::Int64, true),
        Field::new("state_rows", DataType::Int64, true),
        Field::new("state_bytes", DataType::Int64, true),
        Field::new("data_loss", DataType::Utf8, true),
        // The target table's version holding the epoch (a Delta log's),
        // added once the target committed it.
        Field::new("table_version", DataType::Int64, true),
    ]))
}

/// How many epochs per query the table shows (older ones stay in the log
/// until pruned).
const ROWS_PER_QUERY: usize = 1000;

/// `weir.query_progress`, read from the commit log at scan time.
pub fn progress_table(store: Arc<dyn CatalogStore>) -> super::system_table::SystemTable {
    super::system_table::SystemTable::new(progress_schema(), move || {
        let rows = store.progress(ROWS_PER_QUERY).map_err(|e| DataFusionError::External(Box::new(e)))?;
        rows_to_batch(rows.into_iter().map(|(_, v)| v).collect())
    })
}

/// Progress JSON → Arrow through arrow-json, which also parses `started_at`.
fn rows_to_batch(rows: Vec<serde_json::Value>) -> DFResult<RecordBatch> {
    use datafusion::arrow::json::ReaderBuilder;
    let schema = progress_schema();
    let mut decoder = ReaderBuilder::new(schema.clone()).with_batch_size(rows.len().max(1)).build_decoder()?;
    decoder.serialize(&rows)?;
    Ok(decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// A wall-clock time as `YYYY-MM-DDTHH:MM:SS.ffffff` (UTC).
pub fn format_timestamp(system: std::time::SystemTime) -> String {
    let micros = system.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    format_micros(micros)
}

/// Microseconds since the epoch → `YYYY-MM-DDTHH:MM:SS.ffffff`.
pub fn format_micros(micros: i64) -> String {
    datafusion::arrow::temporal_conversions::timestamp_us_to_datetime(micros)
        .map(|dt| dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A progress that does not serialise fails the epoch's commit, with
    /// the reason, instead of committing it without progress and clocks.
    #[test]
    fn a_progress_that_does_not_serialise_fails_the_commit() {
        struct Unserialisable;
        impl Serialize for Unserialisable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("deliberately unserialisable"))
            }
        }
        let clocks = serde_json::json!([{"0": 1_000_000}]);
        let err = commit_record(&Unserialisable, clocks.clone()).unwrap_err();
        assert!(err.contains("deliberately unserialisable"), "{err}");
        let err = commit_record(&"a string", clocks.clone()).unwrap_err();
        assert!(err.contains("not a JSON object"), "{err}");
        let record = commit_record(&serde_json::json!({"batch_id": 3}), clocks.clone()).unwrap();
        assert_eq!(record, serde_json::json!({"batch_id": 3, CLOCKS_KEY: clocks}));
    }
}
