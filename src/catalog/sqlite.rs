//! The embedded metastore: one SQLite file in the data directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::sqlite_format::{APPLICATION_ID, FORMAT_VERSION, create, json_list, migrate};
use super::store::{CatalogStore, EpochCommit, QueryStatusRow, RelationDef, RelationKind};
use crate::error::CatalogError;

#[derive(Debug)]
pub struct SqliteStore {
    /// One connection, serialised: catalog calls are rare (DDL, start-up) and
    /// SQLite serialises writers anyway.
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The file's (device, inode) when it was opened. A catalog deleted or
    /// replaced under a running server would otherwise take every later
    /// commit into an unlinked file and lose them all at the next start, so
    /// each write first checks that the path still names this file.
    identity: (u64, u64),
    /// Set once the file is found gone, so the loud report is made once.
    vanished: std::sync::atomic::AtomicBool,
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
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| corrupt(e.to_string()))?;
        // Exclusive locking: the file is this server's alone (a second weir
        // on the same data directory is refused below), and in WAL mode the
        // index lives in the process's memory instead of a `-shm` file that
        // is mapped shared: a `-shm` that cannot be written (an immutable or
        // full file) would otherwise kill the server with SIGBUS.
        conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;").map_err(|e| corrupt(e.to_string()))?;
        if let Err(e) = conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;") {
            return Err(match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    CatalogError::InUse(display)
                }
                _ => corrupt(e.to_string()),
            });
        }

        if exists && std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) > 0 {
            // Read-only checks first: nothing is written to a file we have not recognised.
            let app_id: i64 =
                conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| corrupt(e.to_string()))?;
            if app_id != APPLICATION_ID {
                return Err(corrupt(format!("application id {app_id:#x} is not weir's")));
            }
            let check: String =
                conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| corrupt(e.to_string()))?;
            if check != "ok" {
                return Err(corrupt(check));
            }
            let version: i64 =
                conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| corrupt(e.to_string()))?;
            if version > FORMAT_VERSION {
                return Err(CatalogError::TooNew { path: display, found: version, supported: FORMAT_VERSION });
            }
            if version < FORMAT_VERSION {
                migrate(&mut conn, version)?;
            }
        } else {
            create(&conn)?;
        }
        // Durability over speed: a committed DDL must survive power loss.
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        let identity = file_identity(path).map_err(|e| CatalogError::Storage(format!("{display}: {e}")))?;
        Ok(SqliteStore { conn: Mutex::new(conn), path: path.to_path_buf(), identity, vanished: Default::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Holds the connection, as a commit stuck on the disk holds it, until
    /// `until` returns: for tests of what waits on it and what must not.
    #[cfg(test)]
    pub(crate) fn hold_connection(&self, until: impl FnOnce()) {
        let _held = self.conn.lock();
        until();
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, CatalogError> {
        self.conn.lock().map_err(|_| CatalogError::Internal("catalog lock poisoned".into()))
    }

    /// The connection, for a write: refused once the catalog file is no
    /// longer the one this server opened.
    fn conn_for_write(&self) -> Result<std::sync::MutexGuard<'_, Connection>, CatalogError> {
        let conn = self.conn()?;
        if file_identity(&self.path).ok() != Some(self.identity) {
            let path = self.path.display().to_string();
            if !self.vanished.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::error!(
                    "the catalog file '{path}' was deleted or replaced while weir was running: nothing more is committed \
                     (DDL fails, continuous queries stop committing); restore the file or restart weir"
                );
            }
            return Err(CatalogError::Vanished(path));
        }
        Ok(conn)
    }
}

