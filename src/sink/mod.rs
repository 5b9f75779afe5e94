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
//! * `partitioned`: a Hive-partitioned table, `col=value/` directories.
//! * `versioned`: a materialized view rewritten each epoch, one version
//!   directory per epoch.
//! * `object`: a Parquet table in a bucket (`s3://`), published by
//!   server-side copy since object stores have no rename.
//! * `delta`: a Delta Lake table, one log commit per epoch (local or in a
//!   bucket).
//! * `kafka`: JSON records on a topic (at least once).

pub mod delta;
pub mod kafka;
pub mod object;
pub mod parquet;
pub mod partitioned;
pub mod versioned;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::catalog::StagedFile;
pub use parquet::{EpochWriter, ParquetSink, Roll, publish};
pub use versioned::{VersionHold, Versions};

/// Where a continuous query's rows go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An external Parquet table a sink appends to; with partition
    /// columns, into their `col=value/` directories.
    Table { dir: PathBuf, schema: SchemaRef, partition_columns: Vec<String> },
    /// A materialized view's own table. `versions` is set (by
    /// `StreamManager::prepare`) when the query rewrites its whole result
    /// each epoch (output modes update and complete).
    /// In a bucket (a bucket warehouse) only appending views: versions
    /// swap directories by rename, which a bucket lacks.
    View { dir: crate::storage::TableDir, versions: Option<Arc<Versions>> },
    /// An external Parquet table in a bucket a sink appends to; with
    /// partition columns, under their `col=value/` keys.
    ObjectTable { dir: crate::storage::s3::S3Dir, schema: SchemaRef, partition_columns: Vec<String> },
    /// A Delta Lake table a sink appends to, one log commit per epoch.
    Delta { dir: crate::delta::TableDir, schema: SchemaRef },
    /// A materialized view's own Delta table (`format = 'delta'`).
    /// `overwrite` (set by `StreamManager::prepare` for output modes update
    /// and complete): each epoch's commit replaces the whole table.
    DeltaView { dir: crate::storage::TableDir, overwrite: bool },
    /// `INTO KAFKA (...)`: a topic, with the options as written.
    Kafka(crate::sql::Options),
}

/// What opening a target's sink needs besides the target.
pub struct Opening<'a> {
    pub query: &'a str,
    /// The schema rows are written in (a table's own, or the query's).
    pub schema: &'a SchemaRef,
    pub roll: Roll,
    /// Output columns that key records (an aggregation's groups, in update
    /// and complete mode); only keyed targets use them.
    pub key_columns: &'a [usize],
    /// Delta targets: compact small files after every this many epochs.
    pub compact_every: Option<u64>,
}

impl Target {
    pub fn open(&self, opening: &Opening<'_>) -> Result<Box<dyn Sink>, SinkError> {
        use crate::storage::TableDir;
        let partitioned = |place: TableDir, columns: &[String]| -> Result<Box<dyn Sink>, SinkError> {
            let sink = partitioned::PartitionedSink::new(&place, opening.query, opening.schema, columns, opening.roll)?;
            Ok(Box::new(sink))
        };
        Ok(match self {
            Target::Table { dir, partition_columns, .. } if !partition_columns.is_empty() => {
                partitioned(TableDir::Local(dir.clone()), partition_columns)?
            }
            Target::ObjectTable { dir, partition_columns, .. } if !partition_columns.is_empty() => {
                partitioned(TableDir::S3(dir.clone()), partition_columns)?
            }
            Target::Table { dir, .. } => Box::new(ParquetSink::new(dir, opening.query, opening.schema, opening.roll)),
            Target::View { dir, versions: None } => parquet_files(dir, opening.query, opening.schema, opening.roll)?,
            Target::View { versions: Some(versions), .. } => {
                Box::new(versioned::VersionedSink::new(versions.clone(), opening))
            }
            Target::ObjectTable { dir, .. } => {
                Box::new(object::ObjectSink::new(dir, opening.query, opening.schema, opening.roll)?)
            }
            Target::Delta { dir, .. } => Box::new(
                delta::DeltaSink::at(dir, opening.query, opening.schema, opening.roll)?
                    .compacting_every(opening.compact_every),
            ),
            Target::DeltaView { dir, overwrite } => Box::new(
                delta::DeltaSink::at(dir, opening.query, opening.schema, opening.roll)?
                    .overwriting(*overwrite)
                    .compacting_every(opening.compact_every),
            ),
            Target::Kafka(options) => Box::new(kafka::KafkaSink::new(options, opening.key_columns.to_vec())?),
        })
    }
}

