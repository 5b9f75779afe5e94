//! The Parquet sink and the file half of the commit protocol.
//!
//! Per epoch: rows are written to *staged* files whose names no reader picks
//! up (they start with `.` and do not end in `.parquet`: DataFusion's and
//! DuckDB's listings filter on the extension, not on hidden prefixes); the
//! runner commits the staged names with the source checkpoint in one catalog
//! transaction; then [`publish`] renames them visible. Recovery publishes
//! what the last commit recorded and deletes every other staged file of the
//! query, so a crash at any point leaves each row visible exactly once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::util::display::FormatOptions;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;

use async_trait::async_trait;

use super::{EpochSink, PreCommit, Sink, SinkError};
use crate::catalog::StagedFile;

/// When an open file is closed and the next rows go to a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roll {
    /// Estimated file size in bytes (`target_file_size`).
    pub bytes: u64,
    /// Rows per file (`target_file_rows`).
    pub rows: u64,
}

impl Default for Roll {
    fn default() -> Self {
        Roll { bytes: 128 * 1024 * 1024, rows: u64::MAX }
    }
}

/// Writes one query's output into one table directory.
#[derive(Debug, Clone)]
pub struct ParquetSink {
    dir: PathBuf,
    query: String,
    /// The table's columns as files store them (timestamps in microseconds).
    file_schema: SchemaRef,
    roll: Roll,
}

/// An epoch's open writer plus the files it has finished.
pub struct EpochWriter {
    sink: ParquetSink,
    batch_id: i64,
    /// Distinguishes attempts of the same epoch, so a retried epoch never
    /// overwrites a file some reader might hold open.
    attempt: String,
    current: Option<(ArrowWriter<File>, StagedFile)>,
    /// Rows in the open file.
    current_rows: u64,
    finished: Vec<StagedFile>,
    pub rows: u64,
    pub bytes: u64,
}