/// The (device, inode) pair that names a file, whatever path reaches it.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl CatalogStore for SqliteStore {
    fn list(&self) -> Result<Vec<RelationDef>, CatalogError> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT name, kind, definition, location, format, partition_columns FROM relations ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get::<_, String>(5)?))
        })?;
        let mut defs = Vec::new();
        for row in rows {
            let (name, kind, definition, location, format, partitions) = row?;
            let corrupt = |reason: String| CatalogError::Corrupt { path: self.path.display().to_string(), reason };
            let kind =
                RelationKind::parse(&kind).ok_or_else(|| corrupt(format!("relation '{name}' has unknown kind '{kind}'")))?;
            let partition_columns =
                serde_json::from_str(&partitions).map_err(|e| corrupt(format!("partition columns of '{name}': {e}")))?;
            defs.push(RelationDef { name, kind, definition, location, format, partition_columns });
        }
        Ok(defs)
    }

    fn insert(&self, def: &RelationDef) -> Result<(), CatalogError> {
        let conn = self.conn_for_write()?;
        let taken: Option<i64> =
            conn.query_row("SELECT 1 FROM relations WHERE name = ?1", [&def.name], |r| r.get(0)).optional()?;
        if taken.is_some() {
            return Err(CatalogError::DuplicateTable(def.name.clone()));
        }
        conn.execute(
            "INSERT INTO relations (name, kind, definition, location, format, partition_columns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                def.name,
                def.kind.as_str(),
                def.definition,
                def.location,
                def.format,
                json_list(&def.partition_columns)?
            ],
        )?;
        Ok(())
    }

    fn redefine(&self, name: &str, definition: &str, discard_state: bool) -> Result<bool, CatalogError> {
        let mut conn = self.conn_for_write()?;
        let tx = conn.transaction()?;
        let found = tx.execute("UPDATE relations SET definition = ?2 WHERE name = ?1", params![name, definition])? > 0;
        if found && discard_state {
            tx.execute("UPDATE epochs SET state = x'' WHERE query = ?1", [name])?;
        }
        tx.commit()?;
        Ok(found)
    }

    fn remove(&self, name: &str) -> Result<bool, CatalogError> {
        let mut conn = self.conn_for_write()?;
        let tx = conn.transaction()?;
        let removed = tx.execute("DELETE FROM relations WHERE name = ?1", [name])? > 0;
        tx.execute("DELETE FROM epochs WHERE query = ?1", [name])?;
        tx.execute("DELETE FROM query_status WHERE query = ?1", [name])?;
        tx.commit()?;
        Ok(removed)
    }

    fn commit_epoch(&self, commit: &EpochCommit) -> Result<(), CatalogError> {
        let files = serde_json::to_string(&commit.files).map_err(|e| CatalogError::Storage(e.to_string()))?;
        let conn = self.conn_for_write()?;
        let inserted = conn.execute(
            "INSERT INTO epochs (query, batch_id, checkpoint, files, progress, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
            params![
                commit.query,
                commit.batch_id,
                commit.checkpoint.to_string(),
                files,
                commit.progress.to_string(),
                commit.state
            ],
        )?;
        if inserted == 0 {
            return Err(CatalogError::EpochConflict { query: commit.query.clone(), batch_id: commit.batch_id });
        }
        Ok(())
    }

    fn epochs(&self, query: &str, last_only: bool) -> Result<Vec<EpochCommit>, CatalogError> {
        let conn = self.conn()?;
        let sql = if last_only {
            "SELECT batch_id, checkpoint, files, progress, state FROM epochs WHERE query = ?1 ORDER BY batch_id DESC LIMIT 1"
        } else {
            "SELECT batch_id, checkpoint, files, progress, state FROM epochs WHERE query = ?1 ORDER BY batch_id"
        };
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([query], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })?;
        let corrupt = |e: serde_json::Error| CatalogError::Corrupt {
            path: self.path.display().to_string(),
            reason: format!("commit log of '{query}': {e}"),
        };
        let mut epochs = Vec::new();
        for row in rows {
            let (batch_id, checkpoint, files, progress, state) = row?;
            epochs.push(EpochCommit {
                query: query.to_string(),
                batch_id,
                checkpoint: serde_json::from_str(&checkpoint).map_err(corrupt)?,
                files: serde_json::from_str(&files).map_err(corrupt)?,
                progress: progress.map(|p| serde_json::from_str(&p)).transpose().map_err(corrupt)?.unwrap_or_default(),
                state,
            });
        }
        Ok(epochs)
    }

    fn note_table_version(&self, query: &str, batch_id: i64, version: i64) -> Result<(), CatalogError> {
        let conn = self.conn_for_write()?;
        conn.execute(
            "UPDATE epochs SET progress = json_set(progress, '$.table_version', ?3)
             WHERE query = ?1 AND batch_id = ?2 AND progress IS NOT NULL",
            params![query, batch_id, version],
        )?;
        Ok(())
    }

    fn progress(&self, limit_per_query: usize) -> Result<Vec<(String, serde_json::Value)>, CatalogError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT query, progress FROM (
                 SELECT query, progress, batch_id,
                        row_number() OVER (PARTITION BY query ORDER BY batch_id DESC) AS n
                 FROM epochs WHERE progress IS NOT NULL)
             WHERE n <= ?1 ORDER BY query, batch_id DESC",
        )?;
        let rows = stmt.query_map([limit_per_query as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (query, progress) = row?;
            if let Ok(value) = serde_json::from_str(&progress) {
                out.push((query, value));
            }
        }
        Ok(out)
    }

    fn prune_epochs(&self, query: &str, keep: i64) -> Result<(), CatalogError> {
        let conn = self.conn_for_write()?;
        conn.execute(
            "DELETE FROM epochs WHERE query = ?1 AND batch_id <= (SELECT max(batch_id) FROM epochs WHERE query = ?1) - ?2",
            params![query, keep],
        )?;
        Ok(())
    }

    fn set_status(&self, row: &QueryStatusRow) -> Result<(), CatalogError> {
        let conn = self.conn_for_write()?;
        conn.execute(
            "INSERT INTO query_status (query, status, error) VALUES (?1, ?2, ?3)
             ON CONFLICT (query) DO UPDATE SET status = excluded.status, error = excluded.error",
            params![row.query, row.status, row.error],
        )?;
        Ok(())
    }

    fn statuses(&self) -> Result<Vec<QueryStatusRow>, CatalogError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT query, status, error FROM query_status ORDER BY query")?;
        let rows = stmt.query_map([], |r| Ok(QueryStatusRow { query: r.get(0)?, status: r.get(1)?, error: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn warehouse_roots(&self) -> Result<Vec<String>, CatalogError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT root FROM warehouse_roots ORDER BY seq")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn add_warehouse_root(&self, root: &str) -> Result<(), CatalogError> {
        let conn = self.conn_for_write()?;
        conn.execute("INSERT INTO warehouse_roots (root) VALUES (?1) ON CONFLICT DO NOTHING", [root])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::sqlite_format::{SCHEMA_V1, SCHEMA_V2};
    use super::*;

    fn def(name: &str) -> RelationDef {
        RelationDef {
            name: name.into(),
            kind: RelationKind::ExternalTable,
            definition: format!("CREATE EXTERNAL TABLE {name} STORED AS PARQUET LOCATION '/x'"),
            location: "/x".into(),
            format: "PARQUET".into(),
            partition_columns: Vec::new(),
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
    fn epochs_commit_once_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("catalog.sqlite")).unwrap();
        let epoch = |batch_id| EpochCommit {
            query: "q".into(),
            batch_id,
            checkpoint: serde_json::json!({"next": batch_id}),
            files: vec![super::super::StagedFile { staged: "a.pending".into(), visible: "a.parquet".into(), bytes: None }],
            progress: serde_json::json!({"batch_id": batch_id}),
            state: Vec::new(),
        };
        store.commit_epoch(&epoch(0)).unwrap();
        store.commit_epoch(&epoch(1)).unwrap();
        assert!(matches!(store.commit_epoch(&epoch(1)), Err(CatalogError::EpochConflict { .. })));
        assert_eq!(store.epochs("q", false).unwrap(), vec![epoch(0), epoch(1)]);
        assert_eq!(store.epochs("q", true).unwrap(), vec![epoch(1)]);
        assert_eq!(store.progress(1).unwrap(), vec![("q".to_string(), serde_json::json!({"batch_id": 1}))]);
        store.prune_epochs("q", 1).unwrap();
        assert_eq!(store.epochs("q", false).unwrap(), vec![epoch(1)]);
    }

    #[test]
    fn version_1_catalog_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!("{SCHEMA_V1} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"))
            .unwrap();
        let store = SqliteStore::open(&path).unwrap();
        store.insert(&def("t")).unwrap();
        assert!(store.statuses().unwrap().is_empty());
    }

    /// A catalog of format 2, written by hand with that format's tables,
    /// opens migrated: a partitioned table's columns are read once from its
    /// DDL into their own field, and the warehouse its views were made in
    /// is remembered as a root.
    #[test]
    fn version_2_catalog_gains_partition_columns_and_warehouse_roots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(&format!(
            "{SCHEMA_V1} {SCHEMA_V2} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 2;"
        ))
        .unwrap();
        let rows = [
            (
                "sales",
                "external_table",
                "CREATE EXTERNAL TABLE sales (id BIGINT, region VARCHAR, \"Day\" INT) STORED AS PARQUET PARTITIONED BY (region, \"Day\") LOCATION '/data/sales/'",
                "/data/sales/",
            ),
            (
                "plain",
                "external_table",
                "CREATE EXTERNAL TABLE plain STORED AS PARQUET LOCATION '/data/plain/'",
                "/data/plain/",
            ),
            (
                "counts",
                "materialized_view",
                "CREATE MATERIALIZED VIEW counts AS SELECT count(*) FROM s",
                "/old/warehouse/counts/",
            ),
            (
                "totals",
                "materialized_view",
                "CREATE MATERIALIZED VIEW totals AS SELECT sum(x) FROM s",
                "/old/warehouse/totals/",
            ),
            ("s", "stream", "CREATE STREAM s (x INT) WITH (connector = 'generator')", "generator"),
        ];
        for (name, kind, definition, location) in rows {
            old.execute(
                "INSERT INTO relations (name, kind, definition, location, format) VALUES (?1, ?2, ?3, ?4, 'PARQUET')",
                params![name, kind, definition, location],
            )
            .unwrap();
        }
        drop(old);

        let store = SqliteStore::open(&path).unwrap();
        let partitions: Vec<(String, Vec<String>)> =
            store.list().unwrap().into_iter().map(|d| (d.name, d.partition_columns)).collect();
        let expected =
            [("sales", vec!["region", "Day"]), ("plain", vec![]), ("counts", vec![]), ("totals", vec![]), ("s", vec![])];
        let expected: Vec<(String, Vec<String>)> =
            expected.iter().map(|(n, c)| (n.to_string(), c.iter().map(|c| c.to_string()).collect())).collect();
        assert_eq!(partitions, expected);
        assert_eq!(store.warehouse_roots().unwrap(), ["/old/warehouse"]);
        drop(store);
        let version: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, FORMAT_VERSION);
    }

    #[test]
    fn partition_columns_and_roots_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let store = SqliteStore::open(&path).unwrap();
        store.insert(&RelationDef { partition_columns: vec!["day".into()], ..def("t") }).unwrap();
        store.add_warehouse_root("/w1").unwrap();
        store.add_warehouse_root("/w2").unwrap();
        store.add_warehouse_root("/w1").unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.list().unwrap()[0].partition_columns, ["day"]);
        assert_eq!(store.warehouse_roots().unwrap(), ["/w1", "/w2"]);
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

    /// A panic while the connection was held is a bug of ours, not a storage
    /// failure: internal (XX000), and the store says so.
    #[test]
    fn a_poisoned_connection_is_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("catalog.sqlite")).unwrap();
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _held = store.conn.lock();
                    panic!("deliberately poisoning the catalog connection");
                })
                .join();
        });
        let err = store.list().unwrap_err();
        assert_eq!(err.sqlstate(), "XX000", "{err}");
    }
}
