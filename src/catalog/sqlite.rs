//! The embedded metastore: one SQLite file in the data directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::store::{CatalogStore, RelationDef, RelationKind};
use crate::error::CatalogError;

/// `PRAGMA application_id` of weir catalogs ("WEIR"): tells our file from any
/// other SQLite database a user might point us at.
const APPLICATION_ID: i64 = 0x5745_4952;
/// Bumped whenever the tables below change shape. A file with a larger
/// number was written by a newer weir and is refused, never migrated down.
const FORMAT_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE relations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    definition TEXT NOT NULL,
    location   TEXT NOT NULL,
    format     TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);";

#[derive(Debug)]
pub struct SqliteStore {
    /// One connection, serialised: catalog calls are rare (DDL, start-up) and
    /// SQLite serialises writers anyway.
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens the catalog at `path`, creating it when the file does not exist.
    /// An existing file that is not a weir catalog, is corrupt, or comes from a
    /// newer weir is an error and is left byte-for-byte untouched.
    pub fn open(path: &Path) -> Result<SqliteStore, CatalogError> {
        let display = path.display().to_string();
        let corrupt = |reason: String| CatalogError::Corrupt { path: display.clone(), reason };
        let exists = path.exists();
        let flags = if exists {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = Connection::open_with_flags(path, flags).map_err(|e| corrupt(e.to_string()))?;

        if exists && std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) > 0 {
            // Read-only checks first: nothing is written to a file we have not recognised.
            let app_id: i64 = conn
                .query_row("PRAGMA application_id", [], |r| r.get(0))
                .map_err(|e| corrupt(e.to_string()))?;
            if app_id != APPLICATION_ID {
                return Err(corrupt(format!("application id {app_id:#x} is not weir's")));
            }
            let check: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| corrupt(e.to_string()))?;
            if check != "ok" {
                return Err(corrupt(check));
            }
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| corrupt(e.to_string()))?;
            if version > FORMAT_VERSION {
                return Err(CatalogError::TooNew { path: display, found: version, supported: FORMAT_VERSION });
            }
        } else {
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 BEGIN;
                 {SCHEMA}
                 PRAGMA application_id = {APPLICATION_ID};
                 PRAGMA user_version = {FORMAT_VERSION};
                 COMMIT;"
            ))?;
        }
        // Durability over speed: a committed DDL must survive power loss.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        Ok(SqliteStore { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, CatalogError> {
        self.conn.lock().map_err(|_| CatalogError::Storage("catalog lock poisoned".into()))
    }
}

impl CatalogStore for SqliteStore {
    fn list(&self) -> Result<Vec<RelationDef>, CatalogError> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT name, kind, definition, location, format FROM relations ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        let mut defs = Vec::new();
        for row in rows {
            let (name, kind, definition, location, format) = row?;
            let kind = RelationKind::parse(&kind).ok_or_else(|| CatalogError::Corrupt {
                path: self.path.display().to_string(),
                reason: format!("relation '{name}' has unknown kind '{kind}'"),
            })?;
            defs.push(RelationDef { name, kind, definition, location, format });
        }
        Ok(defs)
    }

    fn insert(&self, def: &RelationDef) -> Result<(), CatalogError> {
        let conn = self.conn()?;
        let taken: Option<i64> = conn
            .query_row("SELECT 1 FROM relations WHERE name = ?1", [&def.name], |r| r.get(0))
            .optional()?;
        if taken.is_some() {
            return Err(CatalogError::DuplicateTable(def.name.clone()));
        }
        conn.execute(
            "INSERT INTO relations (name, kind, definition, location, format) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![def.name, def.kind.as_str(), def.definition, def.location, def.format],
        )?;
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<bool, CatalogError> {
        let conn = self.conn()?;
        Ok(conn.execute("DELETE FROM relations WHERE name = ?1", [name])? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> RelationDef {
        RelationDef {
            name: name.into(),
            kind: RelationKind::ExternalTable,
            definition: format!("CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '/x'"),
            location: "/x".into(),
            format: "PARQUET".into(),
        }
    }

    #[test]
    fn definitions_survive_reopen_in_creation_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let store = SqliteStore::open(&path).unwrap();
        store.insert(&def("b")).unwrap();
        store.insert(&def("a")).unwrap();
        assert!(matches!(store.insert(&def("a")), Err(CatalogError::DuplicateTable(_))));
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        let names: Vec<_> = store.list().unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["b", "a"]);
        assert!(store.remove("b").unwrap());
        assert!(!store.remove("b").unwrap());
    }

    #[test]
    fn newer_catalog_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        let before = std::fs::read(&path).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, CatalogError::TooNew { found: 99, .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn garbage_file_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        std::fs::write(&path, b"this is not a database, it is a grocery list").unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, CatalogError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"this is not a database, it is a grocery list");
    }

    #[test]
    fn foreign_sqlite_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(matches!(SqliteStore::open(&path), Err(CatalogError::Corrupt { .. })));
    }
}
