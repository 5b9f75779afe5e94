//! The Delta Lake sink: an epoch's rows go to Parquet files in the table's
//! directory, staged and published as in `parquet` (so a file is whole
//! before its final name exists), and the epoch becomes visible with one
//! Delta commit adding those files and recording (query, epoch) as the
//! log's transaction for the query (see `crate::delta`).
//!
//! A crash after the catalog commit but before the Delta commit is
//! repaired by `recover`: the last epoch's files are published again and
//! committed unless the log already holds that epoch. Files of an epoch the
//! catalog never committed are deleted, as in the Parquet sink; a published
//! file no commit adds is invisible to every Delta reader.

use std::path::Path;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;

use super::object::ObjectSink;
use super::parquet::{ParquetSink, Roll, publish};
use super::{EpochSink, PreCommit, Sink, SinkError};
use crate::catalog::StagedFile;
use crate::delta::{DataFile, TableDir};
use datafusion::object_store::ObjectStoreExt;

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where the data files go: a local directory, or a bucket's prefix.
enum Files {
    Local(ParquetSink),
    Object(ObjectSink),
}

pub struct DeltaSink {
    dir: TableDir,
    query: String,
    files: Files,
    /// Each epoch replaces the table's contents (a rewritten view).
    overwrite: bool,
    /// Compact small files after every this many epochs (`compact_every`).
    compact_every: Option<u64>,
    log: crate::delta::Log,
    /// The last epoch this sink committed to the log, and its version.
    committed: std::sync::Mutex<Option<(i64, i64)>>,
}

impl DeltaSink {
    /// A sink into the table in the local directory `dir`.
    pub fn new(dir: &Path, query: &str, table_schema: &Schema, roll: Roll) -> DeltaSink {
        DeltaSink {
            dir: TableDir::from(dir),
            query: query.to_string(),
            files: Files::Local(ParquetSink::new(dir, query, table_schema, roll)),
            overwrite: false,
            compact_every: None,
            log: crate::delta::Log::default(),
            committed: Default::default(),
        }
    }

    /// A sink into the table at `dir`, local or in a bucket.
    pub fn at(dir: &TableDir, query: &str, table_schema: &Schema, roll: Roll) -> Result<DeltaSink, SinkError> {
        Ok(match dir {
            TableDir::Local(path) => DeltaSink::new(path, query, table_schema, roll),
            TableDir::S3(s3) => DeltaSink {
                dir: dir.clone(),
                query: query.to_string(),
                files: Files::Object(ObjectSink::new(s3, query, table_schema, roll)?),
                overwrite: false,
                compact_every: None,
                log: crate::delta::Log::default(),
                committed: Default::default(),
            },
        })
    }

    /// Runs `OPTIMIZE` on the table after every `epochs` epochs, in the
    /// background: the epoch is committed whatever the compaction does.
    pub fn compacting_every(mut self, epochs: Option<u64>) -> DeltaSink {
        self.compact_every = epochs;
        self
    }

    /// Each epoch's commit removes every file the table had (output modes
    /// update and complete): readers see one whole result at a time.
    pub fn overwriting(mut self, overwrite: bool) -> DeltaSink {
        self.overwrite = overwrite;
        self
    }

    /// The Parquet schema data files are written in.
    pub fn file_schema(&self) -> &datafusion::arrow::datatypes::SchemaRef {
        match &self.files {
            Files::Local(files) => files.file_schema(),
            Files::Object(files) => files.file_schema(),
        }
    }

    fn own(&self, files: &[StagedFile]) -> Vec<StagedFile> {
        match (&self.files, &self.dir) {
            (Files::Local(_), TableDir::Local(dir)) => {
                files.iter().filter(|f| Path::new(&f.staged).parent() == Some(dir.as_path())).cloned().collect()
            }
            (Files::Object(sink), _) => sink.own(files),
            _ => Vec::new(),
        }
    }

