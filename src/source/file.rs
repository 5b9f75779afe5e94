//! File connector: every file that appears in a directory (not its
//! subdirectories) becomes rows, each exactly once, oldest first.
//!
//! Like Spark's file source, files must appear whole: write them elsewhere
//! (or under a hidden name) and rename them into the directory. Names starting
//! with '.' or '_', containing '#' (object_store's staging names, so a
//! `COPY ... TO` into the directory is safe), or ending in '.tmp',
//! '.crdownload', '.partial' or '.pending' are never read (the listing rule
//! of `storage::listing`, the same for tables), so `mv .x.json.tmp x.json`
//! is the usual pattern; a file read while still being written loses
//! whatever is written after it was read.
//!
//! `poll` is not cancel-safe mid-read (a dropped poll loses the open file's
//! place): after cancelling one, drop the source and restore a new one, as a
//! stopping query does anyway.
//!
//! A large file is read across polls: the checkpoint records how far into the
//! file the epoch got (`{"files": [...done...], "current": {"file", "offset",
//! "line"}}`, offset in bytes, or in rows for Parquet), so a restart resumes
//! mid-file and the file is never held whole in memory.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::compute::{CastOptions, can_cast_types, cast_with_options};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ParquetRecordBatchStreamBuilder;
use datafusion::parquet::arrow::async_reader::ParquetRecordBatchStream;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncSeekExt, BufReader};

use super::decode::parse_bool;
use super::{BadRecord, Bound, Chunk, Format, Poll, RecordDecoder, Source, SourceError, SourceSpec};

/// Options of `connector = 'file'` besides the common ones.
pub const OPTIONS: &[&str] = &["path", "latest_first", "max_files_per_trigger"];

/// Most records decoded into one batch: a large file becomes many batches.
const MAX_BATCH_RECORDS: usize = 65_536;
/// How often a waiting poll lists the directory again.
const LIST_INTERVAL: Duration = Duration::from_millis(100);
const READ_BUFFER: usize = 1 << 20;
const PARQUET_BATCH_ROWS: usize = 8192;

/// Reads the files of one directory in order, each exactly once.
pub struct FileSource {
    stream: String,
    dir: PathBuf,
    schema: SchemaRef,
    format: Format,
    latest_first: bool,
    /// Files started per epoch at most; reached, polls are idle until `checkpoint`.
    max_files_per_trigger: Option<usize>,
    decoder: RecordDecoder,
    /// Every file finished, in a committed epoch or this one: never read again.
    done: HashSet<String>,
    /// Files finished since the last checkpoint: what `checkpoint` reports.
    epoch_files: Vec<String>,
    /// Files opened since the last checkpoint, against `max_files_per_trigger`.
    files_started: usize,
    /// Records delivered since the last checkpoint. The runner skips the
    /// checkpoint of an epoch without records, so the file limit only holds
    /// once some were delivered (else empty files would stall the stream).
    epoch_records: usize,
    /// Files listed but not yet opened (unbounded mode); cleared each epoch so
    /// that every epoch sees newly arrived files in the right order.
    pending: VecDeque<String>,
    /// With `Bound::AvailableNow`: the files listed at restore, still to read.
    bounded: Option<VecDeque<String>>,
    /// The file being read, when one is part-way.
    current: Option<Current>,
    /// A file a committed epoch left part-way, opened by the next poll.
    resume: Option<Progress>,
    /// Non-UTF-8 names already warned about (they cannot be checkpointed).
    warned: HashSet<OsString>,
}

/// How far into one file the source has delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Progress {
    file: String,
    /// Bytes consumed (line formats) or rows delivered (Parquet).
    offset: u64,
    /// Lines consumed, for `file a.json line 7` positions.
    line: u64,
}

#[derive(Debug, Deserialize)]
struct Checkpoint {
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    current: Option<Progress>,
}

struct Current {
    progress: Progress,
    reader: Reader,
}

enum Reader {
    Lines(BufReader<File>),
    Parquet {
        stream: ParquetRecordBatchStream<File>,
        /// Rows of the last batch read that did not fit the poll's budget.
        leftover: Option<RecordBatch>,
    },
}