/// A sink appending Parquet files at `dir`: renamed into place in a local
/// directory, copied into place in a bucket.
pub fn parquet_files(
    dir: &crate::storage::TableDir,
    query: &str,
    schema: &datafusion::arrow::datatypes::Schema,
    roll: Roll,
) -> Result<Box<dyn Sink>, SinkError> {
    Ok(match dir {
        crate::storage::TableDir::Local(dir) => Box::new(ParquetSink::new(dir, query, schema, roll)),
        crate::storage::TableDir::S3(dir) => Box::new(object::ObjectSink::new(dir, query, schema, roll)?),
    })
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
    /// The epoch: a Delta commit carries it as the query's transaction
    /// version, which is how recovery knows whether that commit happened.
    pub batch_id: Option<i64>,
}

impl PreCommit {
    /// Adds another sink's pre-commit (an epoch's dead letters and late rows).
    pub fn absorb(&mut self, other: PreCommit) {
        self.files.extend(other.files);
        self.bytes += other.bytes;
        self.version = self.version.take().or(other.version);
        self.batch_id = self.batch_id.or(other.batch_id);
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
#[async_trait]
pub trait Sink: Send + Sync {
    /// Opens epoch `batch_id`.
    fn begin(&self, batch_id: i64) -> Box<dyn EpochSink>;
    /// Publishes a pre-commit the catalog has recorded. Idempotent:
    /// recovery may publish the same one again after a crash.
    async fn commit(&self, pre_commit: &PreCommit) -> Result<(), SinkError>;
    /// Before the first epoch of a run: publishes what the last commit
    /// recorded (`last`, every sink's files together; a sink takes its
    /// own) and deletes what was staged after it.
    async fn recover(&self, last: &PreCommit) -> Result<(), SinkError>;
    /// Whether the runner publishes this sink's epochs under the server's
    /// publish gate (local directories, which readers list). A sink in a
    /// bucket holds its bucket's own gate instead, so a slow store never
    /// stalls the listings of local tables.
    fn publishes_under_gate(&self) -> bool {
        true
    }
    /// The table version the commit of epoch `batch_id` made, for targets
    /// with versions (a Delta log); `None` when it made none.
    fn committed_version(&self, _batch_id: i64) -> Option<i64> {
        None
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Warehouse;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::path::Path;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]))
    }

    fn batch(values: &[i64]) -> RecordBatch {
        RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    /// Every file under `dir` (recursively), as paths relative to it.
    fn files(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    fn visible(dir: &Path) -> Vec<String> {
        files(dir).into_iter().filter(|f| f.ends_with(".parquet")).collect()
    }

    fn open(target: &Target) -> Box<dyn Sink> {
        let schema = schema();
        let opening = Opening { query: "q", schema: &schema, roll: Roll::default(), key_columns: &[], compact_every: None };
        target.open(&opening).unwrap()
    }

    async fn epoch(sink: &dyn Sink, batch_id: i64, values: &[i64]) -> PreCommit {
        let mut epoch = sink.begin(batch_id);
        epoch.write(&batch(values)).await.unwrap();
        epoch.prepare().await.unwrap()
    }

    #[tokio::test]
    async fn an_aborted_epoch_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(root.path()).unwrap();
        let dir = warehouse.table_dir("t").unwrap();
        let sink = open(&Target::Table { dir: dir.clone(), schema: schema(), partition_columns: Vec::new() });
        let mut epoch = sink.begin(0);
        epoch.write(&batch(&[1, 2])).await.unwrap();
        epoch.abort();
        assert_eq!(files(&dir), Vec::<String>::new(), "neither visible nor staged files");
    }

    #[tokio::test]
    async fn commit_publishes_exactly_the_prepared_files_and_recovery_drops_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(root.path()).unwrap();
        let dir = warehouse.table_dir("t").unwrap();
        let sink = open(&Target::Table { dir: dir.clone(), schema: schema(), partition_columns: Vec::new() });
        let first = epoch(sink.as_ref(), 0, &[1]).await;
        assert_eq!(first.files.len(), 1);
        assert!(first.bytes > 0);
        assert!(visible(&dir).is_empty(), "prepared is not visible: {:?}", files(&dir));
        // A second epoch is prepared but its catalog commit never happens.
        let second = epoch(sink.as_ref(), 1, &[2]).await;
        sink.commit(&first).await.unwrap();
        let published: Vec<String> = first.files.iter().map(|f| f.visible.rsplit('/').next().unwrap().to_string()).collect();
        assert_eq!(visible(&dir), published);
        // After a crash: the last commit recorded `first` (plus another
        // table's file, which this sink leaves alone); `second` is a leftover.
        let mut last = first.clone();
        let elsewhere = crate::catalog::StagedFile {
            staged: "/elsewhere/.x.pending".into(),
            visible: "/elsewhere/x.parquet".into(),
            bytes: None,
        };
        last.absorb(PreCommit { files: vec![elsewhere], ..PreCommit::default() });
        sink.recover(&last).await.unwrap();
        assert_eq!(files(&dir), published, "{second:?} deleted");
    }

    #[tokio::test]
    async fn a_rewritten_view_keeps_one_version_on_disk_unless_a_reader_holds_an_older_one() {
        let root = tempfile::tempdir().unwrap();
        let warehouse = Warehouse::open(root.path()).unwrap();
        let dir = warehouse.table_dir("v").unwrap();
        let versions = Versions::new(&dir, &warehouse);
        let target = Target::View { dir: crate::storage::TableDir::Local(dir.clone()), versions: Some(versions.clone()) };
        let sink = open(&target);
        let on_disk = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> =
                std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        };
        let v0 = epoch(sink.as_ref(), 0, &[1]).await;
        assert_eq!(v0.version.as_deref(), Some(dir.join("v000000").as_path()));
        assert_eq!(versions.current(), None, "nothing is shown before the commit");
        assert!(versions.hold().is_none());
        sink.commit(&v0).await.unwrap();
        assert_eq!(versions.current(), v0.version);
        let v1 = epoch(sink.as_ref(), 1, &[]).await;
        assert!(v1.files.is_empty());
        sink.commit(&v1).await.unwrap();
        assert_eq!(versions.current(), v1.version, "an empty result is an empty version");
        assert_eq!(visible(&dir.join("v000001")), Vec::<String>::new());
        // A plain reader of the directory finds one version, not two.
        assert_eq!(on_disk(&dir), vec!["v000001"]);
        let v2 = epoch(sink.as_ref(), 2, &[3]).await;
        sink.commit(&v2).await.unwrap();
        assert_eq!(on_disk(&dir), vec!["v000002"]);
        // A query reading v2 keeps it past the next commit, until it is done.
        let reading = versions.hold().unwrap();
        assert_eq!(reading.dir(), dir.join("v000002"));
        let v3 = epoch(sink.as_ref(), 3, &[5]).await;
        sink.commit(&v3).await.unwrap();
        assert_eq!(on_disk(&dir), vec!["v000002", "v000003"]);
        assert_eq!(visible(&dir.join("v000002")).len(), 1, "the held version is whole");
        drop(reading);
        assert_eq!(on_disk(&dir), vec!["v000003"]);
        // A version prepared but never committed, then a restart.
        let _lost = epoch(sink.as_ref(), 4, &[4]).await;
        let versions = Versions::new(&dir, &warehouse);
        let restarted =
            open(&Target::View { dir: crate::storage::TableDir::Local(dir.clone()), versions: Some(versions.clone()) });
        restarted.recover(&v3).await.unwrap();
        assert_eq!(on_disk(&dir), vec!["v000003"]);
        assert_eq!(visible(&dir.join("v000003")).len(), 1);
        assert_eq!(versions.current(), v3.version, "readers see the last committed version again");
    }
}
