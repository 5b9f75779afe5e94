//! The warehouse: the directory of weir-owned tables (materialized views,
//! dead-letter and late-row tables). [`Warehouse`] builds every path under
//! it, from object names that are escaped into one safe path component,
//! and is the only code that deletes directories: only below its roots,
//! checked after normalisation.
//!
//! A server may be restarted with another `--warehouse`. Tables made
//! before keep their data where the catalog recorded it, under an earlier
//! root the catalog remembers; new tables go under the current root. Both
//! count as the warehouse's, so those tables are restored, read, written
//! and dropped where they are, never orphaned.

use std::path::{Component, Path, PathBuf};

use super::TableDir;
use super::s3::S3Dir;
use crate::error::{AccessError, QueryError};

/// Longest directory name most file systems accept (bytes).
const MAX_COMPONENT: usize = 255;

#[derive(Debug, Clone)]
pub struct Warehouse {
    /// Canonical, so a derived path is under it exactly when it starts with it.
    root: PathBuf,
    /// Roots of earlier runs that still hold tables (canonical, or as
    /// recorded when they no longer exist).
    earlier: Vec<PathBuf>,
    /// Where new tables go when the warehouse is a bucket prefix.
    bucket: Option<S3Dir>,
    /// Bucket prefixes of earlier runs.
    earlier_buckets: Vec<S3Dir>,
}

impl Warehouse {
    /// Creates the warehouse directory if missing.
    pub fn open(root: &Path) -> std::io::Result<Warehouse> {
        std::fs::create_dir_all(root)?;
        Ok(Warehouse { root: std::fs::canonicalize(root)?, earlier: Vec::new(), bucket: None, earlier_buckets: Vec::new() })
    }

    /// New tables go under `dir`, a bucket prefix, instead of the local root.
    pub fn in_bucket(mut self, dir: S3Dir) -> Warehouse {
        self.earlier_buckets.retain(|earlier| *earlier != dir);
        self.bucket = Some(dir);
        self
    }

    /// The bucket prefix new tables go under, if the warehouse is one.
    pub fn bucket(&self) -> Option<&S3Dir> {
        self.bucket.as_ref()
    }

    /// The root new tables go under, as the catalog records it.
    pub fn current_root(&self) -> String {
        match &self.bucket {
            Some(dir) => dir.url(),
            None => self.root.display().to_string(),
        }
    }

    /// Also owns what lies under `roots`, the warehouses of earlier runs
    /// (directories or bucket prefixes, as the catalog recorded them; the
    /// current root among them is ignored).
    pub fn with_earlier_roots(mut self, roots: impl IntoIterator<Item = String>) -> Warehouse {
        for root in roots {
            if super::s3::is_s3(&root) {
                if let Ok(dir) = S3Dir::parse(&root)
                    && self.bucket.as_ref() != Some(&dir)
                    && !self.earlier_buckets.contains(&dir)
                {
                    self.earlier_buckets.push(dir);
                }
                continue;
            }
            let root = PathBuf::from(root);
            let root = std::fs::canonicalize(&root).unwrap_or(root);
            if root != self.root && !self.earlier.contains(&root) {
                self.earlier.push(root);
            }
        }
        self
    }

