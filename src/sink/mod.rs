//! Sinks: where a continuous query's results land, each behind [`Sink`], a
//! two-phase committer (Flink's `TwoPhaseCommitSinkFunction`, Arroyo's
//! `TwoPhaseCommitter`) that the runner drives through the commit protocol:
//!
//! 1. [`Sink::begin`] opens an epoch; [`EpochSink::write`] takes its rows.
//! 2. [`EpochSink::prepare`] makes them durable but invisible, and returns
//!    the [`PreCommit`] the catalog transaction records with the checkpoint.
//! 3. After that transaction, [`Sink::commit`] publishes exactly that.
//!    [`EpochSink::abort`] drops an epoch instead.
//! 4. After a restart, [`Sink::recover`] publishes what the last commit
//!    recorded and deletes whatever was staged after it.
//!
//! [`Target`] says where a query's rows go; a new kind of sink is one file
//! implementing the traits and one `Target` variant.
//!
//! * `parquet`: a Parquet table directory (sink tables, materialized views
//!   appended to, dead-letter and late-row tables).
//! * `versioned`: a materialized view rewritten each epoch, one version
//!   directory per epoch.
//! * `kafka`: JSON records on a topic (at least once).

pub mod kafka;
pub mod parquet;
pub mod versioned;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::catalog::StagedFile;
use crate::storage::Warehouse;
pub use parquet::{EpochWriter, ParquetSink, Roll, publish};

/// The directory of the view version readers see, shared between the
/// view's table provider and the sink that moves it after each commit.
pub type VersionPointer = Arc<RwLock<Option<PathBuf>>>;

/// Where a continuous query's rows go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An external Parquet table a sink appends to.
    Table { dir: PathBuf, schema: SchemaRef },
    /// A materialized view's own table. `versions` is set (by
    /// `StreamManager::prepare`) when the query rewrites its whole result
    /// each epoch (output modes update and complete).
    View { dir: PathBuf, versions: Option<VersionPointer> },
    /// `INTO KAFKA (...)`: a topic, with the options as written.
    Kafka(crate::sql::Options),
}

/// What opening a target's sink needs besides the target.
pub struct Opening<'a> {
    pub query: &'a str,
    /// The schema rows are written in (a table's own, or the query's).
    pub schema: &'a SchemaRef,
    pub roll: Roll,
    /// Old view versions are deleted through it, never directly.
    pub warehouse: &'a Warehouse,
    /// Output columns that key records (an aggregation's groups, in update
    /// and complete mode); only keyed targets use them.
    pub key_columns: &'a [usize],
}

impl Target {
    /// The table directory, for targets that are tables.
    pub fn dir(&self) -> Option<&PathBuf> {
        match self {
            Target::Table { dir, .. } | Target::View { dir, .. } => Some(dir),
            Target::Kafka(_) => None,
        }
    }

    pub fn open(&self, opening: &Opening<'_>) -> Result<Box<dyn Sink>, SinkError> {
        Ok(match self {
            Target::Table { dir, .. } | Target::View { dir, versions: None } => {
                Box::new(ParquetSink::new(dir, opening.query, opening.schema, opening.roll))
            }
            Target::View { dir, versions: Some(pointer) } => Box::new(versioned::VersionedSink::new(dir, pointer.clone(), opening)),
            Target::Kafka(options) => Box::new(kafka::KafkaSink::new(options, opening.key_columns.to_vec())?),
        })
    }
}

/// What an epoch's sink leaves for the catalog commit to record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreCommit {
    /// Staged files, published by [`Sink::commit`].
    pub files: Vec<StagedFile>,
    /// Bytes the files hold.
    pub bytes: u64,
    /// A rewritten view's new version directory.
    pub version: Option<PathBuf>,
}

impl PreCommit {
    /// Adds another sink's pre-commit (an epoch's dead letters and late rows).
    pub fn absorb(&mut self, other: PreCommit) {
        self.files.extend(other.files);
        self.bytes += other.bytes;
        self.version = self.version.take().or(other.version);
    }
}

#[derive(Debug)]
pub enum SinkError {
    Io(std::io::Error),
    /// The target refused or lost records (a broker error).
    Delivery(String),
    /// The target's options cannot work (found when the sink opens).
    Config(String),
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkError::Io(e) => write!(f, "{e}"),
            SinkError::Delivery(m) | SinkError::Config(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SinkError {}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        SinkError::Io(e)
    }
}

/// One target of one query, across epochs.
pub trait Sink: Send + Sync {
    /// Opens epoch `batch_id`.
    fn begin(&self, batch_id: i64) -> Box<dyn EpochSink>;
    /// Publishes a pre-commit the catalog has recorded. Idempotent:
    /// recovery may publish the same one again after a crash.
    fn commit(&self, pre_commit: &PreCommit) -> Result<(), SinkError>;
    /// Before the first epoch of a run: publishes what the last commit
    /// recorded (`last`, every sink's files together; a sink takes its
    /// own) and deletes what was staged after it.
    fn recover(&self, last: &PreCommit) -> Result<(), SinkError>;
}

/// One epoch's writes to one sink.
#[async_trait]
pub trait EpochSink: Send {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError>;
    /// No more rows this epoch: durable, not yet visible.
    async fn prepare(self: Box<Self>) -> Result<PreCommit, SinkError>;
    /// Drops the epoch: nothing it wrote becomes visible.
    fn abort(self: Box<Self>);
}