impl FileSource {
    pub fn new(spec: SourceSpec) -> Result<FileSource, SourceError> {
        let stream = spec.stream;
        let fatal = |m: String| SourceError::Fatal(format!("stream '{stream}': {m}"));
        let path = spec.options.get("path").ok_or_else(|| fatal("connector 'file' needs option 'path' (a directory)".into()))?;
        let latest_first = match spec.options.get("latest_first") {
            Some(v) => parse_bool("latest_first", v).map_err(&fatal)?,
            None => false,
        };
        let max_files_per_trigger = match spec.options.get("max_files_per_trigger") {
            None => None,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(fatal(format!("option 'max_files_per_trigger' must be a positive integer, got '{v}'"))),
            },
        };
        if spec.schema.fields() != spec.value_schema.fields() {
            return Err(fatal("connector 'file' has no metadata columns".into()));
        }
        if matches!(spec.format, Format::Text | Format::Bytes) && spec.schema.fields().len() != 1 {
            return Err(fatal(format!("format '{}' has exactly one column, 'value'", spec.format.name())));
        }
        Ok(FileSource {
            decoder: RecordDecoder::new(spec.schema.clone(), spec.format.clone()),
            dir: PathBuf::from(path),
            schema: spec.schema,
            format: spec.format,
            latest_first,
            max_files_per_trigger,
            done: HashSet::new(),
            epoch_files: Vec::new(),
            files_started: 0,
            epoch_records: 0,
            pending: VecDeque::new(),
            bounded: None,
            current: None,
            resume: None,
            warned: HashSet::new(),
            stream,
        })
    }

    fn transient(&self, what: &str, name: &str, e: impl std::fmt::Display) -> SourceError {
        let path = self.dir.join(name);
        SourceError::Transient(format!("stream '{}': cannot {what} '{}': {e}", self.stream, path.display()))
    }

    /// Unread, readable files of the directory in reading order.
    async fn list(&mut self) -> Result<VecDeque<String>, SourceError> {
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(|e| self.transient("list directory", "", e))?;
        let mut files: Vec<(SystemTime, String)> = Vec::new();
        loop {
            let entry = match entries.next_entry().await {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) => return Err(self.transient("list directory", "", e)),
            };
            let name = match entry.file_name().into_string() {
                Ok(name) => name,
                Err(raw) => {
                    if self.warned.insert(raw.clone()) {
                        tracing::warn!(stream = %self.stream, name = ?raw, "skipping file whose name is not UTF-8");
                    }
                    continue;
                }
            };
            let in_progress = self.current.as_ref().map(|c| &c.progress.file) == Some(&name)
                || self.resume.as_ref().map(|p| &p.file) == Some(&name);
            if !eligible(&name) || self.done.contains(&name) || in_progress {
                continue;
            }
            // Follows symlinks; a file gone since the listing is simply not there.
            match tokio::fs::metadata(entry.path()).await {
                Ok(meta) if meta.is_file() => {
                    files.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), name));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.transient("read metadata of", &name, e)),
            }
        }
        files.sort();
        if self.latest_first {
            files.reverse();
        }
        Ok(files.into_iter().map(|(_, name)| name).collect())
    }

    /// The next file to read, if one may be started in this epoch;
    /// `unreturned` records are read but not yet returned by `poll`.
    async fn next_file(&mut self, unreturned: usize) -> Result<Option<Progress>, SourceError> {
        // Finishing a file a committed epoch started does not count as a new file.
        if let Some(progress) = self.resume.take() {
            return Ok(Some(progress));
        }
        let delivered = self.epoch_records + unreturned > 0;
        if delivered && self.max_files_per_trigger.is_some_and(|max| self.files_started >= max) {
            return Ok(None);
        }
        let name = match &mut self.bounded {
            Some(queue) => queue.pop_front(),
            None => {
                if self.pending.is_empty() {
                    self.pending = self.list().await?;
                }
                self.pending.pop_front()
            }
        };
        Ok(name.map(|file| {
            self.files_started += 1;
            Progress { file, offset: 0, line: 0 }
        }))
    }

    /// Opens a file at its progress. `None` when there is nothing to read
    /// from it after all (vanished, or a Parquet file that is bad as a whole,
    /// reported in `chunk`); the file then counts as done.
    async fn open(&mut self, progress: Progress, chunk: &mut Chunk) -> Result<Option<Current>, SourceError> {
        let mut file = match File::open(self.dir.join(&progress.file)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(stream = %self.stream, file = %progress.file, "file vanished before it was read; skipped");
                self.finish(progress.file);
                return Ok(None);
            }
            Err(e) => return Err(self.transient("open", &progress.file, e)),
        };
        if self.format != Format::Parquet {
            if progress.offset > 0 {
                file.seek(std::io::SeekFrom::Start(progress.offset))
                    .await
                    .map_err(|e| self.transient("seek in", &progress.file, e))?;
            }
            let reader = Reader::Lines(BufReader::with_capacity(READ_BUFFER, file));
            return Ok(Some(Current { progress, reader }));
        }
        match open_parquet(file, &self.schema, progress.offset).await {
            Ok(stream) => Ok(Some(Current { progress, reader: Reader::Parquet { stream, leftover: None } })),
            Err(error) => {
                chunk.input_records += 1;
                chunk.bad_records.push(BadRecord { raw: Vec::new(), error, position: format!("file {}", progress.file) });
                self.finish(progress.file);
                Ok(None)
            }
        }
    }

    fn finish(&mut self, file: String) {
        self.done.insert(file.clone());
        self.epoch_files.push(file);
    }

    /// Reads up to `limit` records of the current file into `chunk`; closes
    /// the file when it is exhausted.
    async fn read_current(&mut self, limit: usize, chunk: &mut Chunk) -> Result<(), SourceError> {
        let Some(mut current) = self.current.take() else { return Ok(()) };
        let exhausted = match &mut current.reader {
            Reader::Lines(reader) => self.read_lines(reader, &mut current.progress, limit, chunk).await?,
            Reader::Parquet { stream, leftover } => {
                self.read_parquet(stream, leftover, &mut current.progress, limit, chunk).await
            }
        };
        if exhausted {
            self.finish(current.progress.file);
        } else {
            self.current = Some(current);
        }
        Ok(())
    }

    // `&mut self`, not `&self`: the future must be Send and a Parquet stream is not Sync.
    async fn read_lines(
        &mut self,
        reader: &mut BufReader<File>,
        progress: &mut Progress,
        limit: usize,
        chunk: &mut Chunk,
    ) -> Result<bool, SourceError> {
        let skip_header = matches!(self.format, Format::Csv { header: true, .. });
        let mut read = 0;
        while read < limit {
            let batch_limit = (limit - read).min(MAX_BATCH_RECORDS);
            let mut buf = Vec::new();
            // (start, end, line number) of each record in `buf`.
            let mut spans: Vec<(usize, usize, u64)> = Vec::new();
            let mut eof = false;
            while spans.len() < batch_limit {
                let start = buf.len();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .await
                    .map_err(|e| self.transient("read", &progress.file, e))?;
                if n == 0 {
                    eof = true;
                    break;
                }
                progress.offset += n as u64;
                progress.line += 1;
                let mut line = &buf[start..];
                line = line.strip_suffix(b"\n").unwrap_or(line);
                line = line.strip_suffix(b"\r").unwrap_or(line);
                let blank = if self.format == Format::Json { line.trim_ascii().is_empty() } else { line.is_empty() };
                if blank || (skip_header && progress.line == 1) {
                    buf.truncate(start);
                } else {
                    spans.push((start, start + line.len(), progress.line));
                }
            }
            let records: Vec<&[u8]> = spans.iter().map(|&(s, e, _)| &buf[s..e]).collect();
            read += records.len();
            if !records.is_empty() {
                let (batch, bad) = self.decoder.decode(&records).map_err(|e| {
                    SourceError::Fatal(format!("stream '{}': cannot decode file '{}': {e}", self.stream, progress.file))
                })?;
                chunk.input_records += records.len();
                chunk.bad_records.extend(bad.into_iter().map(|(i, error)| BadRecord {
                    raw: records[i].to_vec(),
                    error,
                    position: format!("file {} line {}", progress.file, spans[i].2),
                }));
                if batch.num_rows() > 0 {
                    chunk.batches.push(batch);
                }
            }
            if eof {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn read_parquet(
        &mut self,
        stream: &mut ParquetRecordBatchStream<File>,
        leftover: &mut Option<RecordBatch>,
        progress: &mut Progress,
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
            match conform(&batch, &self.schema) {
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

    fn progress(&self) -> Option<&Progress> {
        self.current.as_ref().map(|c| &c.progress).or(self.resume.as_ref())
    }
}

/// Whether a directory entry's name is a finished file to read: the
/// listing rule every reader of weir shares.
fn eligible(name: &str) -> bool {
    crate::storage::is_visible(name)
}

/// Opens a Parquet file reading only the stream's columns, from row `offset`.
/// `Err` is why the whole file cannot become rows of `schema`.
async fn open_parquet(file: File, schema: &SchemaRef, offset: u64) -> Result<ParquetRecordBatchStream<File>, String> {
    let builder = ParquetRecordBatchStreamBuilder::new(file).await.map_err(|e| format!("not a readable parquet file: {e}"))?;
    let file_schema = builder.schema().clone();
    let mut roots = Vec::new();
    for field in schema.fields() {
        match find_column(&file_schema, field.name()) {
            Some(i) => {
                let from = file_schema.field(i).data_type();
                if !can_cast_types(from, field.data_type()) {
                    return Err(format!("column '{}' is {from} in the file, cannot be read as {}", field.name(), field.data_type()));
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
        .with_batch_size(PARQUET_BATCH_ROWS)
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

#[async_trait::async_trait]
impl Source for FileSource {
    async fn restore(&mut self, committed: &[serde_json::Value], bound: Bound) -> Result<(), SourceError> {
        let mut current = None;
        for value in committed {
            let checkpoint: Checkpoint = serde_json::from_value(value.clone()).map_err(|e| {
                SourceError::Fatal(format!("stream '{}': unreadable file checkpoint {value}: {e}", self.stream))
            })?;
            self.done.extend(checkpoint.files);
            // Each checkpoint states the file in progress at its end.
            current = checkpoint.current;
        }
        self.resume = current.filter(|p| !self.done.contains(&p.file));
        if bound == Bound::AvailableNow {
            self.bounded = Some(self.list().await?);
        }
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<Poll, SourceError> {
        let deadline = Instant::now() + wait;
        let max_records = max_records.max(1);
        let mut chunk = Chunk::default();
        loop {
            if chunk.input_records >= max_records {
                self.epoch_records += chunk.input_records;
                return Ok(Poll::Data(chunk));
            }
            if self.current.is_none() {
                match self.next_file(chunk.input_records).await? {
                    Some(progress) => {
                        self.current = self.open(progress, &mut chunk).await?;
                        continue;
                    }
                    None if chunk.input_records > 0 => {
                        self.epoch_records += chunk.input_records;
                        return Ok(Poll::Data(chunk));
                    }
                    None if self.bounded.as_ref().is_some_and(VecDeque::is_empty) => return Ok(Poll::End),
                    None => {
                        let now = Instant::now();
                        if now >= deadline {
                            return Ok(Poll::Idle);
                        }
                        tokio::time::sleep(LIST_INTERVAL.min(deadline - now)).await;
                        continue;
                    }
                }
            }
            self.read_current(max_records - chunk.input_records, &mut chunk).await?;
        }
    }

    /// Each checkpoint lists only the files its epoch finished, so
    /// `restore` needs every one of them.
    fn checkpoint_is_cumulative(&self) -> bool {
        false
    }

    fn checkpoint(&mut self) -> serde_json::Value {
        self.files_started = 0;
        self.epoch_records = 0;
        self.pending.clear();
        let mut checkpoint = serde_json::json!({ "files": std::mem::take(&mut self.epoch_files) });
        if let Some(progress) = self.progress() {
            checkpoint["current"] = serde_json::json!(progress);
        }
        checkpoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type};
    use std::collections::BTreeMap;

    const WAIT: Duration = Duration::from_millis(50);

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
    }

    fn source(dir: &std::path::Path, format: Format, options: &[(&str, &str)]) -> FileSource {
        let mut map = BTreeMap::from([("path".to_string(), dir.display().to_string())]);
        map.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let spec = SourceSpec { stream: "s".into(), value_schema: schema(), schema: schema(), format, options: map };
        FileSource::new(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Writes a file with the given modification time (seconds after the epoch).
    fn write(dir: &std::path::Path, name: &str, body: &str, mtime: u64) {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
        let file = std::fs::File::options().write(true).open(&path).unwrap_or_else(|e| panic!("{e}"));
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)).unwrap_or_else(|e| panic!("{e}"));
    }

    fn json_lines(ids: std::ops::Range<i64>) -> String {
        ids.map(|i| format!("{{\"id\":{i}}}\n")).collect()
    }

    async fn poll(src: &mut FileSource, max: usize) -> Poll {
        src.poll(max, WAIT).await.unwrap_or_else(|e| panic!("{e}"))
    }

    async fn ids(src: &mut FileSource, max: usize) -> Vec<i64> {
        match poll(src, max).await {
            Poll::Data(chunk) => {
                chunk.batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
            }
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn reads_files_oldest_first_skips_hidden_and_picks_up_new_ones() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "b.json", &json_lines(0..2), 100);
        write(dir.path(), "a.json", &json_lines(2..4), 200);
        write(dir.path(), "c.json", &json_lines(4..5), 200);
        for hidden in [".a.json", "_SUCCESS", "d.json.tmp", "e.json.crdownload", "f.PARTIAL", "g.json#1"] {
            write(dir.path(), hidden, &json_lines(90..91), 1);
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap_or_else(|e| panic!("{e}"));
        write(&dir.path().join("sub"), "x.json", &json_lines(99..100), 1);

        let mut src = source(dir.path(), Format::Json, &[]);
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&mut src, 1000).await, vec![0, 1, 2, 3, 4]);
        assert!(matches!(poll(&mut src, 1000).await, Poll::Idle));
        write(dir.path(), "z.json", &json_lines(5..7), 50);
        assert_eq!(ids(&mut src, 1000).await, vec![5, 6]);
        let checkpoint = src.checkpoint();
        assert_eq!(checkpoint, serde_json::json!({"files": ["b.json", "a.json", "c.json", "z.json"]}));
    }

    #[tokio::test]
    async fn restore_skips_committed_files_and_resumes_mid_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "a.json", &json_lines(0..3), 100);
        write(dir.path(), "b.json", &json_lines(3..10), 200);
        let mut src = source(dir.path(), Format::Json, &[]);
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&mut src, 5).await, vec![0, 1, 2, 3, 4]);
        let first = src.checkpoint();
        assert_eq!(first["files"], serde_json::json!(["a.json"]));
        assert_eq!(first["current"]["file"], "b.json");
        assert_eq!(ids(&mut src, 2).await, vec![5, 6]);
        let second = src.checkpoint();
        // Not committed: the restarted source reads it again.
        let _lost = ids(&mut src, 100).await;

        let mut again = source(dir.path(), Format::Json, &[]);
        again.restore(&[first, second], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&mut again, 100).await, vec![7, 8, 9]);
        assert!(matches!(poll(&mut again, 100).await, Poll::Idle));
        assert_eq!(again.checkpoint(), serde_json::json!({"files": ["b.json"]}));
    }

    #[tokio::test]
    async fn max_files_per_trigger_limits_each_epoch_and_latest_first_reverses() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (i, name) in ["a.json", "b.json", "c.json"].iter().enumerate() {
            write(dir.path(), name, &json_lines(i as i64..i as i64 + 1), 100 + i as u64);
        }
        let options = [("max_files_per_trigger", "2"), ("latest_first", "true")];
        let mut src = source(dir.path(), Format::Json, &options);
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&mut src, 1000).await, vec![2, 1]);
        assert!(matches!(poll(&mut src, 1000).await, Poll::Idle));
        src.checkpoint();
        assert_eq!(ids(&mut src, 1000).await, vec![0]);
    }

    #[tokio::test]
    async fn empty_files_do_not_use_up_the_file_limit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "a.json", "", 100);
        write(dir.path(), "b.json", "\n\n", 200);
        write(dir.path(), "c.json", &json_lines(0..1), 300);
        write(dir.path(), "d.json", &json_lines(1..2), 400);
        let mut src = source(dir.path(), Format::Json, &[("max_files_per_trigger", "1")]);
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&mut src, 1000).await, vec![0]);
        assert!(matches!(poll(&mut src, 1000).await, Poll::Idle));
        assert_eq!(src.checkpoint(), serde_json::json!({"files": ["a.json", "b.json", "c.json"]}));
        assert_eq!(ids(&mut src, 1000).await, vec![1]);
    }

    #[tokio::test]
    async fn available_now_reads_what_was_there_then_ends() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "a.json", &json_lines(0..2), 100);
        write(dir.path(), "b.json", &json_lines(2..3), 200);
        let mut src = source(dir.path(), Format::Json, &[("max_files_per_trigger", "1")]);
        src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "c.json", &json_lines(3..4), 300);
        assert_eq!(ids(&mut src, 1000).await, vec![0, 1]);
        assert!(matches!(poll(&mut src, 1000).await, Poll::Idle));
        src.checkpoint();
        assert_eq!(ids(&mut src, 1000).await, vec![2]);
        assert!(matches!(poll(&mut src, 1000).await, Poll::End));
    }

    #[tokio::test]
    async fn bad_lines_csv_header_and_large_files_in_batches() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "a.json", "{\"id\":1}\r\n\n{\"id\":\"x\"}\n{\"id\":3", 100);
        let mut src = source(dir.path(), Format::Json, &[]);
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        let Poll::Data(chunk) = poll(&mut src, 100).await else { panic!("expected data") };
        assert_eq!(chunk.input_records, 3);
        let positions: Vec<&str> = chunk.bad_records.iter().map(|b| b.position.as_str()).collect();
        assert_eq!(positions, vec!["file a.json line 3", "file a.json line 4"]);
        assert_eq!(chunk.bad_records[1].raw, b"{\"id\":3");

        let csv = Format::Csv { header: true, delimiter: b',' };
        let body: String = std::iter::once("id,name\n".to_string())
            .chain((0..70_000).map(|i| format!("{i},n{i}\r\n")))
            .collect();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "b.csv", &body, 100);
        let mut src = source(dir.path(), csv, &[]);
        src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        let Poll::Data(chunk) = poll(&mut src, 1_000_000).await else { panic!("expected data") };
        assert!(chunk.bad_records.is_empty(), "{:?}", chunk.bad_records);
        let rows: Vec<usize> = chunk.batches.iter().map(RecordBatch::num_rows).collect();
        assert!(rows.iter().all(|&n| n <= MAX_BATCH_RECORDS), "{rows:?}");
        assert_eq!(rows.iter().sum::<usize>(), 70_000);
        assert_eq!(chunk.batches[1].column(1).as_string::<i32>().value(0), "n65536");
        assert!(matches!(poll(&mut src, 100).await, Poll::End));
    }

    #[tokio::test]
    async fn parquet_files_by_column_name_with_casts_and_bad_files() {
        use datafusion::parquet::arrow::ArrowWriter;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file_schema = Arc::new(Schema::new(vec![
            Field::new("extra", DataType::Utf8, true),
            Field::new("ID", DataType::Int32, false),
        ]));
        let batch = RecordBatch::try_new(
            file_schema.clone(),
            vec![Arc::new(StringArray::from(vec!["a", "b", "c"])), Arc::new(Int32Array::from(vec![1, 2, 3]))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let file = std::fs::File::create(dir.path().join("a.parquet")).unwrap_or_else(|e| panic!("{e}"));
        let mut writer = ArrowWriter::try_new(file, file_schema, None).unwrap_or_else(|e| panic!("{e}"));
        writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
        writer.close().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "b.parquet", "not parquet at all", 4_000_000_000); // after a.parquet's "now"

        let mut src = source(dir.path(), Format::Parquet, &[]);
        src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&mut src, 2).await, vec![1, 2]);
        let checkpoint = src.checkpoint();
        assert_eq!(checkpoint["current"]["offset"], 2);
        let mut src = source(dir.path(), Format::Parquet, &[]);
        src.restore(&[checkpoint], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        let Poll::Data(chunk) = poll(&mut src, 100).await else { panic!("expected data") };
        assert_eq!(chunk.batches[0].column(0).as_primitive::<Int64Type>().values().as_ref(), &[3]);
        assert_eq!(chunk.batches[0].column(1).null_count(), 1);
        assert_eq!(chunk.bad_records.len(), 1);
        assert_eq!(chunk.bad_records[0].position, "file b.parquet");
        assert!(matches!(poll(&mut src, 100).await, Poll::End));
    }

    #[tokio::test]
    async fn unreadable_parquet_files_are_bad_records_within_max_records() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        for (i, name) in ["a.parquet", "b.parquet", "c.parquet"].iter().enumerate() {
            write(dir.path(), name, "PAR1 but not really", 100 + i as u64);
        }
        let mut src = source(dir.path(), Format::Parquet, &[]);
        src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        for name in ["a.parquet", "b.parquet", "c.parquet"] {
            let Poll::Data(chunk) = poll(&mut src, 1).await else { panic!("expected data") };
            assert_eq!(chunk.input_records, 1);
            assert_eq!(chunk.bad_records[0].position, format!("file {name}"));
        }
        assert!(matches!(poll(&mut src, 1).await, Poll::End));
    }

    #[test]
    fn bad_options_are_fatal() {
        let dir = std::path::Path::new("/nonexistent");
        for options in [[("latest_first", "maybe")], [("max_files_per_trigger", "0")]] {
            let mut map = BTreeMap::from([("path".to_string(), dir.display().to_string())]);
            map.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let spec = SourceSpec { stream: "s".into(), value_schema: schema(), schema: schema(), format: Format::Json, options: map };
            assert!(matches!(FileSource::new(spec), Err(SourceError::Fatal(_))));
        }
    }
}