    /// Where new tables go.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every root, the current one first.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.root.as_path()).chain(self.earlier.iter().map(PathBuf::as_path))
    }

    fn roots_list(&self) -> String {
        self.roots().map(|r| format!("'{}'", r.display())).collect::<Vec<_>>().join(", ")
    }

    /// Every bucket root, the current one first.
    fn bucket_roots(&self) -> impl Iterator<Item = &S3Dir> {
        self.bucket.iter().chain(&self.earlier_buckets)
    }

    /// Where the new weir-owned table `name` goes: in the bucket when the
    /// warehouse is one (as [`key_component`]), else [`Warehouse::table_dir`].
    pub fn place(&self, name: &str) -> Result<TableDir, QueryError> {
        match &self.bucket {
            Some(bucket) => Ok(TableDir::S3(S3Dir::parse(&format!("{}{}/", bucket.url(), key_component(name)?))?)),
            None => Ok(TableDir::Local(self.table_dir(name)?)),
        }
    }

    /// The bucket roots of earlier runs, whose tables are still the
    /// warehouse's (their clients are configured at start).
    pub fn earlier_buckets(&self) -> &[S3Dir] {
        &self.earlier_buckets
    }

    /// Whether `place` lies strictly below one of the roots.
    pub fn owns_place(&self, place: &TableDir) -> bool {
        match place {
            TableDir::Local(dir) => self.owns(dir),
            TableDir::S3(dir) => self.bucket_roots().any(|root| {
                root.bucket == dir.bucket
                    && dir.prefix.prefix_match(&root.prefix).is_some_and(|mut rest| rest.next().is_some())
            }),
        }
    }

    /// [`Warehouse::check`] for a place: a prefix must be under a bucket root.
    pub fn check_place(&self, place: &TableDir) -> Result<(), AccessError> {
        match place {
            TableDir::Local(dir) => self.check(dir),
            TableDir::S3(_) if self.owns_place(place) => Ok(()),
            TableDir::S3(dir) => Err(AccessError::Path {
                path: dir.url(),
                roots: self.bucket_roots().map(|r| format!("'{r}'")).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Makes a place ready for files: a directory is created; a prefix
    /// exists once an object is under it.
    pub fn create_place(&self, place: &TableDir) -> Result<(), AccessError> {
        match place {
            TableDir::Local(dir) => self.create_dir(dir),
            TableDir::S3(_) => self.check_place(place),
        }
    }

    /// Deletes a place the warehouse owns and everything in it
    /// ([`Warehouse::remove_dir`]; in a bucket, every object under the
    /// prefix).
    pub async fn remove_place(&self, place: &TableDir) -> Result<(), QueryError> {
        match place {
            TableDir::Local(dir) => Ok(self.remove_dir(dir)?),
            TableDir::S3(dir) => {
                self.check_place(place)?;
                super::s3::remove_prefix(dir).await
            }
        }
    }

    /// The directory of the weir-owned table `name` (a view, `<stream>_errors`,
    /// `<query>_late`).
    pub fn table_dir(&self, name: &str) -> Result<PathBuf, AccessError> {
        self.under(&[&component(name)?])
    }

    fn under(&self, parts: &[&str]) -> Result<PathBuf, AccessError> {
        let mut path = self.root.clone();
        path.extend(parts);
        let inside = resolved(&path).is_some_and(|p| p != self.root && p.starts_with(&self.root));
        if !inside {
            return Err(AccessError::Path { path: path.display().to_string(), roots: format!("'{}'", self.root.display()) });
        }
        Ok(path)
    }

    /// Whether `path`, normalised (made absolute against the working
    /// directory, as a relative `--warehouse` was; `.` dropped, `..`
    /// applied; symlinks resolved where it exists), lies strictly below
    /// one of the roots.
    pub fn owns(&self, path: &Path) -> bool {
        let Some(resolved) = resolved(path) else { return false };
        self.roots().any(|root| resolved != root && resolved.starts_with(root))
    }

    /// Creates a directory the warehouse owns.
    pub fn create_dir(&self, dir: &Path) -> Result<(), AccessError> {
        self.check(dir)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| AccessError::Unresolvable { location: dir.display().to_string(), reason: e.to_string() })
    }

    /// Deletes a directory and everything in it, if the warehouse owns it;
    /// anything else is refused and left alone. A missing directory is fine.
    pub fn remove_dir(&self, dir: &Path) -> Result<(), AccessError> {
        self.check(dir)?;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AccessError::Unresolvable { location: dir.display().to_string(), reason: e.to_string() }),
        }
    }

    /// Refuses `dir` unless the warehouse owns it (under one of its roots,
    /// not a symlink): what it may create, write and delete.
    pub fn check(&self, dir: &Path) -> Result<(), AccessError> {
        // A symlink is deleted as a link by remove_dir_all, but creating
        // through one would land outside: refuse it either way.
        let is_link = std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
        if is_link || !self.owns(dir) {
            return Err(AccessError::Path { path: dir.display().to_string(), roots: self.roots_list() });
        }
        Ok(())
    }
}

/// `path` made absolute against the working directory (as a relative
/// `--warehouse` was), `.` dropped, `..` applied, symlinks resolved where
/// it exists.
fn resolved(path: &Path) -> Option<PathBuf> {
    let normal = std::path::absolute(path).ok().and_then(|p| normalise(&p))?;
    Some(super::sandbox::resolve_like_the_os(&normal).unwrap_or(normal))
}

/// An object name as one key segment in a bucket: as [`component`], but
/// escaped as `+XX` (`+` itself too), since a `%` in a key is read as an
/// escape by every URL that names it. Injective, never `.`/`..`.
pub fn key_component(name: &str) -> Result<String, AccessError> {
    Ok(component(name)?.replace('+', "+2B").replace('%', "+"))
}

