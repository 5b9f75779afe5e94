//! The metastore interface: what weir remembers about relations across
//! restarts. SQLite implements it today; a PostgreSQL-backed store shared by
//! several servers can implement the same trait.

use crate::error::CatalogError;

/// What kind of relation a definition describes. Streams, sinks and views
/// join this list with the streaming issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// A schema-on-read table over files (Hive's external table).
    ExternalTable,
}

impl RelationKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RelationKind::ExternalTable => "external_table",
        }
    }

    pub fn parse(s: &str) -> Option<RelationKind> {
        match s {
            "external_table" => Some(RelationKind::ExternalTable),
            _ => None,
        }
    }
}

/// One persisted relation. `definition` is the canonical DDL that recreates
/// it (locations already absolute), so restoring is replaying DDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationDef {
    /// Unqualified name as the catalog keys it (identifier-normalised).
    pub name: String,
    pub kind: RelationKind,
    pub definition: String,
    /// Absolute path or URL of the data; shown by SHOW TABLES.
    pub location: String,
    /// File format as written in STORED AS (PARQUET, CSV, JSON).
    pub format: String,
}

/// Persistence of relation definitions. Implementations must make each call
/// atomic: a crash leaves either the old or the new state.
pub trait CatalogStore: Send + Sync + std::fmt::Debug {
    /// Every relation, in creation order.
    fn list(&self) -> Result<Vec<RelationDef>, CatalogError>;
    /// Adds a relation; `DuplicateTable` when the name is taken.
    fn insert(&self, def: &RelationDef) -> Result<(), CatalogError>;
    /// Removes a relation by name; false when there was none.
    fn remove(&self, name: &str) -> Result<bool, CatalogError>;
}