/// The type a column is stored as in Parquet: nanosecond timestamps become
/// microseconds (what Spark and most readers expect), recursively; other
/// types unchanged.
pub fn micros(dt: &DataType) -> DataType {
    match dt {
        DataType::Timestamp(TimeUnit::Nanosecond, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
        DataType::List(f) => DataType::List(Arc::new(f.as_ref().clone().with_data_type(micros(f.data_type())))),
        DataType::Struct(fields) => DataType::Struct(
            fields.iter().map(|f| Arc::new(f.as_ref().clone().with_data_type(micros(f.data_type())))).collect(),
        ),
        other => other.clone(),
    }
}

/// The schema files store `table_schema` in: every column nullable,
/// timestamps in microseconds.
pub fn micros_schema(table_schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> =
        table_schema.fields().iter().map(|f| Field::new(f.name(), micros(f.data_type()), true)).collect();
    Arc::new(Schema::new(fields))
}

/// The prefix of a query's staged files: the query name hex-encoded, so no
/// other query's prefix can be a prefix of it.
pub fn staged_prefix(query: &str) -> String {
    let hex: String = query.bytes().map(|b| format!("{b:02x}")).collect();
    format!(".weir.{hex}.")
}

/// A random tag for one attempt at an epoch, in its files' names: a retried
/// epoch never overwrites a file some reader might hold open.
pub fn attempt_tag() -> String {
    crate::random::bytes().iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The staged and the final name of file `n` of epoch `batch_id`.
pub fn file_names(query: &str, batch_id: i64, n: usize, attempt: &str) -> (String, String) {
    let query_part: String = query.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    // A leading `_` would make the published file hidden by the listing
    // rule (`storage::listing`): a view named `_x` or `"../x"`.
    let query_part = match query_part.trim_start_matches('_') {
        "" => "q",
        trimmed => trimmed,
    };
    let visible = format!("{query_part}-{batch_id:06}-{n:03}-{attempt}.parquet");
    let staged = format!("{}{batch_id:06}.{n:03}.{attempt}.pending", staged_prefix(query));
    (staged, visible)
}

impl ParquetSink {
    /// `table_schema` is the target table's schema; output batches are cast
    /// to it by position.
    pub fn new(dir: &Path, query: &str, table_schema: &Schema, roll: Roll) -> ParquetSink {
        ParquetSink { dir: dir.to_path_buf(), query: query.to_string(), file_schema: micros_schema(table_schema), roll }
    }

    pub fn file_schema(&self) -> &SchemaRef {
        &self.file_schema
    }

    fn staged_prefix(&self) -> String {
        staged_prefix(&self.query)
    }

    pub fn begin(&self, batch_id: i64) -> EpochWriter {
        let attempt = attempt_tag();
        EpochWriter {
            sink: self.clone(),
            batch_id,
            attempt,
            current: None,
            current_rows: 0,
            finished: Vec::new(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Makes a crashed run's files consistent with the commit log: files of
    /// the last committed epoch are published (the crash may have come
    /// between commit and rename); every other staged file of this query is
    /// an uncommitted leftover and is deleted.
    pub fn recover(&self, last_committed: &[StagedFile]) -> std::io::Result<()> {
        publish(last_committed)?;
        let prefix = self.staged_prefix();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".pending") {
                tracing::info!(file = %entry.path().display(), "removing uncommitted file");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

impl EpochWriter {
    /// Appends query output. Batches are cast to the table's column types
    /// by position; a value that does not fit fails the epoch.
    pub fn write(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(batch, &self.sink.file_schema).map_err(std::io::Error::other)?;
        // A batch is split where the row limit falls, so files hold at most
        // `roll.rows` rows.
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.current.is_none() {
                self.current = Some(self.open()?);
                self.current_rows = 0;
            }
            let room = self.sink.roll.rows.saturating_sub(self.current_rows).max(1);
            let take = (batch.num_rows() - offset).min(usize::try_from(room).unwrap_or(usize::MAX));
            let Some((writer, _)) = self.current.as_mut() else { return Ok(()) };
            writer.write(&batch.slice(offset, take)).map_err(std::io::Error::other)?;
            offset += take;
            self.current_rows += take as u64;
            self.rows += take as u64;
            let size = writer.bytes_written() as u64 + writer.in_progress_size() as u64;
            if size >= self.sink.roll.bytes || self.current_rows >= self.sink.roll.rows {
                self.roll()?;
            }
        }
        Ok(())
    }

    fn open(&mut self) -> std::io::Result<(ArrowWriter<File>, StagedFile)> {
        let (staged, visible) = file_names(&self.sink.query, self.batch_id, self.finished.len(), &self.attempt);
        let staged_path = self.sink.dir.join(&staged);
        std::fs::create_dir_all(&self.sink.dir)?;
        let file = File::create(&staged_path)?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let writer =
            ArrowWriter::try_new(file, self.sink.file_schema.clone(), Some(props)).map_err(std::io::Error::other)?;
        let names = StagedFile {
            staged: staged_path.display().to_string(),
            visible: self.sink.dir.join(visible).display().to_string(),
            bytes: None,
        };
        Ok((writer, names))
    }

    /// Closes the open file (footer written, synced) and starts no new one
    /// until more rows come.
    fn roll(&mut self) -> std::io::Result<()> {
        if let Some((writer, names)) = self.current.take() {
            let file = writer.into_inner().map_err(std::io::Error::other)?;
            file.sync_all()?;
            self.bytes += file.metadata()?.len();
            self.finished.push(names);
        }
        Ok(())
    }

    /// Closes everything; the staged files to commit. Empty when the epoch
    /// produced no rows: an empty epoch writes no file.
    pub fn finish(mut self) -> std::io::Result<(Vec<StagedFile>, u64)> {
        self.roll()?;
        if let Ok(dir) = File::open(&self.sink.dir) {
            // The directory entries of the new files must be durable before
            // the catalog says they exist.
            let _ = dir.sync_all();
        }
        Ok((std::mem::take(&mut self.finished), self.bytes))
    }

    /// Deletes what this epoch staged (the query is stopping mid-epoch).
    pub fn abort(mut self) {
        if let Some((_, names)) = self.current.take() {
            let _ = std::fs::remove_file(&names.staged);
        }
        for names in self.finished.drain(..) {
            let _ = std::fs::remove_file(&names.staged);
        }
    }
}

#[async_trait]
impl Sink for ParquetSink {
    fn begin(&self, batch_id: i64) -> Box<dyn EpochSink> {
        Box::new(ParquetSink::begin(self, batch_id))
    }

    async fn commit(&self, pre_commit: &PreCommit) -> Result<(), SinkError> {
        Ok(publish(&pre_commit.files)?)
    }

    async fn recover(&self, last: &PreCommit) -> Result<(), SinkError> {
        let own: Vec<StagedFile> =
            last.files.iter().filter(|f| Path::new(&f.staged).parent() == Some(self.dir.as_path())).cloned().collect();
        Ok(ParquetSink::recover(self, &own)?)
    }
}

#[async_trait::async_trait]
impl EpochSink for EpochWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        Ok(EpochWriter::write(self, batch)?)
    }

    async fn prepare(self: Box<Self>) -> Result<PreCommit, SinkError> {
        let (files, bytes) = self.finish()?;
        Ok(PreCommit { files, bytes, ..PreCommit::default() })
    }

    fn abort(self: Box<Self>) {
        EpochWriter::abort(*self)
    }
}

/// Renames committed files visible. Idempotent: a file already renamed is
/// skipped, so recovery can run it again after a crash halfway through.
pub fn publish(files: &[StagedFile]) -> std::io::Result<()> {
    for f in files {
        match std::fs::rename(&f.staged, &f.visible) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && Path::new(&f.visible).exists() => {}
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("publishing {}: {e}", f.visible))),
        }
    }
    Ok(())
}

/// Casts `batch` to `schema` column by column (by position, names from the
/// schema). Values that do not fit are errors, not nulls.
pub fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let options = CastOptions { safe: false, format_options: FormatOptions::default() };
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(
            |(c, f)| {
                if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast_with_options(c, f.data_type(), &options) }
            },
        )
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::DataType;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn visible_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn staged_files_are_invisible_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ParquetSink::new(dir.path(), "q", &batch(&[]).schema(), Roll::default());
        let mut w = sink.begin(0);
        w.write(&batch(&[1, 2, 3])).unwrap();
        let (files, bytes) = w.finish().unwrap();
        assert_eq!(files.len(), 1);
        assert!(bytes > 0);
        assert!(visible_files(dir.path()).is_empty());
        publish(&files).unwrap();
        publish(&files).unwrap();
        assert_eq!(visible_files(dir.path()).len(), 1);
        for name in visible_files(dir.path()).iter().chain(files.iter().map(|f| &f.staged)) {
            let name = name.rsplit('/').next().unwrap_or_default();
            let staged = name.ends_with(".pending");
            assert_eq!(crate::storage::is_visible(name), !staged, "{name}");
        }
    }

    #[test]
    fn published_names_are_visible_whatever_the_query_is_called() {
        let dir = tempfile::tempdir().unwrap();
        for query in ["_x", "../../escape", "__", ".hidden"] {
            let sink = ParquetSink::new(dir.path(), query, &batch(&[]).schema(), Roll::default());
            let mut w = sink.begin(0);
            w.write(&batch(&[1])).unwrap();
            let (files, _) = w.finish().unwrap();
            let visible = files[0].visible.rsplit('/').next().unwrap_or_default().to_string();
            assert!(crate::storage::is_visible(&visible), "{query}: {visible}");
            assert!(!crate::storage::is_visible(files[0].staged.rsplit('/').next().unwrap_or_default()));
        }
    }

    #[test]
    fn recovery_publishes_committed_and_deletes_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ParquetSink::new(dir.path(), "q", &batch(&[]).schema(), Roll::default());
        let other = ParquetSink::new(dir.path(), "q2", &batch(&[]).schema(), Roll::default());
        let mut committed = sink.begin(0);
        committed.write(&batch(&[1])).unwrap();
        let (committed, _) = committed.finish().unwrap();
        let mut leftover = sink.begin(1);
        leftover.write(&batch(&[2])).unwrap();
        leftover.finish().unwrap();
        let mut others = other.begin(0);
        others.write(&batch(&[3])).unwrap();
        others.finish().unwrap();

        sink.recover(&committed).unwrap();
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        assert_eq!(visible_files(dir.path()).len(), 1);
        assert_eq!(names.iter().filter(|n| n.ends_with(".pending")).count(), 1, "q2's staged file stays: {names:?}");
    }

    #[test]
    fn files_roll_at_target_size_and_empty_epochs_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ParquetSink::new(dir.path(), "q", &batch(&[]).schema(), Roll { bytes: 1, rows: u64::MAX });
        let mut w = sink.begin(0);
        w.write(&batch(&[1])).unwrap();
        w.write(&batch(&[2])).unwrap();
        assert_eq!(w.finish().unwrap().0.len(), 2);
        let by_rows = ParquetSink::new(dir.path(), "r", &batch(&[]).schema(), Roll { bytes: u64::MAX, rows: 2 });
        let mut w = by_rows.begin(0);
        w.write(&batch(&[1, 2, 3])).unwrap();
        w.write(&batch(&[4, 5])).unwrap();
        assert_eq!(w.rows, 5);
        assert_eq!(w.finish().unwrap().0.len(), 3, "2 + 2 + 1 rows");
        let empty = sink.begin(1);
        assert!(empty.finish().unwrap().0.is_empty());
    }
}
