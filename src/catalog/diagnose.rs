//! Finding the file behind a failed read. DataFusion's errors for a corrupt
//! page or a column whose type differs between files say what went wrong
//! but not where; on the error path only, these look through a table's
//! files for the one that fails the same way, so the message can name it.

use std::path::{Path, PathBuf};

use crate::error::QueryError;

/// The file under `location` behind a read that failed with `error` (its
/// text; empty after a panic): the file whose column type matches a cast
/// error, else the first whose footer or data cannot be read. Reading a
/// crafted file may itself panic; that counts as the file being bad.
pub fn culprit(location: &str, error: &str) -> Option<QueryError> {
    if let Some(found) = mismatched_column(location, error) {
        return Some(found);
    }
    parquet_files(location).into_iter().find_map(|path| {
        let reason = match std::panic::catch_unwind(|| unreadable(&path)) {
            Ok(reason) => reason?,
            Err(_) => "reading it makes the Parquet reader panic".to_string(),
        };
        Some(QueryError::BadParquetFile { path: path.display().to_string(), reason })
    })
}

/// Why `path` cannot be read as Parquet (footer, then every page), if so.
fn unreadable(path: &Path) -> Option<String> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).ok()?;
    match ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()) {
        Err(e) => Some(e.to_string()),
        Ok(reader) => reader.into_iter().find_map(|batch| batch.err()).map(|e| e.to_string()),
    }
}

/// For DataFusion's "Cannot cast column 'c' from 'T' (physical data type)
/// to 'U' (logical data type)": the first file under `location` whose
/// column `c` has type `T`.
fn mismatched_column(location: &str, error: &str) -> Option<QueryError> {
    let rest = error.split("Cannot cast column '").nth(1)?;
    let (column, rest) = rest.split_once("' from '")?;
    let (physical, rest) = rest.split_once("' (physical data type) to '")?;
    let (logical, _) = rest.split_once("' (logical data type)")?;
    parquet_files(location).into_iter().find_map(|path| {
        let schema = std::panic::catch_unwind(|| arrow_schema(&path)).ok().flatten()?;
        let field = schema.field_with_name(column).ok()?;
        (field.data_type().to_string() == physical).then(|| QueryError::BadParquetFile {
            path: path.display().to_string(),
            reason: format!("column '{column}' is {physical} in this file, but the table declares it {logical}"),
        })
    })
}

fn arrow_schema(path: &Path) -> Option<datafusion::arrow::datatypes::SchemaRef> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).ok()?;
    ParquetRecordBatchReaderBuilder::try_new(file).ok().map(|b| b.schema().clone())
}

/// The visible files under a table's location (a file, or a directory
/// walked in name order), skipping the names readers never read (the
/// listing rule of `storage::listing`, below the location itself).
fn parquet_files(location: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
    let mut files = Vec::new();
    let mut pending = vec![(root, true)];
    while let Some((path, is_root)) = pending.pop() {
        if !is_root && !path.file_name().and_then(|n| n.to_str()).is_some_and(crate::storage::is_visible) {
            continue;
        }
        if path.is_dir() {
            let Ok(entries) = std::fs::read_dir(&path) else { continue };
            let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            pending.extend(children.into_iter().rev().map(|c| (c, false)));
        } else {
            files.push(path);
        }
    }
    files
}
