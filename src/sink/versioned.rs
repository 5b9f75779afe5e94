//! The sink of a materialized view rewritten each epoch (output modes
//! update and complete): every epoch writes the whole result into a new
//! version directory, and its commit moves the view's pointer there, so
//! readers see exactly one committed version, never a mix of two
//! (`stream::versioned` is the reading side).
//!
//! Older versions are deleted at once, so a plain reader of the directory
//! (DuckDB, pyarrow, polars) finds one version between commits, except a
//! version a weir query is still reading: [`Versions::hold`] keeps it until
//! that query's plan is dropped.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::{EpochSink, EpochWriter, Opening, ParquetSink, PreCommit, Roll, Sink, SinkError, publish};
use crate::storage::Warehouse;

/// A rewritten view's versions: the one readers see, and the older ones
/// weir queries still read. Shared by the view's table provider and its sink.
#[derive(Debug)]
pub struct Versions {
    /// The view's directory; versions are its `v<batch id>` subdirectories.
    dir: PathBuf,
    warehouse: Warehouse,
    state: Mutex<VersionState>,
}

#[derive(Debug, Default)]
struct VersionState {
    /// The committed version; `None` before the first commit.
    current: Option<PathBuf>,
    /// Live holds per version directory.
    readers: HashMap<PathBuf, usize>,
    /// Older versions to delete when their last hold goes.
    retired: HashSet<PathBuf>,
}

/// A reader's hold on one version: it is not deleted while this lives.
#[derive(Debug)]
pub struct VersionHold {
    versions: Arc<Versions>,
    dir: PathBuf,
}

impl VersionHold {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Versions {
    pub fn new(dir: &Path, warehouse: &Warehouse) -> Arc<Versions> {
        Arc::new(Versions { dir: dir.to_path_buf(), warehouse: warehouse.clone(), state: Mutex::default() })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, VersionState> {
        // The state is a few maps updated in one step each: a panic
        // elsewhere cannot leave it half-written, so a poisoned lock's
        // contents are still right.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The committed version readers see.
    pub fn current(&self) -> Option<PathBuf> {
        self.state().current.clone()
    }

    /// Holds the committed version for a reader; `None` before the first commit.
    pub fn hold(self: &Arc<Self>) -> Option<VersionHold> {
        let mut state = self.state();
        let dir = state.current.clone()?;
        *state.readers.entry(dir.clone()).or_default() += 1;
        Some(VersionHold { versions: self.clone(), dir })
    }

    /// Makes `current` the version readers see and deletes every other
    /// version no reader holds (the rest go when their last hold does).
    pub fn publish(&self, current: Option<PathBuf>) -> std::io::Result<()> {
        let (unheld, held) = {
            let mut state = self.state();
            state.current = current.clone();
            let mut unheld = Vec::new();
            for dir in version_dirs(&self.dir)? {
                if Some(&dir) == current.as_ref() {
                    continue;
                }
                if state.readers.contains_key(&dir) {
                    state.retired.insert(dir);
                } else {
                    unheld.push(dir);
                }
            }
            (unheld, state.retired.len())
        };
        if held > 0 {
            tracing::debug!(view = %self.dir.display(), held, "older view versions kept while queries read them");
        }
        for dir in unheld {
            self.warehouse.remove_dir(&dir).map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    fn release(&self, dir: &Path) {
        let delete = {
            let mut state = self.state();
            let Some(count) = state.readers.get_mut(dir) else { return };
            *count -= 1;
            if *count > 0 {
                return;
            }
            state.readers.remove(dir);
            state.retired.remove(dir)
        };
        if delete && let Err(e) = self.warehouse.remove_dir(dir) {
            // Disk space only: the next commit or restart deletes it.
            tracing::warn!(version = %dir.display(), "old view version not removed: {e}");
        }
    }
}

impl Drop for VersionHold {
    fn drop(&mut self) {
        self.versions.release(&self.dir);
    }
}

/// The version subdirectories of a view's directory (none if it is gone).
fn version_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('v')) {
            dirs.push(path);
        }
    }
    Ok(dirs)
}

pub struct VersionedSink {
    query: String,
    schema: SchemaRef,
    roll: Roll,
    versions: Arc<Versions>,
}

impl VersionedSink {
    pub fn new(versions: Arc<Versions>, opening: &Opening<'_>) -> VersionedSink {
        VersionedSink { query: opening.query.to_string(), schema: opening.schema.clone(), roll: opening.roll, versions }
    }

    fn version_dir(&self, batch_id: i64) -> PathBuf {
        self.versions.dir.join(format!("v{batch_id:06}"))
    }
}

/// One epoch's version being written.
struct VersionWriter {
    writer: EpochWriter,
    dir: PathBuf,
}

#[async_trait]
impl Sink for VersionedSink {
    fn begin(&self, batch_id: i64) -> Box<dyn EpochSink> {
        let dir = self.version_dir(batch_id);
        let writer = ParquetSink::new(&dir, &self.query, &self.schema, self.roll).begin(batch_id);
        Box::new(VersionWriter { writer, dir })
    }

    async fn commit(&self, pre_commit: &PreCommit) -> Result<(), SinkError> {
        publish(&pre_commit.files)?;
        let Some(version) = &pre_commit.version else { return Ok(()) };
        // The new version is already what readers see: a failed clean-up
        // costs disk space, and the next commit or restart retries it.
        if let Err(e) = self.versions.publish(Some(version.clone())) {
            tracing::warn!(query = %self.query, "old view versions not removed: {e}");
        }
        Ok(())
    }

    async fn recover(&self, last: &PreCommit) -> Result<(), SinkError> {
        let current = last.version.as_deref();
        let own: Vec<_> =
            last.files.iter().filter(|f| current.is_some() && Path::new(&f.staged).parent() == current).cloned().collect();
        publish(&own)?;
        // Every other version is older or was never committed.
        self.versions.publish(current.map(Path::to_path_buf))?;
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
        Ok(PreCommit { files, bytes, version: Some(self.dir), batch_id: None })
    }

    fn abort(self: Box<Self>) {
        self.writer.abort();
    }
}
