//! The shape of the SQLite catalog file, version by version, and the
//! migration that brings an older file up to the current version.

use std::path::Path;

use rusqlite::{Connection, params};

use super::store::RelationKind;
use crate::error::CatalogError;

/// `PRAGMA application_id` of weir catalogs ("WEIR"): tells our file from any
/// other SQLite database a user might point us at.
pub(super) const APPLICATION_ID: i64 = 0x5745_4952;
/// Bumped whenever the tables below change shape. A file with a larger
/// number was written by a newer weir and is refused, never migrated down.
pub(super) const FORMAT_VERSION: i64 = 4;

/// Version 1: relation definitions.
pub(super) const SCHEMA_V1: &str = "
CREATE TABLE relations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    kind       TEXT NOT NULL,
    definition TEXT NOT NULL,
    location   TEXT NOT NULL,
    format     TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);";

/// Version 2: the commit log of continuous queries and their status.
pub(super) const SCHEMA_V2: &str = "
CREATE TABLE epochs (
    query        TEXT NOT NULL,
    batch_id     INTEGER NOT NULL,
    checkpoint   TEXT NOT NULL,
    files        TEXT NOT NULL,
    progress     TEXT,
    state        BLOB NOT NULL,
    committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (query, batch_id)
);
CREATE TABLE query_status (
    query  TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    error  TEXT
);";

/// Version 3: an external table's partition columns as a field of their own
/// (a JSON array; before, only the DDL text said so), and every warehouse
/// root the catalog has been used with.
pub(super) const SCHEMA_V3: &str = "
ALTER TABLE relations ADD COLUMN partition_columns TEXT NOT NULL DEFAULT '[]';
CREATE TABLE warehouse_roots (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    root TEXT NOT NULL UNIQUE
);";

// Version 4: relations of kind `view` (logical views). The tables keep their
// shape; the version keeps an older weir, which would not know the kind,
// from opening the file.

/// Lays out a new, empty catalog file at the current version.
pub(super) fn create(conn: &Connection) -> Result<(), CatalogError> {
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL;
         BEGIN;
         {SCHEMA_V1}
         {SCHEMA_V2}
         {SCHEMA_V3}
         PRAGMA application_id = {APPLICATION_ID};
         PRAGMA user_version = {FORMAT_VERSION};
         COMMIT;"
    ))?;
    Ok(())
}

/// Brings a catalog of format `from` up to [`FORMAT_VERSION`] in one
/// transaction: a crash half-way leaves the old format, which the next start
/// migrates again.
pub(super) fn migrate(conn: &mut Connection, from: i64) -> Result<(), CatalogError> {
    let tx = conn.transaction()?;
    if from < 2 {
        tx.execute_batch(SCHEMA_V2)?;
    }
    if from < 3 {
        tx.execute_batch(SCHEMA_V3)?;
        let relations: Vec<(String, String, String, String)> = tx
            .prepare("SELECT name, kind, definition, location FROM relations ORDER BY seq")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        for (name, kind, definition, location) in relations {
            match RelationKind::parse(&kind) {
                // The DDL is parsed once, here; from now on the field says it.
                Some(RelationKind::ExternalTable) => match super::tables::partition_columns_of(&definition) {
                    Ok(columns) if !columns.is_empty() => {
                        tx.execute(
                            "UPDATE relations SET partition_columns = ?1 WHERE name = ?2",
                            params![json_list(&columns)?, name],
                        )?;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(table = %name, "partition columns not read from the stored DDL: {}", e.message())
                    }
                },
                // A view's directory lies directly under the root it was made in.
                Some(RelationKind::MaterializedView) => {
                    if let Some(root) = Path::new(location.trim_end_matches('/')).parent() {
                        tx.execute(
                            "INSERT INTO warehouse_roots (root) VALUES (?1) ON CONFLICT DO NOTHING",
                            [root.display().to_string()],
                        )?;
                    }
                }
                _ => {}
            }
        }
    }
    tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
    tx.commit()?;
    Ok(())
}

pub(super) fn json_list(items: &[String]) -> Result<String, CatalogError> {
    serde_json::to_string(items).map_err(|e| CatalogError::Storage(e.to_string()))
}
