//! How a query's kept state goes into an epoch's commit: rows as one Arrow
//! IPC stream with the watermark in its schema metadata, and several such
//! snapshots (aggregation, join sides) as length-prefixed sections.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

type DFResult<T> = datafusion::error::Result<T>;

const WATERMARK_KEY: &str = "weir.watermark";
const SECTIONS_MAGIC: &[u8] = b"WEIRST1";

/// `rows` (of `schema`) and the watermark as IPC bytes.
pub fn write(schema: &SchemaRef, rows: &[RecordBatch], watermark: Option<i64>) -> DFResult<Vec<u8>> {
    let metadata: HashMap<String, String> =
        watermark.map(|w| (WATERMARK_KEY.to_string(), w.to_string())).into_iter().collect();
    let with_metadata = Arc::new(schema.as_ref().clone().with_metadata(metadata));
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &with_metadata)?;
    if !rows.is_empty() {
        let merged = concat_batches(schema, rows)?;
        writer.write(&RecordBatch::try_new(with_metadata.clone(), merged.columns().to_vec())?)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

/// What [`write`] wrote, as batches of `schema`; empty bytes are no rows.
pub fn read(schema: &SchemaRef, bytes: &[u8]) -> DFResult<(Vec<RecordBatch>, Option<i64>)> {
    if bytes.is_empty() {
        return Ok((Vec::new(), None));
    }
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let watermark = reader.schema().metadata().get(WATERMARK_KEY).and_then(|w| w.parse().ok());
    let mut rows = Vec::new();
    for batch in reader {
        rows.push(RecordBatch::try_new(schema.clone(), batch?.columns().to_vec())?);
    }
    Ok((rows, watermark))
}

/// The shape of a committed state: per section, its columns' names and
/// types (no sections for no state). A query can take over another's state
/// only when both have the same shape.
pub fn shape(bytes: &[u8]) -> DFResult<Vec<Vec<(String, DataType)>>> {
    let sections: Vec<&[u8]> = match unpack(bytes) {
        Some(sections) => sections,
        None if bytes.is_empty() => Vec::new(),
        None => vec![bytes],
    };
    sections
        .into_iter()
        .map(|section| {
            if section.is_empty() {
                return Ok(Vec::new());
            }
            let reader = StreamReader::try_new(std::io::Cursor::new(section), None)?;
            Ok(reader.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect())
        })
        .collect()
}

/// Several snapshots in one commit.
pub fn pack(sections: &[&[u8]]) -> Vec<u8> {
    let mut out = SECTIONS_MAGIC.to_vec();
    for s in sections {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
    }
    out
}

/// The sections [`pack`] wrote, or None for a single snapshot (what
/// single-stream queries commit; IPC never starts with the magic).
pub fn unpack(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rest = bytes.strip_prefix(SECTIONS_MAGIC)?;
    let mut sections = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at_checked(8)?;
        let len = u64::from_le_bytes(len.try_into().ok()?) as usize;
        let (section, tail) = tail.split_at_checked(len)?;
        sections.push(section);
        rest = tail;
    }
    Some(sections)
}
