//! Stream formats (`format = '...'`) and their options: how records are
//! encoded, read from the WITH clause and checked, and the fixed schema of
//! the formats that do not split a record into columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// How a stream's records are encoded (`format = '...'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv {
        header: bool,
        delimiter: u8,
    },
    /// One `value` text column per record (line or message).
    Text,
    /// One `value` bytea column per record.
    Bytes,
    /// Whole Parquet files (file connector only).
    Parquet,
}

/// Valid `format` names, in the order error messages list them.
pub const FORMATS: &[&str] = &["json", "csv", "text", "bytes", "parquet"];

/// Options read by [`Format::parse`] (only meaningful with `format = 'csv'`).
pub const FORMAT_OPTIONS: &[&str] = &["header", "delimiter"];

impl Format {
    /// Reads `format = '<name>'` and, for CSV, the `header` ('true'/'false',
    /// default false) and `delimiter` (one ASCII character, or `\t`, default
    /// ',') options. CSV options given with another format are rejected
    /// rather than silently ignored.
    pub fn parse(name: &str, options: &BTreeMap<String, String>) -> Result<Format, String> {
        let format = match name.to_ascii_lowercase().as_str() {
            "json" => Format::Json,
            "csv" => Format::Csv {
                header: match options.get("header") {
                    None => false,
                    Some(v) => parse_bool("header", v)?,
                },
                delimiter: match options.get("delimiter") {
                    None => b',',
                    Some(v) => parse_delimiter(v)?,
                },
            },
            "text" => Format::Text,
            "bytes" => Format::Bytes,
            "parquet" => Format::Parquet,
            other => {
                return Err(format!("unknown format '{other}'; expected one of: {}", FORMATS.join(", ")));
            }
        };
        if !matches!(format, Format::Csv { .. })
            && let Some(key) = FORMAT_OPTIONS.iter().find(|k| options.contains_key(**k))
        {
            return Err(format!("option '{key}' only applies to format 'csv', not '{}'", format.name()));
        }
        Ok(format)
    }

    /// The name as written in `format = '...'`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv { .. } => "csv",
            Format::Text => "text",
            Format::Bytes => "bytes",
            Format::Parquet => "parquet",
        }
    }
}

/// Parses a 'true'/'false' option value (case-insensitive).
pub fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("option '{key}' must be 'true' or 'false', got '{value}'")),
    }
}

fn parse_delimiter(value: &str) -> Result<u8, String> {
    // SQL string literals cannot hold a tab conveniently, so accept `\t`.
    if value == "\\t" {
        return Ok(b'\t');
    }
    match value.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' && *b != b'"' => Ok(*b),
        _ => Err(format!("option 'delimiter' must be a single ASCII character (not a quote or line break), got '{value}'")),
    }
}

/// The fixed schema of formats whose records are not split into columns:
/// `value TEXT` for text, `value BYTEA` for bytes. `None` for formats whose
/// columns the user declares.
pub fn value_schema_for(format: &Format) -> Option<SchemaRef> {
    let data_type = match format {
        Format::Text => DataType::Utf8,
        Format::Bytes => DataType::Binary,
        Format::Json | Format::Csv { .. } | Format::Parquet => return None,
    };
    Some(Arc::new(Schema::new(vec![Field::new("value", data_type, true)])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parse() {
        let mut options = BTreeMap::new();
        assert_eq!(Format::parse("JSON", &options), Ok(Format::Json));
        assert_eq!(Format::parse("csv", &options), Ok(Format::Csv { header: false, delimiter: b',' }));
        options.insert("header".to_string(), "TRUE".to_string());
        options.insert("delimiter".to_string(), "\\t".to_string());
        assert_eq!(Format::parse("csv", &options), Ok(Format::Csv { header: true, delimiter: b'\t' }));
        assert!(Format::parse("json", &options).is_err_and(|e| e.contains("'header'")));
        let err = Format::parse("avro", &BTreeMap::new()).unwrap_err();
        assert!(err.contains("json, csv, text, bytes, parquet"), "{err}");
        options.insert("delimiter".to_string(), ";;".to_string());
        assert!(Format::parse("csv", &options).is_err());
        options.insert("delimiter".to_string(), "|".to_string());
        options.insert("header".to_string(), "yes".to_string());
        assert!(Format::parse("csv", &options).is_err());
    }
}
