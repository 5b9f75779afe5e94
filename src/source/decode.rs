//! Record formats → Arrow: JSON (arrow-json), CSV (arrow-csv), text lines and
//! raw bytes. Bad records are reported one by one, never fail a batch.
//!
//! JSON and CSV records are fed, newline-separated, into arrow's streaming
//! decoders, 1024 at a time (measured faster than larger segments: the tape
//! stays in cache), and the segments' batches concatenated. Only when
//! something is wrong do we look closer: a record that is not exactly one
//! value (empty, truncated, two values) is caught as it is fed; a value that
//! does not fit its column (`"price": "abc"` for a DOUBLE) only shows at
//! flush, so that segment is then split into parts, recursively, until each
//! bad record stands alone (a few extra decodes per bad record, not one per
//! row). Release build, ~150-byte records, 6 fields: ~1.8M records/s per
//! core, ~0.8M/s with 0.1% bad records.

mod format;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryArray, StringArray};
use datafusion::arrow::compute::{can_cast_types, cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::{csv, json};

pub use format::{FORMAT_OPTIONS, FORMATS, Format, parse_bool, value_schema_for};

/// A decoded chunk: its rows, and the (record index, reason) of each record
/// that did not decode.
type Decoded = (RecordBatch, Vec<(usize, String)>);
/// Records decoded together at most: a bad record makes its segment be
/// decoded again, so this bounds the extra work; the segments' batches are
/// concatenated into one.
const SEGMENT_RECORDS: usize = 1024;

/// How many parts a failing set of records is split into. Each bad record
/// costs re-decoding its part at every level: wider splits mean fewer levels
/// (with 8, one bad record costs ~1.15× its segment again, against ~2× for
/// halving).
const SPLIT_WAYS: usize = 8;

/// Decodes records into batches of a fixed schema.
#[derive(Debug)]
pub struct RecordDecoder {
    schema: SchemaRef,
    format: Format,
}

/// Below this many records a chunk is decoded on the calling thread: a
/// thread per part would cost more than it saves.
const PARALLEL_MIN_RECORDS: usize = 8192;

impl RecordDecoder {
    /// Decoding JSON is the hot path of ingest (the plan and the Parquet
    /// writer cost far less per row), so a large chunk is split into one part
    /// per core, decoded side by side, and put back together in order.
    fn decode_parallel(&mut self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        let parts = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        if parts == 1 {
            return self.decode_tabular(records);
        }
        let size = records.len().div_ceil(parts);
        let results: Vec<Result<Decoded, ArrowError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = records
                .chunks(size)
                .skip(1)
                .map(|part| {
                    let decoder = RecordDecoder::new(self.schema.clone(), self.format.clone());
                    scope.spawn(move || decoder.decode_tabular(part))
                })
                .collect();
            let mut results = vec![self.decode_tabular(&records[..size.min(records.len())])];
            for handle in handles {
                results.push(
                    handle.join().unwrap_or_else(|_| Err(ArrowError::ComputeError("a decoding thread panicked".into()))),
                );
            }
            results
        });
        let mut batches = Vec::with_capacity(results.len());
        let mut bad = Vec::new();
        for (i, result) in results.into_iter().enumerate() {
            let (batch, part_bad) = result?;
            bad.extend(part_bad.into_iter().map(|(index, error)| (index + i * size, error)));
            batches.push(batch);
        }
        Ok((datafusion::arrow::compute::concat_batches(&self.schema, &batches)?, bad))
    }

    pub fn new(schema: SchemaRef, format: Format) -> RecordDecoder {
        RecordDecoder { schema, format }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Whether the format can produce every column type of the schema (e.g.
    /// CSV has no lists). Meant for `CREATE STREAM`: `decode` with an
    /// unsupported type would report every record as bad.
    pub fn check(&self) -> Result<(), ArrowError> {
        match &self.format {
            Format::Json => self.inner(1).map(|_| ()),
            Format::Csv { delimiter, .. } => {
                // A row of empty (null) fields: arrow-csv itself says which
                // types it cannot build, and nothing else can fail.
                let row = vec!["\"\""; self.schema.fields().len()].join(&char::from(*delimiter).to_string());
                let mut decoder = self.inner(1)?;
                match decoder.feed(row.as_bytes()).map_err(ArrowError::CsvError).and_then(|()| decoder.flush()) {
                    Err(ArrowError::ParseError(m)) if m.starts_with("Unsupported data type") => {
                        Err(ArrowError::SchemaError(format!("format 'csv': {m}")))
                    }
                    _ => Ok(()),
                }
            }
            Format::Text | Format::Bytes => {
                let from = if self.format == Format::Text { DataType::Utf8 } else { DataType::Binary };
                match self.schema.fields().as_ref() {
                    [field] if can_cast_types(&from, field.data_type()) => Ok(()),
                    _ => Err(ArrowError::SchemaError(format!(
                        "format '{}' produces exactly one column 'value' of type {from}",
                        self.format.name()
                    ))),
                }
            }
            Format::Parquet => Ok(()),
        }
    }

    /// Decodes `records` (one message or line each) into one batch with a
    /// row per good record, in order, plus `(index, error)` for each bad one.
    /// An `Err` means no record could be decoded at all (e.g. a column type
    /// the format cannot produce), never that one record was bad.
    pub fn decode(&mut self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        match self.format {
            Format::Json | Format::Csv { .. } if records.len() >= PARALLEL_MIN_RECORDS => self.decode_parallel(records),
            Format::Json | Format::Csv { .. } => self.decode_tabular(records),
            Format::Text => self.decode_text(records),
            Format::Bytes => {
                let array: ArrayRef = Arc::new(BinaryArray::from_iter_values(records.iter()));
                Ok((single_column_batch(&self.schema, array, "bytes")?, Vec::new()))
            }
            Format::Parquet => Err(ArrowError::InvalidArgumentError(
                "format 'parquet' is read as whole files by the file connector, not record by record".into(),
            )),
        }
    }

    fn decode_text(&self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        let mut bad = Vec::new();
        let mut values = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match std::str::from_utf8(record) {
                Ok(s) => values.push(s),
                Err(e) => bad.push((i, format!("invalid UTF-8 at byte {}", e.valid_up_to()))),
            }
        }
        let array: ArrayRef = Arc::new(StringArray::from_iter_values(values));
        Ok((single_column_batch(&self.schema, array, "text")?, bad))
    }

    fn decode_tabular(&self, records: &[&[u8]]) -> Result<Decoded, ArrowError> {
        let mut bad = Vec::new();
        let mut batches = Vec::new();
        let mut good = Vec::with_capacity(records.len().min(SEGMENT_RECORDS));
        for start in (0..records.len()).step_by(SEGMENT_RECORDS) {
            let end = (start + SEGMENT_RECORDS).min(records.len());
            self.decode_segment(records, start..end, &mut good, &mut batches, &mut bad)?;
        }
        bad.sort_by_key(|(i, _)| *i);
        let batch = match batches.len() {
            0 => RecordBatch::new_empty(self.schema.clone()),
            1 => batches.swap_remove(0),
            _ => concat_batches(&self.schema, &batches)?,
        };
        Ok((batch, bad))
    }

    /// Decodes `records[range]`, pushing its batches and bad records.
    /// `good` is scratch space, kept to reuse its allocation.
    fn decode_segment(
        &self,
        records: &[&[u8]],
        range: std::ops::Range<usize>,
        good: &mut Vec<usize>,
        batches: &mut Vec<RecordBatch>,
        bad: &mut Vec<(usize, String)>,
    ) -> Result<(), ArrowError> {
        good.clear();
        let end = range.end;
        let mut decoder = self.inner(range.len())?;
        let mut tainted = false;
        for i in range {
            let record = records[i];
            if decoder.is_blank(record) {
                bad.push((i, "empty record".to_string()));
                continue;
            }
            match decoder.feed(record) {
                Ok(()) => good.push(i),
                Err(reason) => {
                    // The decoder now holds a broken value: carry on with a
                    // fresh one just to classify the rest; the good records
                    // are decoded again below.
                    bad.push((i, reason));
                    tainted = true;
                    decoder = self.inner(end - i)?;
                }
            }
        }
        if !tainted {
            match decoder.flush() {
                Ok(Some(batch)) => {
                    batches.push(batch);
                    return Ok(());
                }
                Ok(None) => return Ok(()),
                Err(_) => {}
            }
        }
        drop(decoder);
        if tainted {
            self.split_search(records, good, batches, bad)
        } else {
            // The whole segment is known to fail: start with its parts.
            for part in good.chunks(good.len().div_ceil(SPLIT_WAYS).max(1)) {
                self.split_search(records, part, batches, bad)?;
            }
            Ok(())
        }
    }

    /// Decodes `indices` together, or splits them until every failing record
    /// is alone and reported. Batches are pushed in input order.
    fn split_search(
        &self,
        records: &[&[u8]],
        indices: &[usize],
        batches: &mut Vec<RecordBatch>,
        bad: &mut Vec<(usize, String)>,
    ) -> Result<(), ArrowError> {
        if indices.is_empty() {
            return Ok(());
        }
        let mut decoder = self.inner(indices.len())?;
        let result = indices
            .iter()
            .try_for_each(|&i| decoder.feed(records[i]))
            .and_then(|()| decoder.flush().map_err(|e| arrow_message(&e)));
        match result {
            Ok(Some(batch)) => batches.push(batch),
            Ok(None) => {}
            Err(reason) if indices.len() == 1 => bad.push((indices[0], reason)),
            Err(_) => {
                for part in indices.chunks(indices.len().div_ceil(SPLIT_WAYS)) {
                    self.split_search(records, part, batches, bad)?;
                }
            }
        }
        Ok(())
    }

    /// A fresh arrow decoder sized for `rows` records, so that it never stops
    /// early at arrow's default 1024-row batch size.
    fn inner(&self, rows: usize) -> Result<Inner, ArrowError> {
        let batch_size = rows + 1;
        match self.format {
            Format::Csv { delimiter, .. } => Ok(Inner::Csv(Box::new(
                csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(false)
                    .with_delimiter(delimiter)
                    .with_batch_size(batch_size)
                    .build_decoder(),
            ))),
            _ => Ok(Inner::Json(
                json::ReaderBuilder::new(self.schema.clone())
                    .with_strict_mode(false)
                    // `"id": 5` into a TEXT column becomes '5' (lossless).
                    .with_coerce_primitive(true)
                    .with_batch_size(batch_size)
                    .build_decoder()?,
            )),
        }
    }
}

