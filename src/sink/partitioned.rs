//! A sink into a Hive-partitioned table (`PARTITIONED BY (day)`): each row
//! lands in the `col=value/` directory of its partition values, as Spark's
//! `partitionBy` and Hive write them, with the partition columns in the path
//! and not in the files. An epoch's files, in however many partitions, are
//! staged, recorded in one catalog commit and published together, like an
//! unpartitioned sink's (`parquet`): exactly once.
//!
//! In a bucket the same layout is written as keys (`prefix/day=.../`), each
//! partition's files staged and published by copy as the object sink does
//! (`object`); recovery then looks for staged objects under every
//! partition, not only directly under the table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{CastOptions, cast_with_options, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::FormatOptions;

use super::object::{ObjectEpoch, ObjectSink};
use super::{EpochSink, EpochWriter, ParquetSink, PreCommit, Roll, Sink, SinkError, publish};
use crate::catalog::StagedFile;
use crate::storage::TableDir;
use crate::storage::s3::S3Dir;

pub struct PartitionedSink {
    dir: TableDir,
    /// In a bucket: the table's object sink, which publishes and recovers.
    object: Option<ObjectSink>,
    query: String,
    /// Positions of the partition columns in the table's (and the query's)
    /// columns, with their names and declared types.
    partitions: Vec<(usize, String, DataType)>,
    /// The other columns: what the files hold.
    data_schema: SchemaRef,
    roll: Roll,
}

impl PartitionedSink {
    /// `table_schema` is the table's, partition columns included;
    /// `partition_columns` name them. A name the table lacks is a
    /// configuration error.
    pub fn new(
        dir: &TableDir,
        query: &str,
        table_schema: &Schema,
        partition_columns: &[String],
        roll: Roll,
    ) -> Result<PartitionedSink, SinkError> {
        let mut partitions = Vec::new();
        for name in partition_columns {
            let index = table_schema
                .index_of(name)
                .map_err(|_| SinkError::Config(format!("the table has no partition column '{name}' among its columns")))?;
            partitions.push((index, name.clone(), table_schema.field(index).data_type().clone()));
        }
        let data_fields: Vec<_> = table_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| !partitions.iter().any(|(p, _, _)| p == i))
            .map(|(_, f)| f.clone())
            .collect();
        let data_schema = Arc::new(Schema::new(data_fields));
        let object = match dir {
            TableDir::Local(_) => None,
            TableDir::S3(s3) => Some(ObjectSink::new(s3, query, &data_schema, roll)?),
        };
        Ok(PartitionedSink { dir: dir.clone(), object, query: query.to_string(), partitions, data_schema, roll })
    }

    /// An epoch's writer of the partition at `relative` (`day=.../`).
    fn begin_partition(&self, relative: &str, batch_id: i64) -> Result<PartitionWriter, SinkError> {
        Ok(match &self.dir {
            TableDir::Local(dir) => PartitionWriter::Local(
                ParquetSink::new(&dir.join(relative), &self.query, &self.data_schema, self.roll).begin(batch_id),
            ),
            TableDir::S3(s3) => {
                let key = match s3.prefix.as_ref() {
                    "" => relative.to_string(),
                    prefix => format!("{prefix}/{relative}"),
                };
                let prefix = datafusion::object_store::path::Path::parse(&key)
                    .map_err(|e| SinkError::Config(format!("partition '{relative}' as a key: {e}")))?;
                let dir = S3Dir { bucket: s3.bucket.clone(), prefix };
                PartitionWriter::Object(
                    ObjectSink::new(&dir, &self.query, &self.data_schema, self.roll)?.begin_epoch(batch_id),
                )
            }
        })
    }

    /// The partition directories under the table's, `depth` levels down.
    fn partition_dirs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        if depth == 0 {
            out.push(dir.to_path_buf());
            return Ok(());
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() && entry.file_name().to_string_lossy().contains('=') {
                Self::partition_dirs(&entry.path(), depth - 1, out)?;
            }
        }
        Ok(())
    }
}

/// A partition's files of one epoch: in a directory, or in a bucket.
enum PartitionWriter {
    Local(EpochWriter),
    Object(ObjectEpoch),
}

/// One epoch: a writer per partition it has rows for.
struct PartitionedEpoch {
    batch_id: i64,
    sink: Arc<PartitionedSink>,
    writers: HashMap<String, PartitionWriter>,
}

#[async_trait]
impl Sink for PartitionedSink {
    fn begin(&self, batch_id: i64) -> Box<dyn EpochSink> {
        let sink = Arc::new(PartitionedSink {
            dir: self.dir.clone(),
            object: self.object.clone(),
            query: self.query.clone(),
            partitions: self.partitions.clone(),
            data_schema: self.data_schema.clone(),
            roll: self.roll,
        });
        Box::new(PartitionedEpoch { batch_id, sink, writers: HashMap::new() })
    }

