//! Streaming writes of local files (`COPY ... TO`, `INSERT INTO`): parts
//! go to a staged file the listing rule hides, which is renamed into place
//! when the write completes and deleted, at once, when it does not.
//!
//! object_store's own local upload stages `name#<n>` and deletes it on drop
//! from a blocking task; when the server stops gracefully mid-`COPY`, the
//! runtime is shutting down, the task never runs, and the file stays. Here
//! the delete happens in `Drop` itself. A crash can still leave a staged
//! file: never visible, and [`remove_leftovers`] deletes those under the
//! data directory at the next start.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::object_store::{Error, MultipartUpload, PutPayload, PutResult, Result, UploadPart};
use futures::FutureExt;

/// How staged upload names end, after `.<name>.upload-<n>`.
const STAGED_SUFFIX: &str = ".pending";
const STORE: &str = "weir local upload";

#[derive(Debug)]
pub struct StagedUpload {
    /// The staged file; `None` once completed or aborted.
    staged: Option<PathBuf>,
    dest: PathBuf,
    /// Shared with the blocking tasks writing parts.
    file: Arc<Mutex<File>>,
    /// Where the next part starts: parts are written at their own offsets,
    /// in whatever order their tasks run.
    offset: u64,
}

fn error(e: impl std::fmt::Display) -> Error {
    Error::Generic { store: STORE, source: e.to_string().into() }
}

impl StagedUpload {
    /// Creates the staged file next to `dest` (and `dest`'s directory).
    pub fn start(dest: PathBuf) -> Result<StagedUpload> {
        let dir = dest.parent().ok_or_else(|| error(format!("'{}' has no directory", dest.display())))?;
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::fs::create_dir_all(dir).map_err(|e| error(format!("creating '{}': {e}", dir.display())))?;
        for n in 1u32.. {
            let staged = dir.join(format!(".{name}.upload-{n}{STAGED_SUFFIX}"));
            match OpenOptions::new().write(true).create_new(true).open(&staged) {
                Ok(file) => {
                    return Ok(StagedUpload { staged: Some(staged), dest, file: Arc::new(Mutex::new(file)), offset: 0 });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(error(format!("creating '{}': {e}", staged.display()))),
            }
        }
        Err(error("no free staging name"))
    }
}

#[async_trait]
impl MultipartUpload for StagedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().map_err(|_| error("upload file lock poisoned"))?;
            file.seek(SeekFrom::Start(offset)).map_err(error)?;
            data.iter().try_for_each(|part| file.write_all(part)).map_err(error)
        })
        .map(|joined| joined.map_err(error).and_then(|r| r))
        .boxed()
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let staged = self.staged.take().ok_or_else(|| error("upload already completed or aborted"))?;
        let (file, dest) = (Arc::clone(&self.file), self.dest.clone());
        tokio::task::spawn_blocking(move || {
            // Holding the lock: no part is still being written.
            let _file = file.lock().map_err(|_| error("upload file lock poisoned"))?;
            std::fs::rename(&staged, &dest).map_err(|e| {
                let _ = std::fs::remove_file(&staged);
                error(format!("publishing '{}': {e}", dest.display()))
            })
        })
        .await
        .map_err(error)??;
        Ok(PutResult { e_tag: None, version: None })
    }

    async fn abort(&mut self) -> Result<()> {
        if let Some(staged) = self.staged.take() {
            std::fs::remove_file(&staged).map_err(error)?;
        }
        Ok(())
    }
}

impl Drop for StagedUpload {
    fn drop(&mut self) {
        // One unlink; cheap enough to do right here, which also works while
        // the runtime shuts down (a spawned task would not run then).
        if let Some(staged) = self.staged.take() {
            let _ = std::fs::remove_file(staged);
        }
    }
}

/// Whether `name` is an upload staged by this module or by object_store
/// (`name#<digits>`): garbage once no writer runs.
fn is_staged_upload(name: &str) -> bool {
    let ours = name.starts_with('.') && name.ends_with(STAGED_SUFFIX) && name.contains(".upload-");
    let object_store = name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    ours || object_store
}

/// Deletes staged uploads a crash left anywhere under `root` (symlinks
/// are not followed). Runs at start-up, before any write can be in flight.
pub fn remove_leftovers(root: &Path) -> usize {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() && is_staged_upload(&entry.file_name().to_string_lossy()) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(file = %entry.path().display(), "removed an unfinished upload");
                        removed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(file = %entry.path().display(), "unfinished upload not removed: {e}")
                    }
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_land_on_complete_and_nothing_stays_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/out.parquet");
        let mut upload = StagedUpload::start(dest.clone()).unwrap();
        let first = upload.put_part(PutPayload::from("hello "));
        let second = upload.put_part(PutPayload::from("world"));
        second.await.unwrap();
        first.await.unwrap();
        let staged: Vec<String> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(staged.len(), 1);
        assert!(!crate::storage::is_visible(&staged[0]) && is_staged_upload(&staged[0]), "{staged:?}");
        upload.complete().await.unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "hello world");

        let mut dropped = StagedUpload::start(dir.path().join("sub/other.parquet")).unwrap();
        dropped.put_part(PutPayload::from("x")).await.unwrap();
        drop(dropped);
        let names: Vec<String> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out.parquet"]);
    }

    #[test]
    fn leftovers_of_a_crash_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("t/day=1")).unwrap();
        for name in [
            "t/x.parquet#1",
            "t/day=1/.y.parquet.upload-2.pending",
            "t/keep.parquet",
            "t/a#b.parquet",
            "t/.weir.71.000001.000.0.pending",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_leftovers(dir.path()), 2);
        assert!(dir.path().join("t/keep.parquet").exists());
        assert!(dir.path().join("t/a#b.parquet").exists());
        assert!(
            dir.path().join("t/.weir.71.000001.000.0.pending").exists(),
            "a sink's staged epoch is the sink's to recover"
        );
    }
}
