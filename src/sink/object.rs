//! The Parquet sink on object storage (`s3://` tables), and the file half
//! of the commit protocol there.
//!
//! An object store has no rename, so the local protocol (stage under a
//! hidden name, commit in the catalog, rename visible) becomes:
//!
//! 1. *Prepare*: each file is uploaded whole, with one PUT, under a staged
//!    key in the table's prefix (`.weir.<query hex>.<epoch>.<n>.<attempt>.pending`:
//!    hidden by the listing rule, and not `*.parquet`, so no reader's
//!    glob picks it up). A PUT is atomic: the object exists whole or not
//!    at all.
//! 2. *Commit*: the catalog transaction records the staged and final keys
//!    with the source checkpoint.
//! 3. *Publish*: each staged object is copied, server-side, to its final
//!    key and then deleted. A copy is atomic too, so a reader listing the
//!    prefix sees each file whole or not at all; weir's own readers list
//!    the bucket under its publish gate, held meanwhile, and see an
//!    epoch's files all or none.
//! 4. *Recover*: the last committed epoch is published again (a copy
//!    whose source is gone and whose target exists was done before the
//!    crash); every other staged object of the query is deleted.
//!
//! Final names carry the epoch and a random attempt tag, so a retried
//! epoch never overwrites a file a reader may be reading. Completing a
//! multipart upload at commit would avoid the copy, but an upload that a
//! crash left open cannot be listed through object_store to be aborted;
//! staged objects can be listed and deleted, so nothing is left behind.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use futures::TryStreamExt;

use super::parquet::{Roll, attempt_tag, conform, file_names, micros_schema, staged_prefix};
use super::{EpochSink, PreCommit, Sink, SinkError};
use crate::catalog::StagedFile;
use crate::storage::s3::S3Dir;

/// Writes one query's output into one prefix of a bucket.
#[derive(Clone)]
pub struct ObjectSink {
    store: Arc<dyn ObjectStore>,
    dir: S3Dir,
    query: String,
    file_schema: SchemaRef,
    roll: Roll,
    /// The bucket's publish gate (see `storage::s3::gate`).
    gate: crate::storage::PublishGate,
}

/// Files of a bucket's table are held in memory until uploaded whole:
/// at most this big, whatever `target_file_size` says (and well below the
/// 5 GB a single PUT or copy may move).
const MAX_OBJECT_BYTES: u64 = 1 << 30;

fn io(e: impl std::fmt::Display) -> SinkError {
    SinkError::Io(std::io::Error::other(e.to_string()))
}

impl ObjectSink {
    pub fn new(dir: &S3Dir, query: &str, table_schema: &Schema, roll: Roll) -> Result<ObjectSink, SinkError> {
        let store = crate::storage::s3::configured_or_refuse(&dir.bucket).map_err(|e| SinkError::Config(e.message()))?;
        let roll = Roll { bytes: roll.bytes.min(MAX_OBJECT_BYTES), rows: roll.rows };
        Ok(ObjectSink {
            store,
            dir: dir.clone(),
            query: query.to_string(),
            file_schema: micros_schema(table_schema),
            roll,
            gate: crate::storage::s3::gate(&dir.bucket),
        })
    }

    pub fn file_schema(&self) -> &SchemaRef {
        &self.file_schema
    }

    pub fn dir(&self) -> &S3Dir {
        &self.dir
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// This sink's files among `files` (an epoch's pre-commit holds every
    /// sink's).
    pub fn own(&self, files: &[StagedFile]) -> Vec<StagedFile> {
        files.iter().filter(|f| self.dir.holds(&f.staged)).cloned().collect()
    }

    /// This sink's files among `files`, in partitions below the table too.
    pub fn own_below(&self, files: &[StagedFile]) -> Vec<StagedFile> {
        files.iter().filter(|f| self.dir.holds_below(&f.staged)).cloned().collect()
    }

    fn key(&self, url: &str) -> Result<Path, SinkError> {
        self.dir.key_of(url).ok_or_else(|| SinkError::Config(format!("'{url}' is not in {}", self.dir)))
    }

    /// Copies staged objects to their final keys and deletes them, under
    /// the bucket's gate. Idempotent.
    pub async fn publish(&self, files: &[StagedFile]) -> Result<(), SinkError> {
        if files.is_empty() {
            return Ok(());
        }
        let _publishing = self.gate.publishing().await;
        for f in files {
            let (staged, visible) = (self.key(&f.staged)?, self.key(&f.visible)?);
            match self.store.copy(&staged, &visible).await {
                Ok(()) => {}
                Err(datafusion::object_store::Error::NotFound { .. }) if self.store.head(&visible).await.is_ok() => {
                    continue;
                }
                Err(e) => return Err(io(format!("publishing {}: {e}", f.visible))),
            }
            match self.store.delete(&staged).await {
                Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => {}
                Err(e) => tracing::warn!(file = %f.staged, "published, but the staged copy stays: {e}"),
            }
        }
        Ok(())
    }

    /// Publishes `last` (this sink's files of the last committed epoch) and
    /// deletes every other staged object of the query.
    pub async fn recover_files(&self, last: &[StagedFile]) -> Result<(), SinkError> {
        self.publish(last).await?;
        let listed = self
            .store
            .list_with_delimiter(self.listed_prefix())
            .await
            .map_err(|e| io(format!("listing {}: {e}", self.dir)))?;
        self.remove_staged(listed.objects.into_iter().map(|m| m.location)).await
    }

    /// [`ObjectSink::recover_files`] for a partitioned table: staged
    /// objects are looked for under every partition.
    pub async fn recover_files_below(&self, last: &[StagedFile]) -> Result<(), SinkError> {
        use futures::TryStreamExt;
        self.publish(last).await?;
        let keys: Vec<Path> = self
            .store
            .list(self.listed_prefix())
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| io(format!("listing {}: {e}", self.dir)))?;
        self.remove_staged(keys.into_iter()).await
    }