/// An object name as one path component: ASCII letters, digits, `_` and
/// `-` stay as they are (so ordinary names keep the directories they always
/// had); every other byte becomes `%XX`. Injective, never `.`/`..`, never
/// contains `/`, never starts with `.`.
pub fn component(name: &str) -> Result<String, AccessError> {
    if name.is_empty() {
        return Err(AccessError::Name { name: name.into(), reason: "it is empty".into() });
    }
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_COMPONENT {
        return Err(AccessError::Name {
            name: name.into(),
            reason: format!("it is too long for a directory name ({} bytes escaped, at most {MAX_COMPONENT})", out.len()),
        });
    }
    Ok(out)
}

/// `path` absolute, with `.` dropped and `..` applied lexically; `None`
/// for a relative path (the warehouse only deals in absolute ones).
fn normalise(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_safe_component() {
        assert_eq!(component("sales_15m").unwrap(), "sales_15m");
        assert_eq!(component("Sales-2").unwrap(), "Sales-2");
        assert_eq!(component("../../escape").unwrap(), "%2E%2E%2F%2E%2E%2Fescape");
        assert_eq!(component("/tmp/x").unwrap(), "%2Ftmp%2Fx");
        assert_eq!(component("..").unwrap(), "%2E%2E");
        assert_eq!(component("a%2E").unwrap(), "a%252E");
        assert_eq!(component("été").unwrap(), "%C3%A9t%C3%A9");
        assert!(component("").is_err());
        assert!(component(&"x".repeat(300)).is_err());
    }

    #[test]
    fn only_paths_below_the_root_are_created_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(&dir.path().join("wh")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let view = w.table_dir("../outside").unwrap();
        assert!(view.starts_with(w.root()) && view.parent() == Some(w.root()));
        w.create_dir(&view).unwrap();
        w.remove_dir(&view).unwrap();
        assert!(!view.exists() && outside.exists());
        assert!(w.remove_dir(&w.root().join("..").join("outside")).is_err());
        assert!(w.remove_dir(w.root()).is_err());
        assert!(w.remove_dir(&outside).is_err());
        std::os::unix::fs::symlink(&outside, w.root().join("link")).unwrap();
        assert!(w.remove_dir(&w.root().join("link")).is_err());
        assert!(w.remove_dir(&w.root().join("link").join("x")).is_err());
        assert!(outside.exists());
    }

    #[test]
    fn an_earlier_root_still_owns_its_tables_but_new_ones_go_to_the_current_root() {
        let dir = tempfile::tempdir().unwrap();
        let old = Warehouse::open(&dir.path().join("old")).unwrap();
        let view = old.table_dir("v").unwrap();
        old.create_dir(&view).unwrap();
        let w = Warehouse::open(&dir.path().join("new")).unwrap().with_earlier_roots([old.root().display().to_string()]);
        assert!(w.owns(&view));
        assert!(w.table_dir("w").unwrap().starts_with(w.root()));
        assert_eq!(w.roots().count(), 2);
        w.remove_dir(&view).unwrap();
        assert!(!view.exists() && old.root().exists());
        assert!(w.remove_dir(old.root()).is_err(), "a root itself is never deleted");
    }

    #[test]
    fn in_a_bucket_new_tables_go_under_the_prefix_and_only_prefixes_below_a_root_are_owned() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = |url: &str| S3Dir::parse(url).unwrap();
        let w = Warehouse::open(dir.path())
            .unwrap()
            .with_earlier_roots(["s3://lake/old".to_string(), "s3://lake/wh/".to_string()])
            .in_bucket(bucket("s3://lake/wh"));
        assert_eq!(w.current_root(), "s3://lake/wh/");
        let view = w.place("v").unwrap();
        assert_eq!(view, TableDir::S3(bucket("s3://lake/wh/v/")));
        assert_eq!(view.location(), "s3://lake/wh/v/");
        assert!(w.owns_place(&view));
        assert!(w.owns_place(&TableDir::S3(bucket("s3://lake/old/t"))), "an earlier bucket root still owns its tables");
        for not_owned in ["s3://lake/wh", "s3://lake/other/v", "s3://other/wh/v", "s3://lake/wh2/v"] {
            assert!(w.check_place(&TableDir::S3(bucket(not_owned))).is_err(), "{not_owned}");
        }
        assert_eq!(w.place("my view").unwrap().location(), "s3://lake/wh/my+20view/", "no '%' in a key");
        assert_ne!(w.place("a+b").unwrap(), w.place("a b").unwrap());
        assert_eq!(w.place("../x").unwrap().location(), "s3://lake/wh/+2E+2E+2Fx/");
        assert!(w.owns_place(&TableDir::Local(w.table_dir("local").unwrap())), "the local root stays the warehouse's");
    }
}