    /// Publishes `files` under their final names and describes them for the log.
    async fn publish_files(&self, files: &[StagedFile]) -> Result<Vec<DataFile>, SinkError> {
        let mut described = Vec::with_capacity(files.len());
        match &self.files {
            Files::Local(_) => {
                publish(files)?;
                for f in files {
                    let meta = std::fs::metadata(&f.visible)?;
                    let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
                    let name = Path::new(&f.visible).file_name().map(|n| n.to_string_lossy().into_owned());
                    described.push(DataFile {
                        path: name.unwrap_or_default(),
                        size: meta.len(),
                        modified_ms: modified.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                    });
                }
            }
            Files::Object(sink) => {
                sink.publish(files).await?;
                for f in files {
                    let key = sink
                        .dir()
                        .key_of(&f.visible)
                        .ok_or_else(|| SinkError::Config(format!("'{}' is not in {}", f.visible, sink.dir())))?;
                    // The size the upload recorded saves a request per file;
                    // a record without one (an older version's) asks the store.
                    let (size, modified_ms) = match f.bytes {
                        Some(size) => (size, now_ms()),
                        None => {
                            let meta = sink
                                .store()
                                .head(&key)
                                .await
                                .map_err(|e| SinkError::Io(std::io::Error::other(format!("{}: {e}", f.visible))))?;
                            (meta.size, meta.last_modified.timestamp_millis())
                        }
                    };
                    described.push(DataFile { path: key.filename().unwrap_or_default().to_string(), size, modified_ms });
                }
            }
        }
        Ok(described)
    }

    /// Publishes `files` and commits them to the log as epoch `batch_id`.
    async fn publish_epoch(&self, batch_id: i64, files: &[StagedFile]) -> Result<Option<i64>, SinkError> {
        let described = self.publish_files(files).await?;
        crate::delta::commit_epoch(&self.log, &self.dir, &self.query, batch_id, &described, self.overwrite)
            .await
            .map_err(|e| SinkError::Delivery(e.to_string()))
    }

    /// Deletes every staged file of the query: none is committed.
    async fn remove_staged(&self) -> Result<(), SinkError> {
        match &self.files {
            Files::Local(files) => Ok(files.recover(&[])?),
            Files::Object(files) => files.recover_files(&[]).await,
        }
    }
}

#[async_trait]
impl Sink for DeltaSink {
    fn begin(&self, batch_id: i64) -> Box<dyn EpochSink> {
        let files: Box<dyn EpochSink> = match &self.files {
            Files::Local(files) => Box::new(files.begin(batch_id)),
            Files::Object(files) => Box::new(files.begin_epoch(batch_id)),
        };
        Box::new(DeltaEpoch { files, batch_id })
    }

    async fn commit(&self, pre_commit: &PreCommit) -> Result<(), SinkError> {
        let Some(batch_id) = pre_commit.batch_id else {
            return Err(SinkError::Config("a Delta epoch without its batch id".into()));
        };
        let version = self.publish_epoch(batch_id, &self.own(&pre_commit.files)).await?;
        tracing::debug!(query = %self.query, batch_id, ?version, "delta commit");
        if let (Some(version), Ok(mut committed)) = (version, self.committed.lock()) {
            *committed = Some((batch_id, version));
        }
        // A rewritten view replaces its files each epoch: nothing to compact.
        if let Some(every) = self.compact_every
            && !self.overwrite
            && version.is_some()
            && (batch_id + 1) % i64::try_from(every).unwrap_or(i64::MAX) == 0
        {
            let (dir, query) = (self.dir.clone(), self.query.clone());
            tokio::spawn(async move {
                match crate::delta::maintenance::optimize(&dir, None).await {
                    Ok(done) => {
                        tracing::info!(%query, batch_id, files_removed = done.files_removed, files_added = done.files_added, "compacted")
                    }
                    Err(e) => tracing::warn!(%query, batch_id, "compaction failed (the next one retries): {e}"),
                }
            });
        }
        Ok(())
    }

    async fn recover(&self, last: &PreCommit) -> Result<(), SinkError> {
        let delivery = |e: crate::delta::DeltaError| SinkError::Delivery(e.to_string());
        let logged = crate::delta::logged_epoch(&self.log, &self.dir, &self.query).await.map_err(delivery)?;
        match last.batch_id {
            // Already in the log; its files may since have been compacted
            // and vacuumed away, so they are not published again.
            Some(batch_id) if logged >= Some(batch_id) => {}
            Some(batch_id) => {
                self.publish_epoch(batch_id, &self.own(&last.files)).await?;
            }
            // A new query: epochs logged under its name are another's.
            None if logged.is_some() => {
                crate::delta::forget_epochs(&self.log, &self.dir, &self.query).await.map_err(delivery)?
            }
            None => {}
        }
        // Every other staged file of the query was never committed.
        self.remove_staged().await
    }

    /// In a bucket, Delta readers read the log, never a listing: the
    /// bucket's gate is held while files are copied and nothing else.
    fn publishes_under_gate(&self) -> bool {
        matches!(self.files, Files::Local(_))
    }