    /// In a bucket, its own gate (see `ObjectSink`).
    fn publishes_under_gate(&self) -> bool {
        self.object.is_none()
    }

    async fn commit(&self, pre_commit: &PreCommit) -> Result<(), SinkError> {
        match &self.object {
            Some(object) => object.publish(&object.own_below(&pre_commit.files)).await,
            None => Ok(publish(&pre_commit.files)?),
        }
    }

    /// Publishes what the last commit recorded under the table, then deletes
    /// every other file this query staged in any partition.
    async fn recover(&self, last: &PreCommit) -> Result<(), SinkError> {
        let dir = match (&self.dir, &self.object) {
            (_, Some(object)) => return object.recover_files_below(&object.own_below(&last.files)).await,
            (TableDir::Local(dir), None) => dir,
            (TableDir::S3(_), None) => return Err(SinkError::Config("a sink in a bucket without its store".into())),
        };
        let own: Vec<StagedFile> = last.files.iter().filter(|f| Path::new(&f.staged).starts_with(dir)).cloned().collect();
        publish(&own)?;
        let mut dirs = Vec::new();
        Self::partition_dirs(dir, self.partitions.len(), &mut dirs)?;
        for dir in dirs {
            ParquetSink::new(&dir, &self.query, &self.data_schema, self.roll).recover(&[])?;
        }
        Ok(())
    }
}

