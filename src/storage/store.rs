//! The object store every `file://` read and write of the engine goes
//! through. It wraps DataFusion's local file system store and adds:
//!
//! * committed-only listings: names that [`super::listing::is_visible`]
//!   hides are never listed, so a scan never opens a staged, hidden or
//!   half-written file, whatever the table's location form;
//! * whole epochs: a listing waits while a sink publishes an epoch (the
//!   [`PublishGate`]), so it sees all of the epoch's files or none;
//! * a backstop for the sandbox: a path outside the allowed roots is
//!   refused even if some statement reached the store unchecked;
//! * streaming writes that leave nothing behind when they are cut short
//!   (`super::upload`).
//!
//! Tables a sink writes into are served by listing, not from the commit
//! log: the log is pruned, and a table may also hold files the user put
//! there. Listing under the gate gives the same guarantee to weir's own
//! readers; outside engines see files published one rename at a time.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path;
use datafusion::object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::RwLock;

use super::listing::is_visible_below;

/// `bytes::Bytes`, named through object_store's own types so weir needs no
/// direct dependency on the `bytes` crate for one signature.
type Bytes = <PutPayload as IntoIterator>::Item;

/// Readers list under the read side; a sink publishes an epoch's files
/// under the write side, so no listing sees part of an epoch. Renames are
/// quick, so neither side waits long.
#[derive(Debug, Clone, Default)]
pub struct PublishGate(Arc<RwLock<()>>);

impl PublishGate {
    /// Held while an epoch's files are renamed visible.
    pub async fn publishing(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.0.write().await
    }

    async fn listing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.0.read().await
    }
}

#[derive(Debug)]
pub struct CommittedStore {
    inner: Arc<dyn ObjectStore>,
    /// The same store when it is the local file system (streaming writes
    /// stage local files; paths are checked against the sandbox's roots).
    local: Option<Arc<LocalFileSystem>>,
    gate: PublishGate,
    /// The sandbox's roots as object store paths.
    roots: Vec<Path>,
    /// The same roots for messages.
    roots_list: String,
}

impl CommittedStore {
    pub fn new(inner: Arc<LocalFileSystem>, gate: PublishGate, sandbox: &super::Sandbox) -> CommittedStore {
        let roots = sandbox.roots().iter().filter_map(|r| Path::from_absolute_path(r).ok()).collect();
        CommittedStore { inner: inner.clone(), local: Some(inner), gate, roots, roots_list: sandbox.roots_list() }
    }

    /// A bucket's store (`super::s3`): committed-only listings under the
    /// same gate; no local roots, since a bucket is allowed as a whole.
    pub fn remote(inner: Arc<dyn ObjectStore>, gate: PublishGate) -> CommittedStore {
        CommittedStore { inner, local: None, gate, roots: Vec::new(), roots_list: String::new() }
    }

    fn check(&self, location: &Path) -> Result<()> {
        if self.local.is_none() || self.roots.iter().any(|root| location.prefix_matches(root)) {
            return Ok(());
        }
        let message = format!("weir reads and writes files only under {} (see --allow-path)", self.roots_list);
        Err(datafusion::object_store::Error::PermissionDenied { path: format!("/{location}"), source: message.into() })
    }
}

impl fmt::Display for CommittedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommittedStore({})", self.inner)
    }
}

/// Whether `location`, listed under `prefix`, is visible: judged on the
/// segments below the prefix only, since the user chose the prefix. A
/// listed location's parts are the file system's names as they are (the
/// local store builds them from file paths without escaping).
fn visible(prefix: Option<&Path>, location: &Path) -> bool {
    match prefix {
        Some(prefix) => location.prefix_match(prefix).is_some_and(is_visible_below),
        None => is_visible_below(location.parts()),
    }
}

