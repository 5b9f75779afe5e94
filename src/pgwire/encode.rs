//! Arrow → PostgreSQL result encoding: the type each Arrow column is sent as,
//! its row description, and whole record batches as `DataRow` messages in the
//! text or binary format each column was requested in.
//!
//! Values are written by hand into one buffer per batch (see `encode_column`
//! and `encode_text`) rather than through `DataRowEncoder`, so every column is
//! downcast once per batch and no value allocates.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::json::writer::EncoderOptions;
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;

use super::encode_column;
use crate::types::{pg_type, type_modifier, type_size};

/// Why a batch could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A date/time value PostgreSQL's types cannot hold.
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    /// An unsigned 64-bit value above bigint's range.
    #[error("value {0} is out of range for type bigint")]
    BigintOutOfRange(u64),
    #[error("value too large to send: a field is limited to 1 GB")]
    ValueTooLarge,
    #[error("result has more columns than the protocol allows ({0})")]
    TooManyColumns(usize),
    #[error("result has {columns} columns but {fields} field descriptions")]
    FieldCountMismatch { columns: usize, fields: usize },
    #[error("row {0} is outside its array")]
    RowOutOfBounds(usize),
    #[error("cannot encode result column: {0}")]
    Arrow(ArrowError),
    #[error("internal encoding error: {0}")]
    Internal(String),
}

impl EncodeError {
    fn sqlstate(&self) -> &'static str {
        match self {
            EncodeError::OutOfRange(_) => "22008",
            EncodeError::BigintOutOfRange(_) => "22003",
            EncodeError::ValueTooLarge => "54000",
            EncodeError::TooManyColumns(_) => "54011",
            EncodeError::FieldCountMismatch { .. }
            | EncodeError::RowOutOfBounds(_)
            | EncodeError::Arrow(_)
            | EncodeError::Internal(_) => "XX000",
        }
    }
}

impl From<EncodeError> for PgWireError {
    fn from(e: EncodeError) -> Self {
        PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), e.sqlstate().into(), e.to_string())))
    }
}

/// The format of result column `idx`; a malformed per-column list (which
/// pgwire's `Format::format_for` would index out of bounds) reads as text.
fn format_of(format: &Format, idx: usize) -> FieldFormat {
    match format {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        Format::Individual(codes) => codes.get(idx).map_or(FieldFormat::Text, |c| FieldFormat::from(*c)),
    }
}

/// Row description for a result schema; `format` is the client's requested result format (text/binary per column).
pub fn field_infos(schema: &Schema, format: &Format) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let t = pg_type(f.data_type());
            let size = type_size(&t);
            FieldInfo::new(client_name(f.name()), None, None, t, format_of(format, i))
                .with_type_size(size)
                .with_type_modifier(type_modifier(f.data_type()))
        })
        .collect()
}

/// The column name a client sees. PostgreSQL allows duplicate output names
/// (`SELECT n.oid, n.*`); DataFusion does not, so the compatibility parser
/// renames duplicates to `__alias_<name>`, and the wire restores the name.
fn client_name(name: &str) -> String {
    name.strip_prefix("__alias_").unwrap_or(name).to_string()
}

/// Encodes every row of `batch` (columns in schema order) for the given fields.
///
/// The PostgreSQL type of each column is `pg_type` of its Arrow type, so
/// `fields` should come from [`field_infos`] on the same schema; only their
/// formats are read here.
pub fn encode_batch(batch: &RecordBatch, fields: &Arc<Vec<FieldInfo>>) -> PgWireResult<Vec<DataRow>> {
    Ok(encode_rows(batch, fields)?)
}

fn encode_rows(batch: &RecordBatch, fields: &[FieldInfo]) -> Result<Vec<DataRow>, EncodeError> {
    if batch.num_columns() != fields.len() {
        return Err(EncodeError::FieldCountMismatch { columns: batch.num_columns(), fields: fields.len() });
    }
    let field_count = i16::try_from(fields.len()).map_err(|_| EncodeError::TooManyColumns(fields.len()))?;
    // PostgreSQL's row_to_json keeps null members, so do the same.
    let json = EncoderOptions::default().with_explicit_nulls(true);
    let schema = batch.schema_ref();
    let mut columns = Vec::with_capacity(fields.len());
    for (i, info) in fields.iter().enumerate() {
        let (Some(array), Some(field)) = (batch.columns().get(i), schema.fields().get(i)) else {
            return Err(EncodeError::Internal(format!("column {i} missing from batch")));
        };
        let binary = info.format() == FieldFormat::Binary;
        columns.push(encode_column::column(array.as_ref(), field, binary, &json)?);
    }

    // All rows go into one buffer that is then split into per-row views, so
    // the batch costs one allocation rather than one per row.
    let rows = batch.num_rows();
    let mut buf = Vec::with_capacity(rows * (fields.len() * 12 + 8));
    let mut ends = Vec::with_capacity(rows);
    for row in 0..rows {
        for column in &mut columns {
            column.write_field(row, &mut buf)?;
        }
        ends.push(buf.len());
    }
    let mut data = DataRow::new(buf.as_slice().into(), field_count).data;
    let mut out = Vec::with_capacity(rows);
    let mut start = 0;
    for end in ends {
        out.push(DataRow::new(data.split_to(end - start), field_count));
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
