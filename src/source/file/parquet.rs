//! Parquet files as stream rows: only the stream's columns are read, found by
//! name (exactly, else ignoring case), cast to the declared types, and missing
//! nullable ones become nulls. A file that cannot give those rows at all is
//! one bad record; a batch that fails to cast is a bad record for its rows.
//! Progress in a Parquet file is counted in rows, not bytes.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::async_reader::ParquetRecordBatchStream;
use futures::StreamExt;

use super::{BadRecord, Chunk, Progress};

/// A Parquet file, local or an object in a bucket.
pub(super) type Input = Box<dyn datafusion::parquet::arrow::async_reader::AsyncFileReader>;

/// Rows per batch read from a file.
const BATCH_ROWS: usize = 8192;

/// Opens a Parquet file reading only the stream's columns, from row `offset`.
/// `Err` is why the whole file cannot become rows of `schema`.
pub(super) async fn open(file: Input, schema: &SchemaRef, offset: u64) -> Result<ParquetRecordBatchStream<Input>, String> {
    let builder =
        ParquetRecordBatchStreamBuilder::new(file).await.map_err(|e| format!("not a readable parquet file: {e}"))?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::new();
    for field in schema.fields() {
        match find_column(&file_schema, field.name()) {
            Some(i) => {
                let from = file_schema.field(i).data_type();
                if !can_cast_types(from, field.data_type()) {
                    return Err(format!(
                        "column '{}' is {from} in the file, cannot be read as {}",
                        field.name(),
                        field.data_type()
                    ));
                }
                roots.push(i);
            }
            None if !field.is_nullable() => {
                return Err(format!("column '{}' is NOT NULL but missing from the file", field.name()));
            }
            None => {}
        }
    }
    let mask = datafusion::parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
    builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .with_offset(usize::try_from(offset).unwrap_or(usize::MAX))
        .build()
        .map_err(|e| format!("cannot read parquet file: {e}"))
}

/// The column of `schema` called `name`: exactly, else ignoring case (SQL
/// folds unquoted names to lower case; Parquet writers often do not).
fn find_column(schema: &Schema, name: &str) -> Option<usize> {
    schema.index_of(name).ok().or_else(|| schema.fields().iter().position(|f| f.name().eq_ignore_ascii_case(name)))
}

/// A Parquet batch as rows of the stream: columns by name, cast to the
/// declared types, missing ones null.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    let options = CastOptions { safe: false, ..Default::default() };
    let columns = schema
        .fields()
        .iter()
        .map(|field| match find_column(batch.schema_ref(), field.name()) {
            Some(i) => cast_with_options(batch.column(i), field.data_type(), &options)
                .map_err(|e| format!("column '{}': {e}", field.name())),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<ArrayRef>, String>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| e.to_string())
}

/// Reads up to `limit` rows of an open Parquet file into `chunk`, as rows of
/// `schema`; `true` when the file is exhausted (or corrupt from here on).
/// `leftover` holds the rows of the last batch read that did not fit.
pub(super) async fn read_rows(
    stream: &mut ParquetRecordBatchStream<Input>,
    leftover: &mut Option<RecordBatch>,
    progress: &mut Progress,
    schema: &SchemaRef,
    limit: usize,
    chunk: &mut Chunk,
) -> bool {
    let mut read = 0;
    while read < limit {
        let batch = match leftover.take() {
            Some(batch) => batch,
            None => match stream.next().await {
                None => return true,
                Some(Ok(batch)) => batch,
                Some(Err(e)) => {
                    // A corrupt file stays corrupt: report the rest of it, move on.
                    chunk.input_records += 1;
                    chunk.bad_records.push(BadRecord {
                        raw: Vec::new(),
                        error: format!("cannot read parquet file: {e}"),
                        position: format!("file {} from row {}", progress.file, progress.offset + 1),
                    });
                    return true;
                }
            },
        };
        let take = batch.num_rows().min(limit - read);
        if take < batch.num_rows() {
            *leftover = Some(batch.slice(take, batch.num_rows() - take));
        }
        let batch = batch.slice(0, take);
        let first = progress.offset + 1;
        progress.offset += take as u64;
        progress.line = progress.offset;
        read += take;
        chunk.input_records += take;
        match conform(&batch, schema) {
            Ok(batch) => chunk.batches.push(batch),
            Err(error) => chunk.bad_records.push(BadRecord {
                raw: Vec::new(),
                error,
                position: format!("file {} rows {first}-{}", progress.file, progress.offset),
            }),
        }
    }
    false
}