    fn committed_version(&self, batch_id: i64) -> Option<i64> {
        match *self.committed.lock().ok()? {
            Some((batch, version)) if batch == batch_id => Some(version),
            _ => None,
        }
    }
}

struct DeltaEpoch {
    files: Box<dyn EpochSink>,
    batch_id: i64,
}

#[async_trait]
impl EpochSink for DeltaEpoch {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.files.write(batch).await
    }

    async fn prepare(self: Box<Self>) -> Result<PreCommit, SinkError> {
        let mut pre_commit = self.files.prepare().await?;
        pre_commit.batch_id = Some(self.batch_id);
        Ok(pre_commit)
    }

    fn abort(self: Box<Self>) {
        self.files.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    #[tokio::test]
    async fn an_epoch_reaches_the_log_once_however_often_it_is_published() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("t");
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        crate::delta::create(&TableDir::from(dir.as_path()), &schema).await.unwrap();
        let sink = DeltaSink::new(&dir, "q", &schema, Roll::default());
        let rows = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap();

        let mut epoch = sink.begin(0);
        epoch.write(&rows).await.unwrap();
        let first = epoch.prepare().await.unwrap();
        let table = crate::delta::open(&TableDir::from(dir.as_path()), None).await.unwrap();
        assert_eq!(table.version(), Some(0), "prepared is not committed");
        // Committed, then published again as recovery would after a crash.
        sink.commit(&first).await.unwrap();
        sink.recover(&first).await.unwrap();
        sink.commit(&first).await.unwrap();
        let table = crate::delta::open(&TableDir::from(dir.as_path()), None).await.unwrap();
        assert_eq!(table.version(), Some(1), "one commit for epoch 0");
        assert_eq!(crate::delta::committed_epoch(&table, "q").await.unwrap(), Some(0));

        // Epoch 1 is prepared, the catalog commits it, the server dies before
        // the Delta commit: recovery makes it.
        let mut epoch = sink.begin(1);
        epoch.write(&rows).await.unwrap();
        let second = epoch.prepare().await.unwrap();
        // Epoch 2 is staged but never committed anywhere.
        let mut epoch = sink.begin(2);
        epoch.write(&rows).await.unwrap();
        let lost = epoch.prepare().await.unwrap();
        let restarted = DeltaSink::new(&dir, "q", &schema, Roll::default());
        restarted.recover(&second).await.unwrap();
        let table = crate::delta::open(&TableDir::from(dir.as_path()), None).await.unwrap();
        assert_eq!(table.version(), Some(2));
        assert_eq!(crate::delta::committed_epoch(&table, "q").await.unwrap(), Some(1));
        assert_eq!(table.get_file_uris().unwrap().count(), 2, "epochs 0 and 1, one file each");
        for f in &lost.files {
            assert!(!Path::new(&f.staged).exists() && !Path::new(&f.visible).exists(), "{f:?} removed");
        }

        // Epoch 1's files are compacted and vacuumed away; a restart that
        // finds epoch 1 last in the catalog does not try to publish them.
        crate::delta::maintenance::optimize(&TableDir::from(dir.as_path()), None).await.unwrap();
        crate::delta::maintenance::vacuum(&TableDir::from(dir.as_path()), Some(0.0), false).await.unwrap();
        assert!(second.files.iter().all(|f| !Path::new(&f.visible).exists()), "vacuumed");
        DeltaSink::new(&dir, "q", &schema, Roll::default()).recover(&second).await.unwrap();

        // The query is dropped and created again: its epochs start at 0,
        // and the log must not take them for the old query's.
        let again = DeltaSink::new(&dir, "q", &schema, Roll::default());
        again.recover(&PreCommit::default()).await.unwrap();
        let table = crate::delta::open(&TableDir::from(dir.as_path()), None).await.unwrap();
        assert_eq!(crate::delta::committed_epoch(&table, "q").await.unwrap(), Some(-1));
        let mut epoch = again.begin(0);
        epoch.write(&rows).await.unwrap();
        let new_first = epoch.prepare().await.unwrap();
        again.commit(&new_first).await.unwrap();
        let table = crate::delta::open(&TableDir::from(dir.as_path()), None).await.unwrap();
        assert_eq!(crate::delta::committed_epoch(&table, "q").await.unwrap(), Some(0));
        let scanned = table.get_file_uris().unwrap().count();
        assert_eq!(scanned, 2, "the compacted file and the new epoch's");
    }
}
