//! The sink of a materialized view rewritten each epoch (output modes
//! update and complete): every epoch writes the whole result into a new
//! version directory, and its commit moves the view's pointer there, so
//! readers see exactly one committed version, never a mix of two
//! (`stream::versioned` is the reading side).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::{EpochSink, EpochWriter, Opening, ParquetSink, PreCommit, Roll, Sink, SinkError, VersionPointer, publish};
use crate::storage::Warehouse;

pub struct VersionedSink {
    /// The view's directory; versions are its `v<batch id>` subdirectories.
    dir: PathBuf,
    query: String,
    schema: SchemaRef,
    roll: Roll,
    pointer: VersionPointer,
    warehouse: Warehouse,
}

impl VersionedSink {
    pub fn new(dir: &Path, pointer: VersionPointer, opening: &Opening<'_>) -> VersionedSink {
        VersionedSink {
            dir: dir.to_path_buf(),
            query: opening.query.to_string(),
            schema: opening.schema.clone(),
            roll: opening.roll,
            pointer,
            warehouse: opening.warehouse.clone(),
        }
    }

    fn version_dir(&self, batch_id: i64) -> PathBuf {
        self.dir.join(format!("v{batch_id:06}"))
    }
}

/// One epoch's version being written.
struct VersionWriter {
    writer: EpochWriter,
    dir: PathBuf,
}

impl Sink for VersionedSink {
    fn begin(&self, batch_id: i64) -> Box<dyn EpochSink> {
        let dir = self.version_dir(batch_id);
        let writer = ParquetSink::new(&dir, &self.query, &self.schema, self.roll).begin(batch_id);
        Box::new(VersionWriter { writer, dir })
    }

    fn commit(&self, pre_commit: &PreCommit) -> Result<(), SinkError> {
        publish(&pre_commit.files)?;
        let Some(version) = &pre_commit.version else { return Ok(()) };
        let previous = self.pointer.write().ok().and_then(|mut pointer| pointer.replace(version.clone()));
        // The new version is already what readers see: a failed clean-up
        // costs disk space, and the next commit or restart retries it.
        if previous.as_ref() != Some(version)
            && let Err(e) = remove_versions_except(&self.warehouse, &self.dir, Some(version), previous.as_deref())
        {
            tracing::warn!(query = %self.query, "old view versions not removed: {e}");
        }
        Ok(())
    }

    fn recover(&self, last: &PreCommit) -> Result<(), SinkError> {
        let current = last.version.as_deref();
        let own: Vec<_> =
            last.files.iter().filter(|f| current.is_some() && Path::new(&f.staged).parent() == current).cloned().collect();
        publish(&own)?;
        // Every other version is older or was never committed.
        remove_versions_except(&self.warehouse, &self.dir, current, None)?;
        if let Ok(mut pointer) = self.pointer.write() {
            *pointer = current.map(Path::to_path_buf);
        }
        Ok(())
    }
}

#[async_trait]
impl EpochSink for VersionWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        Ok(self.writer.write(batch)?)
    }

    async fn prepare(self: Box<Self>) -> Result<PreCommit, SinkError> {
        let (files, bytes) = self.writer.finish()?;
        // An empty result is an empty version, not the previous one.
        std::fs::create_dir_all(&self.dir)?;
        Ok(PreCommit { files, bytes, version: Some(self.dir) })
    }

    fn abort(self: Box<Self>) {
        self.writer.abort();
    }
}

/// Deletes the version directories of a view except `keep` and `previous`
/// (a reader may still be listing the previous one), through the warehouse.
pub fn remove_versions_except(
    warehouse: &Warehouse,
    dir: &Path,
    keep: Option<&Path>,
    previous: Option<&Path>,
) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let is_version = path.is_dir() && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('v'));
        if is_version && Some(path.as_path()) != keep && Some(path.as_path()) != previous {
            warehouse.remove_dir(&path).map_err(std::io::Error::other)?;
        }
    }
    Ok(())
}
