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
//!
//! Parquet files are read by `parquet`, in rows rather than lines.
//!
//! The directory may be a prefix in a bucket (`path = 's3://bucket/in/'`):
//! objects are listed one level deep, in the order they were last written,
//! and read from the offset a checkpoint recorded with a ranged GET. An
//! object PUT is atomic, so objects appear whole without the rename.

mod parquet;
#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use datafusion::parquet::arrow::async_reader::ParquetRecordBatchStream;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncSeekExt, BufReader};

use crate::storage::s3::S3Dir;

use super::decode::parse_bool;
use super::{
    BadRecord, Bound, Chunk, DATA_LOSS_HINT, Format, OnDataLoss, Poll, RecordDecoder, Source, SourceError, SourceSpec,
};

/// Options of `connector = 'file'` besides the common ones.
pub const OPTIONS: &[&str] = &["path", "latest_first", "max_files_per_trigger"];

/// Most records decoded into one batch: a large file becomes many batches.
const MAX_BATCH_RECORDS: usize = 65_536;
/// How often a waiting poll lists the directory again.
const LIST_INTERVAL: Duration = Duration::from_millis(100);
const READ_BUFFER: usize = 1 << 20;

/// Where a file stream's files are.
enum Place {
    Local(PathBuf),
    Bucket { store: Arc<dyn ObjectStore>, dir: S3Dir },
}

/// A line-format file being read, local or an object's body.
type LineInput = BufReader<Box<dyn AsyncRead + Send + Unpin>>;

/// Reads the files of one directory in order, each exactly once.
pub struct FileSource {
    stream: String,
    place: Place,
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
    on_loss: OnDataLoss,
    /// Files found gone and skipped, not yet reported.
    lost: Vec<String>,
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
    Lines(LineInput),
    Parquet {
        stream: ParquetRecordBatchStream<parquet::Input>,
        /// Rows of the last batch read that did not fit the poll's budget.
        leftover: Option<RecordBatch>,
    },
}

impl FileSource {
    pub fn new(spec: SourceSpec, on_loss: OnDataLoss) -> Result<FileSource, SourceError> {
        let stream = spec.stream;
        let fatal = |m: String| SourceError::Fatal(format!("stream '{stream}': {m}"));
        let path =
            spec.options.get("path").ok_or_else(|| fatal("connector 'file' needs option 'path' (a directory)".into()))?;
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
        let place = if crate::storage::s3::is_s3(path) {
            let dir = S3Dir::parse(path).map_err(|e| fatal(e.message()))?;
            let store = crate::storage::s3::store(&dir.bucket, &Default::default()).map_err(|e| fatal(e.message()))?;
            Place::Bucket { store, dir }
        } else {
            Place::Local(PathBuf::from(path))
        };
        Ok(FileSource {
            decoder: RecordDecoder::new(spec.schema.clone(), spec.format.clone()),
            place,
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
            on_loss,
            lost: Vec::new(),
            stream,
        })
    }

    fn transient(&self, what: &str, name: &str, e: impl std::fmt::Display) -> SourceError {
        let path = match &self.place {
            Place::Local(dir) => dir.join(name).display().to_string(),
            Place::Bucket { dir, .. } => format!("{dir}{name}"),
        };
        SourceError::Transient(format!("stream '{}': cannot {what} '{path}': {e}", self.stream))
    }