/// One arrow streaming decoder, fed a record at a time.
enum Inner {
    Json(json::reader::Decoder),
    Csv(Box<csv::reader::Decoder>),
}

impl Inner {
    fn is_blank(&self, record: &[u8]) -> bool {
        match self {
            Inner::Json(_) => record.trim_ascii().is_empty(),
            // Spaces are a legitimate CSV value; only a bare line break is empty.
            Inner::Csv(_) => record.iter().all(|b| *b == b'\r' || *b == b'\n'),
        }
    }

    /// Feeds one record and a line break, checking that it was exactly one
    /// complete row. On `Err` the decoder is left mid-value and must not be
    /// flushed.
    fn feed(&mut self, record: &[u8]) -> Result<(), String> {
        match self {
            Inner::Json(d) => {
                let before = d.len();
                let read = d.decode(record).map_err(|e| arrow_message(&e))?;
                // The separator ends a trailing bare number (`5` vs `56`).
                let read_sep = d.decode(b"\n").map_err(|e| arrow_message(&e))?;
                if d.has_partial_record() {
                    return Err("truncated JSON value".to_string());
                }
                match d.len() - before {
                    1 if read == record.len() && read_sep == 1 => Ok(()),
                    0 => Err("empty record".to_string()),
                    _ => Err("more than one JSON value in one record".to_string()),
                }
            }
            Inner::Csv(d) => {
                let before = d.capacity();
                let read = d.decode(record).map_err(|e| arrow_message(&e))?;
                let read_sep = d.decode(b"\n").map_err(|e| arrow_message(&e))?;
                match before.saturating_sub(d.capacity()) {
                    1 if read == record.len() && read_sep == 1 => Ok(()),
                    0 => Err("incomplete CSV row (unterminated quoted field?)".to_string()),
                    _ => Err("more than one CSV row in one record".to_string()),
                }
            }
        }
    }

