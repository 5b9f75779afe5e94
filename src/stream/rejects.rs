//! Rows that do not reach a query's output: malformed records (skipped,
//! failing the query, or kept in `<stream>_errors` as dead letters) and rows
//! older than the watermark (counted, or kept in `<query>_late`).

use std::sync::Arc;
use std::time::SystemTime;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::definition::{OnError, StreamDef};
use super::runner::RunError;
use crate::sink::EpochSink;
use crate::source::BadRecord;

/// Dead-letter rows: enough to find and replay the record.
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("query", DataType::Utf8, true),
        Field::new("position", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, true),
        Field::new("received_at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}

/// Malformed records of `stream` read by query `query`, as its `on_error`
/// says: skipped, the query failed, or written to the dead-letter table
/// through `dead_letters` (the epoch's writer, when the stream has one).
pub(super) async fn handle_bad_records(
    stream: &StreamDef,
    query: &str,
    dead_letters: Option<&mut Box<dyn EpochSink>>,
    bad: &[BadRecord],
) -> Result<(), RunError> {
    if bad.is_empty() {
        return Ok(());
    }
    match stream.on_error {
        OnError::Skip => Ok(()),
        OnError::Fail => {
            let first = &bad[0];
            Err(RunError::Fatal(format!(
                "malformed record in stream '{}' at {}: {} (on_error = 'fail'; use 'skip' or 'dead_letter' to keep going)",
                stream.name, first.position, first.error
            )))
        }
        OnError::DeadLetter => {
            let Some(writer) = dead_letters else { return Ok(()) };
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![query; bad.len()])),
                Arc::new(bad.iter().map(|b| Some(b.position.as_str())).collect::<StringArray>()),
                Arc::new(bad.iter().map(|b| Some(b.error.as_str())).collect::<StringArray>()),
                Arc::new(bad.iter().map(|b| Some(String::from_utf8_lossy(&b.raw).into_owned())).collect::<StringArray>()),
                Arc::new(TimestampMicrosecondArray::from(vec![now; bad.len()])),
            ];
            let batch = RecordBatch::try_new(dead_letter_schema(), columns)
                .map_err(|e| RunError::Fatal(format!("dead-letter batch: {e}")))?;
            writer.write(&batch).await.map_err(|e| RunError::Transient(format!("writing dead letters: {e}")))
        }
    }
}

/// Rows older than the watermark cannot change an emitted result: they are
/// split off and counted (Spark drops them the same way; weir can also keep
/// them in `<query>_late`). Returns (on-time, late).
pub(super) type Split = (Vec<RecordBatch>, Vec<RecordBatch>);

pub(super) fn split_late(
    event_time: Option<usize>,
    watermark: Option<i64>,
    batches: Vec<RecordBatch>,
    late: &mut u64,
) -> Result<Split, RunError> {
    let (Some(column), Some(watermark)) = (event_time, watermark) else { return Ok((batches, Vec::new())) };
    let mut late_rows = Vec::new();
    let fatal = |e: datafusion::arrow::error::ArrowError| RunError::Fatal(format!("dropping late rows: {e}"));
    let mut kept = Vec::with_capacity(batches.len());
    for batch in batches {
        let times = cast(batch.column(column), &DataType::Timestamp(TimeUnit::Microsecond, None)).map_err(fatal)?;
        let Some(times) = times.as_any().downcast_ref::<TimestampMicrosecondArray>() else { continue };
        let on_time: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| t >= watermark))).collect();
        let filtered = filter_record_batch(&batch, &on_time).map_err(fatal)?;
        let dropped = batch.num_rows() - filtered.num_rows();
        if dropped > 0 {
            *late += dropped as u64;
            let is_late: BooleanArray = on_time.iter().map(|t| t.map(|t| !t)).collect();
            late_rows.push(filter_record_batch(&batch, &is_late).map_err(fatal)?);
        }
        kept.push(filtered);
    }
    Ok((kept, late_rows))
}