#[async_trait]
impl EpochSink for PartitionedEpoch {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let sink = self.sink.clone();
        let paths = partition_paths(batch, &sink.partitions)?;
        // Rows grouped by partition, in the order partitions first appear.
        let mut order: Vec<&str> = Vec::new();
        let mut rows: HashMap<&str, Vec<u32>> = HashMap::new();
        for (row, path) in paths.iter().enumerate() {
            rows.entry(path.as_str())
                .or_insert_with(|| {
                    order.push(path.as_str());
                    Vec::new()
                })
                .push(row as u32);
        }
        let data_columns: Vec<_> = (0..batch.num_columns())
            .filter(|i| !sink.partitions.iter().any(|(p, _, _)| p == i))
            .map(|i| batch.column(i).clone())
            .collect();
        for path in order {
            let indices = UInt32Array::from(rows.remove(path).unwrap_or_default());
            let columns = data_columns
                .iter()
                .map(|c| take(c.as_ref(), &indices, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| SinkError::Io(std::io::Error::other(e)))?;
            let part = RecordBatch::try_new_with_options(
                Arc::new(Schema::new(
                    data_columns
                        .iter()
                        .zip(sink.data_schema.fields())
                        .map(|(c, f)| Field::new(f.name(), c.data_type().clone(), true))
                        .collect::<Vec<_>>(),
                )),
                columns,
                &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(indices.len())),
            )
            .map_err(|e| SinkError::Io(std::io::Error::other(e)))?;
            if !self.writers.contains_key(path) {
                self.writers.insert(path.to_string(), sink.begin_partition(path, self.batch_id)?);
            }
            match self.writers.get_mut(path) {
                Some(PartitionWriter::Local(writer)) => writer.write(&part)?,
                Some(PartitionWriter::Object(writer)) => writer.write_batch(&part).await?,
                None => {}
            }
        }
        Ok(())
    }

    async fn prepare(self: Box<Self>) -> Result<PreCommit, SinkError> {
        let mut pre_commit = PreCommit::default();
        let mut parents = std::collections::BTreeSet::new();
        for (relative, writer) in self.writers {
            let (files, bytes) = match writer {
                PartitionWriter::Local(writer) => writer.finish()?,
                PartitionWriter::Object(writer) => writer.finish().await?,
            };
            pre_commit.files.extend(files);
            pre_commit.bytes += bytes;
            // Each new `col=value/` entry must be durable in its parent
            // before the catalog says the files under it exist.
            if let TableDir::Local(root) = &self.sink.dir {
                let mut dir = root.join(&relative);
                while dir != *root && dir.pop() {
                    parents.insert(dir.clone());
                }
            }
        }
        for dir in parents {
            if let Ok(dir) = std::fs::File::open(&dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(pre_commit)
    }

    fn abort(self: Box<Self>) {
        for (_, writer) in self.writers {
            match writer {
                PartitionWriter::Local(writer) => writer.abort(),
                PartitionWriter::Object(writer) => writer.abort_epoch(),
            }
        }
    }
}

/// Each row's partition directory, relative to the table's:
/// `day=2026-11-20` or `country=fr/day=2026-11-20`. Values are first cast
/// to the column's declared type (as the files' columns are), so what is
/// read back from the path is what was written. A NULL or empty value is an
/// error: DataFusion would read Hive's `__HIVE_DEFAULT_PARTITION__` back as
/// that text, or fail on it for a typed column.
fn partition_paths(batch: &RecordBatch, partitions: &[(usize, String, DataType)]) -> Result<Vec<String>, SinkError> {
    let options = CastOptions { safe: false, format_options: FormatOptions::default() };
    let mut paths = vec![String::new(); batch.num_rows()];
    for (index, name, declared) in partitions {
        let column = batch.column(*index);
        let unfit = |e: datafusion::arrow::error::ArrowError| {
            SinkError::Config(format!("a value of partition column '{name}' does not fit its type {declared}: {e}"))
        };
        let typed = cast_with_options(column, declared, &options).map_err(unfit)?;
        let text = cast_with_options(&typed, &DataType::Utf8, &options).map_err(unfit)?;
        let text = text.as_string::<i32>();
        for (row, path) in paths.iter_mut().enumerate() {
            if text.is_null(row) || text.value(row).is_empty() {
                return Err(SinkError::Config(format!(
                    "partition column '{name}' is NULL or empty in a row; a partition needs a value \
                     (COALESCE it in the query, or filter such rows out)"
                )));
            }
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(&escape(name));
            path.push('=');
            path.push_str(&escape(text.value(row)));
        }
    }
    Ok(paths)
}

/// Hive's escaping of a path segment: characters that would change the
/// path's meaning (`/`, `=`, `%`, ...) and control characters as `%XX`;
/// also the `.` of a value ending in a suffix the listing rule hides
/// (`x.tmp`), so no committed partition is hidden from readers.
pub fn escape(value: &str) -> String {
    let lower = value.to_ascii_lowercase();
    let hidden_dot = crate::storage::listing::UNFINISHED_SUFFIXES
        .iter()
        .find(|suffix| lower.ends_with(*suffix))
        .map(|suffix| value.len() - suffix.len());
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.char_indices() {
        let special = matches!(c, '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^')
            || c.is_control()
            || Some(i) == hidden_dot;
        if special {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    #[test]
    fn path_like_values_stay_one_directory_level() {
        assert_eq!(escape("2026-11-20"), "2026-11-20");
        assert_eq!(escape("../etc"), "..%2Fetc");
        assert_eq!(escape("x.tmp"), "x%2Etmp", "not hidden by the listing rule");
        assert!(!escape("a/b").contains('/'));
        // A value never starts a path segment (that is `name=value`), so
        // `..` is an ordinary value there.
        assert_eq!(escape(".."), "..");
        assert_eq!(escape("k=v"), "k%3Dv");
    }

    #[tokio::test]
    async fn rows_land_in_their_partitions_and_recovery_keeps_only_commits() {
        let root = tempfile::tempdir().unwrap();
        let schema = Schema::new(vec![Field::new("v", DataType::Int64, true), Field::new("day", DataType::Utf8, true)]);
        let sink = PartitionedSink::new(
            &TableDir::Local(root.path().to_path_buf()),
            "q",
            &schema,
            &["day".to_string()],
            Roll::default(),
        )
        .unwrap();
        let batch = |days: Vec<Option<&str>>| {
            let values: Vec<i64> = (0..days.len() as i64).collect();
            RecordBatch::try_new(
                Arc::new(schema.clone()),
                vec![Arc::new(Int64Array::from(values)), Arc::new(StringArray::from(days))],
            )
            .unwrap()
        };
        let mut epoch = sink.begin(0);
        epoch.write(&batch(vec![Some("2026-11-20"), Some("a/../b"), Some("2026-11-20")])).await.unwrap();
        let pre = epoch.prepare().await.unwrap();
        assert_eq!(pre.files.len(), 2);
        // Committed, then the server died before publishing: recovery
        // publishes exactly the committed files.
        let mut lost = sink.begin(1);
        lost.write(&batch(vec![Some("2026-11-21")])).await.unwrap();
        let staged = lost.prepare().await.unwrap();
        sink.recover(&pre).await.unwrap();
        assert!(staged.files.iter().all(|f| !Path::new(&f.staged).exists()), "an uncommitted epoch's files go");
        assert!(pre.files.iter().all(|f| Path::new(&f.visible).exists()), "the committed epoch's files are published");
        let mut visible: Vec<String> = pre
            .files
            .iter()
            .map(|f| Path::new(&f.visible).strip_prefix(root.path()).unwrap().parent().unwrap().display().to_string())
            .collect();
        visible.sort();
        assert_eq!(visible, vec!["day=2026-11-20", "day=a%2F..%2Fb"], "a value stays one directory");
        // The files hold the other columns only: the day is in the path.
        let file = std::fs::File::open(&pre.files[0].visible).unwrap();
        let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let names: Vec<&str> = reader.schema().fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["v"]);
        // A row without a partition value fails the epoch, saying which column.
        let mut nulls = sink.begin(2);
        let err = nulls.write(&batch(vec![Some("2026-11-22"), None])).await.unwrap_err();
        assert!(err.to_string().contains("partition column 'day' is NULL or empty"), "{err}");
    }
}