    fn flush(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        match self {
            Inner::Json(d) => d.flush(),
            Inner::Csv(d) => d.flush(),
        }
    }
}

/// Arrow's message without its `Json error: ` style prefix, nor arrow-csv's
/// line number (counted within our decoder, meaningless to the user: the
/// caller reports the record's real position).
fn arrow_message(e: &ArrowError) -> String {
    let message = match e {
        ArrowError::JsonError(m) | ArrowError::CsvError(m) | ArrowError::ParseError(m) | ArrowError::CastError(m) => {
            m.as_str()
        }
        other => return other.to_string(),
    };
    for phrase in [" at line ", " for line "] {
        if let Some(at) = message.find(phrase) {
            let rest = &message[at + phrase.len()..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 {
                return format!("{}{}", &message[..at], &rest[digits..]);
            }
        }
    }
    message.to_string()
}

/// Wraps `array` as the schema's only column, casting to its declared type
/// (e.g. a `value` declared as a string view).
fn single_column_batch(schema: &SchemaRef, array: ArrayRef, format: &str) -> Result<RecordBatch, ArrowError> {
    let [field] = schema.fields().as_ref() else {
        return Err(ArrowError::SchemaError(format!(
            "format '{format}' produces exactly one column 'value', but the stream declares {}",
            schema.fields().len()
        )));
    };
    let array = if field.data_type() == array.data_type() { array } else { cast(&array, field.data_type())? };
    RecordBatch::try_new(schema.clone(), vec![array])
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Field, Float64Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
        ]))
    }

    fn decode(format: Format, schema: SchemaRef, records: &[&str]) -> Decoded {
        let records: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        let mut decoder = RecordDecoder::new(schema, format);
        match decoder.decode(&records) {
            Ok(out) => out,
            Err(e) => panic!("decode failed: {e}"),
        }
    }

    fn ids(batch: &RecordBatch) -> Vec<Option<i64>> {
        batch.column(0).as_primitive::<Int64Type>().iter().collect()
    }

    fn bad_indices(bad: &[(usize, String)]) -> Vec<usize> {
        bad.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn large_chunks_decode_in_parallel_in_order() {
        let n = PARALLEL_MIN_RECORDS * 3 + 7;
        let lines: Vec<String> = (0..n)
            .map(|i| if i % 5000 == 4999 { "{broken".to_string() } else { format!("{{\"id\": {i}, \"name\": \"n{i}\"}}") })
            .collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (batch, bad) = decode(Format::Json, schema(), &refs);
        let expected_bad: Vec<usize> = (0..n).filter(|i| i % 5000 == 4999).collect();
        assert_eq!(bad_indices(&bad), expected_bad);
        let expected_ids: Vec<Option<i64>> = (0..n).filter(|i| i % 5000 != 4999).map(|i| Some(i as i64)).collect();
        assert_eq!(ids(&batch), expected_ids);
    }

    #[test]
    fn json_fast_path_keeps_order_and_more_than_1024_rows() {
        let records: Vec<String> = (0..3000).map(|i| format!(r#"{{"id":{i},"name":"n{i}","price":1.5}}"#)).collect();
        let refs: Vec<&str> = records.iter().map(String::as_str).collect();
        let (batch, bad) = decode(Format::Json, schema(), &refs);
        assert!(bad.is_empty());
        assert_eq!(batch.num_rows(), 3000);
        assert_eq!(ids(&batch), (0..3000).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn json_extra_fields_ignored_missing_fields_null_numbers_into_text() {
        let (batch, bad) = decode(Format::Json, schema(), &[r#"{"id":1,"zzz":{"a":[1,2]}}"#, r#"{"name":7}"#]);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ids(&batch), vec![Some(1), None]);
        let names = batch.column(1).as_string::<i32>();
        assert!(names.is_null(0));
        assert_eq!(names.value(1), "7");
        assert_eq!(batch.column(2).null_count(), 2);
    }

    #[test]
    fn json_bad_records_are_reported_and_the_rest_kept() {
        let (batch, bad) = decode(
            Format::Json,
            schema(),
            &[
                r#"{"id":1}"#,
                r#"{"id":2, "price": "abc"}"#, // type mismatch: found at flush
                r#"{"id":3"#,                  // truncated
                r#"{"id":4}"#,
                "",                     // empty
                r#"{"id":6}{"id":66}"#, // two values
                "not json",
                r#"{"id":8}"#,
                "5", // not an object
                r#"{"id":10, "price": 2}"#,
            ],
        );
        assert_eq!(bad_indices(&bad), vec![1, 2, 4, 5, 6, 8], "{bad:?}");
        assert_eq!(ids(&batch), vec![Some(1), Some(4), Some(8), Some(10)]);
        assert!(bad[0].1.contains("abc"), "{}", bad[0].1);
        assert_eq!(bad[2].1, "empty record");
        assert_eq!(batch.column(2).as_primitive::<Float64Type>().value(3), 2.0);
    }

    #[test]
    fn json_type_mismatch_alone_is_found_by_splitting() {
        let mut records: Vec<String> = (0..1000).map(|i| format!(r#"{{"id":{i}}}"#)).collect();
        records[500] = r#"{"id":"x"}"#.to_string();
        records[999] = r#"{"id":1.5e400}"#.to_string();
        let refs: Vec<&str> = records.iter().map(String::as_str).collect();
        let (batch, bad) = decode(Format::Json, schema(), &refs);
        assert_eq!(bad_indices(&bad), vec![500, 999], "{bad:?}");
        assert_eq!(batch.num_rows(), 998);
        assert_eq!(ids(&batch)[500], Some(501));
    }

    #[test]
    fn json_timestamps_from_strings_and_numbers() {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true)]));
        let (batch, bad) = decode(
            Format::Json,
            schema,
            &[
                r#"{"ts":"2026-11-23T10:00:00Z"}"#,
                r#"{"ts":"2026-11-23 10:00:00"}"#,
                r#"{"ts":"2026-11-23T12:00:00+02:00"}"#,
                r#"{"ts":"2026-11-23T10:00:00.5"}"#,
                r#"{"ts":1795428000000000}"#, // numbers are taken in the column's unit
                r#"{"ts":"yesterday"}"#,
            ],
        );
        assert_eq!(bad_indices(&bad), vec![5], "{bad:?}");
        let ts = batch.column(0).as_primitive::<TimestampMicrosecondType>();
        let ten = 1_795_428_000_000_000; // 2026-11-23T10:00:00Z
        assert_eq!(ts.values().as_ref(), &[ten, ten, ten, ten + 500_000, ten]);
    }

    #[test]
    fn json_nested_object_into_text_column_is_a_bad_record() {
        // arrow-json does not serialise objects into strings: such records
        // go to the dead-letter table (declare the column as TEXT and send
        // the object as a JSON string, or use json functions on a text stream).
        let schema = Arc::new(Schema::new(vec![Field::new("payload", DataType::Utf8, true)]));
        let (batch, bad) = decode(Format::Json, schema, &[r#"{"payload":{"a":1}}"#, r#"{"payload":"{\"a\":1}"}"#]);
        assert_eq!(bad_indices(&bad), vec![0], "{bad:?}");
        assert_eq!(batch.column(0).as_string::<i32>().value(0), r#"{"a":1}"#);
    }

    #[test]
    fn json_non_nullable_missing_field_is_bad() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let (batch, bad) = decode(Format::Json, schema, &[r#"{"id":1}"#, r#"{}"#]);
        assert_eq!(bad_indices(&bad), vec![1], "{bad:?}");
        assert_eq!(batch.num_rows(), 1);
    }

    #[test]
    fn csv_rows_and_bad_rows() {
        let format = Format::Csv { header: false, delimiter: b';' };
        let (batch, bad) =
            decode(format, schema(), &["1;a;1.5", "2;b", "x;c;2", "4;\"d;e\";3", "", "5;\"open;1", "6;f;\"\"", "7;g;2.5\r"]);
        assert_eq!(bad_indices(&bad), vec![1, 2, 4, 5], "{bad:?}");
        assert_eq!(bad[0].1, "incorrect number of fields, expected 3 got 2");
        assert!(bad[1].1.starts_with("Error while parsing value 'x' as type 'Int64' for column 0. "), "{}", bad[1].1);
        assert_eq!(ids(&batch), vec![Some(1), Some(4), Some(6), Some(7)]);
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "d;e");
        assert!(batch.column(2).is_null(2));
        assert_eq!(batch.column(2).as_primitive::<Float64Type>().value(3), 2.5);
    }

    #[test]
    fn text_and_bytes() {
        let text = value_schema_for(&Format::Text).unwrap_or_else(|| panic!("text schema"));
        let records: Vec<&[u8]> = vec![b"hello", b"\xff\xfe", b"", b"world"];
        let (batch, bad) = RecordDecoder::new(text, Format::Text).decode(&records).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bad_indices(&bad), vec![1]);
        let values: Vec<_> = batch.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(values, vec!["hello", "", "world"]);

        let bytes = value_schema_for(&Format::Bytes).unwrap_or_else(|| panic!("bytes schema"));
        let (batch, bad) = RecordDecoder::new(bytes, Format::Bytes).decode(&records).unwrap_or_else(|e| panic!("{e}"));
        assert!(bad.is_empty());
        assert_eq!(batch.column(0).as_binary::<i32>().value(1), b"\xff\xfe");
        assert!(RecordDecoder::new(schema(), Format::Parquet).decode(&records).is_err());
        assert!(RecordDecoder::new(schema(), Format::Text).decode(&records).is_err());
    }

    #[test]
    fn check_rejects_types_a_format_cannot_produce() {
        let list = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new_list("tags", Field::new_list_field(DataType::Utf8, true), true),
        ]));
        let csv = Format::Csv { header: false, delimiter: b',' };
        assert!(RecordDecoder::new(list.clone(), Format::Json).check().is_ok());
        let err = RecordDecoder::new(list, csv.clone()).check().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("Unsupported data type"), "{err}");
        assert!(RecordDecoder::new(schema(), csv).check().is_ok());
        assert!(RecordDecoder::new(schema(), Format::Text).check().is_err());
        let view = Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8View, true)]));
        assert!(RecordDecoder::new(view, Format::Text).check().is_ok());
        let json_binary = Arc::new(Schema::new(vec![Field::new("b", DataType::Duration(TimeUnit::Second), true)]));
        let _ = RecordDecoder::new(json_binary, Format::Json).check(); // must not panic either way
    }
}