#[async_trait]
impl ObjectStore for CommittedStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.check(location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.check(location)?;
        let Some(local) = &self.local else {
            return self.inner.put_multipart_opts(location, opts).await;
        };
        if !opts.attributes.is_empty() {
            // The local store refuses attributes; let it say so.
            return self.inner.put_multipart_opts(location, opts).await;
        }
        let dest = local.path_to_filesystem(location)?;
        Ok(Box::new(super::upload::StagedUpload::start(dest)?))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let roots = self.roots.clone();
        let roots_list = self.roots_list.clone();
        let anywhere = self.local.is_none();
        let checked = locations.and_then(move |location| {
            let allowed = anywhere || roots.iter().any(|root| location.prefix_matches(root));
            let message = format!("weir deletes files only under {roots_list}");
            futures::future::ready(match allowed {
                true => Ok(location),
                false => Err(datafusion::object_store::Error::PermissionDenied {
                    path: format!("/{location}"),
                    source: message.into(),
                }),
            })
        });
        self.inner.delete_stream(checked.boxed())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let prefix = prefix.cloned();
        // No prefix is the whole file system: outside every root.
        if let Err(e) = self.check(prefix.as_ref().unwrap_or(&Path::default())) {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        let (inner, gate) = (self.inner.clone(), self.gate.clone());
        let listed = async move {
            // The whole listing happens under the gate, so it sees every
            // file of an epoch being published or none of them.
            let _listing = gate.listing().await;
            let all: Vec<Result<ObjectMeta>> = inner.list(prefix.as_ref()).collect().await;
            let kept: Vec<Result<ObjectMeta>> =
                all.into_iter().filter(|m| m.as_ref().map_or(true, |m| visible(prefix.as_ref(), &m.location))).collect();
            futures::stream::iter(kept)
        };
        futures::stream::once(listed).flatten().boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.check(prefix.unwrap_or(&Path::default()))?;
        let _listing = self.gate.listing().await;
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects.retain(|m| visible(prefix, &m.location));
        result.common_prefixes.retain(|p| visible(prefix, p));
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.check(from)?;
        self.check(to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listings_hide_what_readers_must_not_see_and_stay_in_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let table = data.join("t");
        std::fs::create_dir_all(table.join("_temporary")).unwrap();
        std::fs::create_dir_all(table.join("day=1")).unwrap();
        for name in [
            "a.parquet",
            ".hidden.parquet",
            "_SUCCESS",
            "x.parquet.tmp",
            ".weir.71.000001.000.0.pending",
            "day=1/b.parquet",
            "_temporary/c.parquet",
        ] {
            std::fs::write(table.join(name), b"x").unwrap();
        }
        let sandbox = super::super::Sandbox::new(&data, &data, &[], &[]).unwrap();
        let store = CommittedStore::new(Arc::new(LocalFileSystem::new()), PublishGate::default(), &sandbox);
        let prefix = Path::from_absolute_path(std::fs::canonicalize(&table).unwrap()).unwrap();
        let mut names: Vec<String> = store
            .list(Some(&prefix))
            .map_ok(|m| {
                m.location.prefix_match(&prefix).unwrap().map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/")
            })
            .try_collect()
            .await
            .unwrap();
        names.sort();
        assert_eq!(names, ["a.parquet", "day=1/b.parquet"]);
        let listed = store.list_with_delimiter(Some(&prefix)).await.unwrap();
        assert_eq!(listed.objects.len(), 1);
        assert_eq!(listed.common_prefixes.len(), 1, "{:?}", listed.common_prefixes);

        let outside = Path::from_absolute_path(std::fs::canonicalize(dir.path()).unwrap()).unwrap();
        let refused: Result<Vec<ObjectMeta>> = store.list(Some(&outside)).try_collect().await;
        assert!(matches!(refused, Err(datafusion::object_store::Error::PermissionDenied { .. })));
        let everything: Result<Vec<ObjectMeta>> = store.list(None).try_collect().await;
        assert!(matches!(everything, Err(datafusion::object_store::Error::PermissionDenied { .. })));
        let etc = Path::from("etc/passwd");
        assert!(matches!(
            store.get_opts(&etc, GetOptions::default()).await,
            Err(datafusion::object_store::Error::PermissionDenied { .. })
        ));
    }
}
