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

use crate::error::AccessError;

/// Longest directory name most file systems accept (bytes).
const MAX_COMPONENT: usize = 255;

#[derive(Debug, Clone)]
pub struct Warehouse {
    /// Canonical, so a derived path is under it exactly when it starts with it.
    root: PathBuf,
    /// Roots of earlier runs that still hold tables (canonical, or as
    /// recorded when they no longer exist).
    earlier: Vec<PathBuf>,
}

impl Warehouse {
    /// Creates the warehouse directory if missing.
    pub fn open(root: &Path) -> std::io::Result<Warehouse> {
        std::fs::create_dir_all(root)?;
        Ok(Warehouse { root: std::fs::canonicalize(root)?, earlier: Vec::new() })
    }

    /// Also owns what lies under `roots`, the warehouses of earlier runs
    /// (the current root among them is ignored).
    pub fn with_earlier_roots(mut self, roots: impl IntoIterator<Item = PathBuf>) -> Warehouse {
        for root in roots {
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
        let w = Warehouse::open(&dir.path().join("new")).unwrap().with_earlier_roots([old.root().to_path_buf()]);
        assert!(w.owns(&view));
        assert!(w.table_dir("w").unwrap().starts_with(w.root()));
        assert_eq!(w.roots().count(), 2);
        w.remove_dir(&view).unwrap();
        assert!(!view.exists() && old.root().exists());
        assert!(w.remove_dir(old.root()).is_err(), "a root itself is never deleted");
    }
}