    fn listed_prefix(&self) -> Option<&Path> {
        (!self.dir.prefix.as_ref().is_empty()).then_some(&self.dir.prefix)
    }

    /// Deletes, among `keys`, the objects this query staged.
    async fn remove_staged(&self, keys: impl Iterator<Item = Path>) -> Result<(), SinkError> {
        let prefix = staged_prefix(&self.query);
        let leftovers: Vec<Path> =
            keys.filter(|key| key.filename().is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".pending"))).collect();
        for key in leftovers {
            tracing::info!(file = %self.dir.key_url(&key), "removing uncommitted file");
            match self.store.delete(&key).await {
                Ok(()) | Err(datafusion::object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io(format!("removing {key}: {e}"))),
            }
        }
        Ok(())
    }

    pub fn begin_epoch(&self, batch_id: i64) -> ObjectEpoch {
        let attempt = attempt_tag();
        ObjectEpoch {
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
}

/// One epoch's files: the open one in memory, the finished ones uploaded.
pub struct ObjectEpoch {
    sink: ObjectSink,
    batch_id: i64,
    attempt: String,
    current: Option<ArrowWriter<Vec<u8>>>,
    current_rows: u64,
    finished: Vec<StagedFile>,
    pub rows: u64,
    pub bytes: u64,
}

impl ObjectEpoch {
    pub async fn write_batch(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = conform(batch, &self.sink.file_schema).map_err(io)?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.current.is_none() {
                let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
                self.current =
                    Some(ArrowWriter::try_new(Vec::new(), self.sink.file_schema.clone(), Some(props)).map_err(io)?);
                self.current_rows = 0;
            }
            let room = self.sink.roll.rows.saturating_sub(self.current_rows).max(1);
            let take = (batch.num_rows() - offset).min(usize::try_from(room).unwrap_or(usize::MAX));
            let Some(writer) = self.current.as_mut() else { return Ok(()) };
            writer.write(&batch.slice(offset, take)).map_err(io)?;
            offset += take;
            self.current_rows += take as u64;
            self.rows += take as u64;
            let size = writer.bytes_written() as u64 + writer.in_progress_size() as u64;
            if size >= self.sink.roll.bytes || self.current_rows >= self.sink.roll.rows {
                self.roll().await?;
            }
        }
        Ok(())
    }

    /// Closes the open file and uploads it under its staged key.
    async fn roll(&mut self) -> Result<(), SinkError> {
        let Some(writer) = self.current.take() else { return Ok(()) };
        let bytes = writer.into_inner().map_err(io)?;
        let (staged, visible) = file_names(&self.sink.query, self.batch_id, self.finished.len(), &self.attempt);
        let key = self.sink.dir.key(&staged);
        let size = bytes.len() as u64;
        self.sink
            .store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(|e| io(format!("uploading {}: {e}", self.sink.dir.key_url(&key))))?;
        self.bytes += size;
        self.finished.push(StagedFile {
            staged: self.sink.dir.key_url(&key),
            visible: self.sink.dir.key_url(&self.sink.dir.key(&visible)),
            bytes: Some(size),
        });
        Ok(())
    }

    pub async fn finish(mut self) -> Result<(Vec<StagedFile>, u64), SinkError> {
        self.roll().await?;
        Ok((std::mem::take(&mut self.finished), self.bytes))
    }

    /// Deletes what this epoch uploaded, in the background (recovery
    /// deletes whatever a stop cut short).
    pub fn abort_epoch(self) {
        let keys: Vec<Path> = self.finished.iter().filter_map(|f| self.sink.dir.key_of(&f.staged)).collect();
        if keys.is_empty() {
            return;
        }
        let store = self.sink.store.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let keys = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
                let _: Result<Vec<Path>, _> = store.delete_stream(keys).try_collect().await;
            });
        }
    }
}

use futures::StreamExt as _;

#[async_trait]
impl Sink for ObjectSink {
    fn begin(&self, batch_id: i64) -> Box<dyn EpochSink> {
        Box::new(self.begin_epoch(batch_id))
    }

    async fn commit(&self, pre_commit: &PreCommit) -> Result<(), SinkError> {
        self.publish(&self.own(&pre_commit.files)).await
    }

    async fn recover(&self, last: &PreCommit) -> Result<(), SinkError> {
        self.recover_files(&self.own(&last.files)).await
    }

    fn publishes_under_gate(&self) -> bool {
        false
    }
}

#[async_trait]
impl EpochSink for ObjectEpoch {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.write_batch(batch).await
    }

    async fn prepare(self: Box<Self>) -> Result<PreCommit, SinkError> {
        let (files, bytes) = self.finish().await?;
        Ok(PreCommit { files, bytes, ..PreCommit::default() })
    }

    fn abort(self: Box<Self>) {
        self.abort_epoch()
    }
}
