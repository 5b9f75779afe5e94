//! The metastore interface: what weir remembers about relations across
//! restarts. SQLite implements it today; a PostgreSQL-backed store shared by
//! several servers can implement the same trait.

use crate::error::CatalogError;

/// What kind of relation a definition describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// A schema-on-read table over files (Hive's external table).
    ExternalTable,
    /// A source of records (`CREATE STREAM`).
    Stream,
    /// A continuous query appending into an external table (`CREATE SINK`).
    Sink,
    /// A continuous query that owns its table (`CREATE MATERIALIZED VIEW`).
    MaterializedView,
    /// A named query over tables, streams or other views (`CREATE VIEW`),
    /// planned where it is used.
    View,
}

impl RelationKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            RelationKind::ExternalTable => "external_table",
            RelationKind::Stream => "stream",
            RelationKind::Sink => "sink",
            RelationKind::MaterializedView => "materialized_view",
            RelationKind::View => "view",
        }
    }

    /// The kind in words with its article, for messages: "an external table".
    pub fn described(&self) -> String {
        let words = self.as_str().replace('_', " ");
        let article = if words.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("{article} {words}")
    }

    pub fn parse(s: &str) -> Option<RelationKind> {
        match s {
            "external_table" => Some(RelationKind::ExternalTable),
            "stream" => Some(RelationKind::Stream),
            "sink" => Some(RelationKind::Sink),
            "materialized_view" => Some(RelationKind::MaterializedView),
            "view" => Some(RelationKind::View),
            _ => None,
        }
    }
}

/// One committed epoch of a continuous query: everything that must become
/// durable together (the commit protocol's single transaction).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochCommit {
    pub query: String,
    pub batch_id: i64,
    /// The source's checkpoint for this epoch (see `source::Source`).
    pub checkpoint: serde_json::Value,
    /// The files this epoch wrote, as staged and as published; recovery
    /// finishes publishing them if the server died right after the commit.
    pub files: Vec<StagedFile>,
    /// The epoch's row of `weir.query_progress`.
    pub progress: serde_json::Value,
    /// Operator state after this epoch (windows, joins); empty when stateless.
    pub state: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedFile {
    /// Where the file was written, under a name no reader picks up.
    pub staged: String,
    /// Its visible name once published.
    pub visible: String,
    /// Its size, where the writer knew it without asking the store (an
    /// object uploaded whole): a Delta commit needs it. Absent in records
    /// of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Status of a continuous query as the catalog remembers it: `finished`
/// and `failed` survive a restart, so a finished `available_now` query is
/// not run again and a failed one is not retried forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryStatusRow {
    pub query: String,
    pub status: String,
    pub error: Option<String>,
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
    /// The Hive-style partition columns of an external table (`col=value/`
    /// directories), in declaration order; empty for everything else.
    pub partition_columns: Vec<String>,
}

/// Persistence of relation definitions. Implementations must make each call
/// atomic: a crash leaves either the old or the new state. Calls block (a
/// disk commit, a round trip to a database server): async code reaches a
/// store through [`super::AsyncStore`], which runs them off the workers.
pub trait CatalogStore: Send + Sync + std::fmt::Debug {
    /// Every relation, in creation order.
    fn list(&self) -> Result<Vec<RelationDef>, CatalogError>;
    /// Adds a relation; `DuplicateTable` when the name is taken.
    fn insert(&self, def: &RelationDef) -> Result<(), CatalogError>;
    /// Replaces a relation's definition; false when there is none. With
    /// `discard_state`, in the same transaction, the operator state its
    /// committed epochs kept goes (their checkpoints stay).
    fn redefine(&self, name: &str, definition: &str, discard_state: bool) -> Result<bool, CatalogError>;
    /// Removes a relation by name; false when there was none. A continuous
    /// query's commit log and status go with it.
    fn remove(&self, name: &str) -> Result<bool, CatalogError>;

    /// Records one epoch atomically. Fails with `EpochConflict` if the batch
    /// id is already committed (two runners of one query must never both win).
    fn commit_epoch(&self, commit: &EpochCommit) -> Result<(), CatalogError>;
    /// Committed epochs of `query`, oldest first; `last_only` returns at most
    /// the newest one.
    fn epochs(&self, query: &str, last_only: bool) -> Result<Vec<EpochCommit>, CatalogError>;
    /// Adds the table version an epoch's commit made (a Delta log's) to the
    /// epoch's progress row: known only once the catalog commit is done.
    fn note_table_version(&self, query: &str, batch_id: i64, version: i64) -> Result<(), CatalogError>;
    /// The newest `limit` progress rows of every query, newest first.
    fn progress(&self, limit_per_query: usize) -> Result<Vec<(String, serde_json::Value)>, CatalogError>;
    /// Drops the checkpoints and progress of epochs older than the newest
    /// `keep` (sources whose checkpoints are cumulative need only the last).
    fn prune_epochs(&self, query: &str, keep: i64) -> Result<(), CatalogError>;
    fn set_status(&self, row: &QueryStatusRow) -> Result<(), CatalogError>;
    fn statuses(&self) -> Result<Vec<QueryStatusRow>, CatalogError>;

    /// Every warehouse root this catalog has been used with, oldest first:
    /// a view's files stay where they were written when the server is
    /// restarted with another `--warehouse`.
    fn warehouse_roots(&self) -> Result<Vec<String>, CatalogError>;
    /// Remembers a warehouse root; a root already known is not added twice.
    fn add_warehouse_root(&self, root: &str) -> Result<(), CatalogError>;
}