    /// Unread, readable files of the directory in reading order.
    async fn list(&mut self) -> Result<VecDeque<String>, SourceError> {
        let dir = match &self.place {
            Place::Local(dir) => dir.clone(),
            Place::Bucket { store, dir } => {
                let prefix = (!dir.prefix.as_ref().is_empty()).then_some(&dir.prefix);
                let listed = store.list_with_delimiter(prefix).await.map_err(|e| self.transient("list", "", e))?;
                let mut files: Vec<(i128, String)> = listed
                    .objects
                    .into_iter()
                    .filter_map(|meta| {
                        let name = meta.location.filename()?.to_string();
                        self.unread(&name).then(|| (i128::from(meta.last_modified.timestamp_millis()) * 1_000_000, name))
                    })
                    .collect();
                return Ok(self.ordered(&mut files));
            }
        };
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(|e| self.transient("list directory", "", e))?;
        let mut files: Vec<(i128, String)> = Vec::new();
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
            if !self.unread(&name) {
                continue;
            }
            // Follows symlinks; a file gone since the listing is simply not there.
            match tokio::fs::metadata(entry.path()).await {
                Ok(meta) if meta.is_file() => {
                    let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                    files.push((modified.map_or(0, |d| d.as_nanos() as i128), name));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.transient("read metadata of", &name, e)),
            }
        }
        Ok(self.ordered(&mut files))
    }

    /// Whether `name` is a file to read still: eligible, not done, not the
    /// one being read.
    fn unread(&self, name: &str) -> bool {
        let in_progress = self.current.as_ref().map(|c| c.progress.file.as_str()) == Some(name)
            || self.resume.as_ref().map(|p| p.file.as_str()) == Some(name);
        eligible(name) && !self.done.contains(name) && !in_progress
    }

    /// Names by modification time (nanoseconds), oldest first unless
    /// `latest_first`; ties by name.
    fn ordered(&self, files: &mut [(i128, String)]) -> VecDeque<String> {
        files.sort();
        if self.latest_first {
            files.reverse();
        }
        files.iter().map(|(_, name)| name.clone()).collect()
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
        // No borrow of `self` across the awaits: the source is not `Sync`.
        let parquet = self.format == Format::Parquet;
        let opened = match &self.place {
            Place::Local(dir) => open_local(dir.join(&progress.file), parquet, progress.offset).await,
            Place::Bucket { store, dir } => {
                let (store, key) = (store.clone(), dir.key(&progress.file));
                open_object(store, key, parquet, progress.offset).await
            }
        };
        let opened = opened.map_err(|(what, e)| self.transient(what, &progress.file, e))?;
        let Some(input) = opened else {
            return self.vanished(progress);
        };
        let parquet_input = match input {
            Opened::Lines(lines) => return Ok(Some(Current { progress, reader: Reader::Lines(lines) })),
            Opened::Parquet(input) => input,
        };
        match parquet::open(parquet_input, &self.schema, progress.offset).await {
            Ok(stream) => Ok(Some(Current { progress, reader: Reader::Parquet { stream, leftover: None } })),
            Err(error) => {
                chunk.input_records += 1;
                chunk.bad_records.push(BadRecord { raw: Vec::new(), error, position: format!("file {}", progress.file) });
                self.finish(progress.file);
                Ok(None)
            }
        }
    }

    /// A file that is gone before it was read to the end: input lost.
    fn vanished(&mut self, progress: Progress) -> Result<Option<Current>, SourceError> {
        // Line formats count lines; Parquet counts rows in `offset`.
        let records_read = if progress.line > 0 { progress.line } else { progress.offset };
        let what = if records_read > 0 {
            format!("file '{}' vanished after {records_read} of its records were read", progress.file)
        } else {
            format!("file '{}' vanished before it was read", progress.file)
        };
        if self.on_loss == OnDataLoss::Fail {
            return Err(SourceError::Fatal(format!("stream '{}': input lost: {what}. {DATA_LOSS_HINT}", self.stream)));
        }
        tracing::warn!(stream = %self.stream, "{what}; skipped (fail_on_data_loss = false)");
        self.lost.push(what);
        self.finish(progress.file);
        Ok(None)
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
                parquet::read_rows(stream, leftover, &mut current.progress, &self.schema, limit, chunk).await
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
        reader: &mut LineInput,
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
                let n = reader.read_until(b'\n', &mut buf).await.map_err(|e| self.transient("read", &progress.file, e))?;
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

    fn progress(&self) -> Option<&Progress> {
        self.current.as_ref().map(|c| &c.progress).or(self.resume.as_ref())
    }
}

/// Why a file could not be opened: what was being done, and the error.
type OpenError = (&'static str, String);

/// A local file from `offset` (`None`: it is gone).
async fn open_local(path: PathBuf, parquet: bool, offset: u64) -> Result<Option<Opened>, OpenError> {
    let mut file = match File::open(&path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(("open", e.to_string())),
    };
    if parquet {
        return Ok(Some(Opened::Parquet(Box::new(file))));
    }
    if offset > 0 {
        file.seek(std::io::SeekFrom::Start(offset)).await.map_err(|e| ("seek in", e.to_string()))?;
    }
    Ok(Some(Opened::Lines(BufReader::with_capacity(READ_BUFFER, Box::new(file)))))
}

/// An object from `offset`: its body (a ranged GET), or a Parquet reader
/// fetching the ranges it needs (`None`: it is gone).
async fn open_object(
    store: Arc<dyn ObjectStore>,
    key: datafusion::object_store::path::Path,
    parquet: bool,
    offset: u64,
) -> Result<Option<Opened>, OpenError> {
    use datafusion::object_store::Error::NotFound;
    if parquet {
        let meta = match store.head(&key).await {
            Ok(meta) => meta,
            Err(NotFound { .. }) => return Ok(None),
            Err(e) => return Err(("open", e.to_string())),
        };
        // Deprecated in favour of hand-written readers; this one does what
        // a file stream needs (ranged reads of one object) and is the
        // reader DataFusion's own Parquet scan was built on.
        #[allow(deprecated)]
        let reader =
            datafusion::parquet::arrow::async_reader::ParquetObjectReader::new(store, key).with_file_size(meta.size);
        return Ok(Some(Opened::Parquet(Box::new(reader))));
    }
    let options = GetOptions { range: (offset > 0).then_some(GetRange::Offset(offset)), ..GetOptions::default() };
    let body = match store.get_opts(&key, options).await {
        Ok(got) => got.into_stream().map_err(std::io::Error::other),
        Err(NotFound { .. }) => return Ok(None),
        Err(e) => return Err(("open", e.to_string())),
    };
    let reader: Box<dyn AsyncRead + Send + Unpin> = Box::new(tokio_util::io::StreamReader::new(body));
    Ok(Some(Opened::Lines(BufReader::with_capacity(READ_BUFFER, reader))))
}

/// A file opened for reading, before its format's reader is set up.
enum Opened {
    Lines(LineInput),
    Parquet(parquet::Input),
}

/// Whether a directory entry's name is a finished file to read: the
/// listing rule every reader of weir shares.
fn eligible(name: &str) -> bool {
    crate::storage::is_visible(name)
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

    fn take_data_loss(&mut self) -> Option<String> {
        (!self.lost.is_empty()).then(|| std::mem::take(&mut self.lost).join("; "))
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
