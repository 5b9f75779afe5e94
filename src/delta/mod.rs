//! Delta Lake tables, through the `deltalake` crate: opening one (its
//! latest version, or an older one), creating an empty one with declared
//! columns, and committing a continuous query's epoch to its log.
//!
//! The log is what makes a Delta table readable by every engine: a data file
//! exists for readers only once a commit adds it, so an outside reader
//! (Spark, DuckDB, polars, deltalake-python) sees whole epochs or nothing.
//! Weir's commit protocol stays the same (files written and synced, the
//! catalog transaction, then publishing); publishing is one Delta commit
//! per epoch carrying the query's transaction identifier (`txn`: app id =
//! the query, version = the epoch), as Spark's Delta sink does. That
//! action is how recovery tells whether a commit happened before a crash:
//! the log says which epoch of the query it holds last.
//!
//! * `provider`: the table as DataFusion reads it, a snapshot per query,
//!   and the factory behind `STORED AS DELTA`.
//! * `maintenance`: `OPTIMIZE`, `VACUUM`, `DESCRIBE HISTORY`.

pub mod maintenance;
pub mod provider;

use datafusion::arrow::datatypes::Schema;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableError};

/// One `OPTIMIZE` or `VACUUM` at a time in this server: a `VACUUM` with a
/// short retention would delete the files an `OPTIMIZE` has written and
/// not yet committed.
static MAINTENANCE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The directory that holds a Delta table's log.
pub const LOG_DIR: &str = "_delta_log";

#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("'{0}' is not a Delta table: it has no {LOG_DIR} directory")]
    NotATable(String),
    #[error("Delta table at '{location}': {reason}")]
    Table { location: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
}

/// For clients: a location that is not a Delta table is the wrong kind of
/// object (42809); a table using protocol features this build does not
/// know is unsupported (0A000), named by the kernel's message; anything
/// else is a table that cannot be read (58030).
impl From<DeltaError> for crate::error::QueryError {
    fn from(e: DeltaError) -> Self {
        use crate::error::QueryError;
        match e {
            DeltaError::NotATable(path) => {
                QueryError::WrongObjectType(format!("'{path}' is not a Delta table: it has no {LOG_DIR} directory"))
            }
            DeltaError::Table { location, reason } if reason.contains("Unsupported") => {
                QueryError::Unsupported(format!("the Delta table at '{location}': {reason}"))
            }
            DeltaError::Unsupported(what) => QueryError::Unsupported(what),
            DeltaError::Table { location, reason } => QueryError::UnreadableLocation { path: location, reason },
        }
    }
}

impl DeltaError {
    fn at(dir: impl std::fmt::Display, e: impl std::fmt::Display) -> DeltaError {
        DeltaError::Table { location: dir.to_string(), reason: e.to_string() }
    }
}

pub use crate::storage::TableDir;

fn table_url(dir: &TableDir) -> Result<url::Url, DeltaError> {
    dir.url().map_err(|e| DeltaError::at(dir, e))
}

/// Whether a Delta log is at `dir`.
pub async fn is_table(dir: &TableDir) -> Result<bool, DeltaError> {
    match dir {
        TableDir::Local(path) => Ok(path.join(LOG_DIR).is_dir()),
        TableDir::S3(s3) => {
            let store = crate::storage::s3::configured_or_refuse(&s3.bucket).map_err(|e| DeltaError::at(dir, e))?;
            let log = s3.key(LOG_DIR);
            let listed = store.list_with_delimiter(Some(&log)).await.map_err(|e| DeltaError::at(dir, e))?;
            Ok(!listed.objects.is_empty() || !listed.common_prefixes.is_empty())
        }
    }
}

/// A data file an epoch adds: its path relative to the table, its size and
/// when it was written (milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
}

/// The table at `dir` at its latest version, or at `version`.
pub async fn open(dir: &TableDir, version: Option<i64>) -> Result<DeltaTable, DeltaError> {
    if !is_table(dir).await? {
        return Err(DeltaError::NotATable(dir.to_string()));
    }
    let url = table_url(dir)?;
    let opened = match version {
        None => deltalake::open_table(url).await,
        Some(v) => match u64::try_from(v) {
            Ok(v) => deltalake::open_table_with_version(url, v).await,
            Err(_) => return Err(DeltaError::at(dir, format!("no version {v}: versions start at 0"))),
        },
    };
    opened.map_err(|e| DeltaError::at(dir, readable(e)))
}

/// Creates an empty Delta table with `schema`'s columns at `dir`.
pub async fn create(dir: &TableDir, schema: &Schema) -> Result<DeltaTable, DeltaError> {
    if let TableDir::Local(path) = dir {
        std::fs::create_dir_all(path).map_err(|e| DeltaError::at(dir, e))?;
    }
    let columns: StructType = schema.try_into_kernel().map_err(|e| DeltaError::at(dir, e))?;
    // Built, not loaded: there is no log yet to load.
    let table = deltalake::DeltaTableBuilder::from_url(table_url(dir)?)
        .and_then(|b| b.build())
        .map_err(|e| DeltaError::at(dir, readable(e)))?;
    table
        .create()
        .with_columns(columns.fields().cloned())
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
        .map_err(|e| DeltaError::at(dir, readable(e)))
}

/// The last epoch of `query` the table's log holds, if any.
pub async fn committed_epoch(table: &DeltaTable, query: &str) -> Result<Option<i64>, DeltaTableError> {
    table.snapshot()?.transaction_version(table.log_store().as_ref(), app_id(query)).await
}

/// Keys of a weir commit's `commitInfo`: the query and its epoch.
pub const EPOCH_QUERY_KEY: &str = "weirQuery";
pub const EPOCH_KEY: &str = "weirEpoch";

/// Writer features an append of plain Parquet files honours: append-only
/// tables, invariants (weir's tables declare none; checked below), and
/// timestamps without a time zone (weir's TIMESTAMP).
const APPENDABLE_FEATURES: &[&str] = &["appendOnly", "invariants", "timestampNtz"];

/// Refuses a table the sink cannot append to correctly: a partitioned one
/// (weir's sink writes no partition values) or one whose writer protocol
/// asks writers to enforce features weir does not (column mapping,
/// constraints, generated columns, deletion vectors, change data feed...):
/// writer versions 3 to 6 imply those, version 7 lists its features.
pub async fn check_appendable(dir: &TableDir) -> Result<(), DeltaError> {
    let table = open(dir, None).await?;
    let snapshot = table.snapshot().map_err(|e| DeltaError::at(dir, readable(e)))?;
    let metadata = serde_json::to_value(snapshot.metadata()).map_err(|e| DeltaError::at(dir, e))?;
    let partitioned = metadata.get("partitionColumns").and_then(|p| p.as_array()).is_some_and(|p| !p.is_empty());
    if partitioned {
        return Err(DeltaError::Unsupported(format!(
            "a sink into the Delta table at '{}', which is partitioned by {} (weir's Delta sink writes unpartitioned tables)",
            dir, metadata["partitionColumns"]
        )));
    }
    let protocol = serde_json::to_value(snapshot.protocol()).map_err(|e| DeltaError::at(dir, e))?;
    let writer = protocol.get("minWriterVersion").and_then(|v| v.as_i64()).unwrap_or(0);
    let features: Vec<String> = protocol
        .get("writerFeatures")
        .and_then(|f| f.as_array())
        .map(|f| f.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let unsupported: Vec<&String> = features.iter().filter(|f| !APPENDABLE_FEATURES.contains(&f.as_str())).collect();
    if (3..=6).contains(&writer) || writer > 7 || !unsupported.is_empty() {
        let named = if unsupported.is_empty() {
            format!("writer protocol version {writer}")
        } else {
            format!("writer features {}", unsupported.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "))
        };
        return Err(DeltaError::Unsupported(format!(
            "a sink into the Delta table at '{}', which needs {named} (weir's sink makes plain appends: it enforces no constraints, generated columns or column mapping)",
            dir
        )));
    }
    Ok(())
}

/// A table's log as one sink keeps it between epochs: read once, then
/// kept as this sink's own commits leave it, instead of reading the log
/// again for every epoch. Each round trip counts on object storage.
///
/// An append commits on the snapshot the sink last saw: the crate checks
/// the commits made since (an OPTIMIZE, another sink) for conflicts, which
/// appends never have. The query's last logged epoch is read from the log
/// once and then known, since only this sink commits the query's epochs.
/// Any error forgets both, so a commit whose answer was lost is looked for
/// in the log afresh before the epoch is committed again.
#[derive(Default)]
pub struct Log(tokio::sync::Mutex<Option<Held>>);

struct Held {
    table: DeltaTable,
    /// The query's last epoch in the log, once read (`None` inside: none).
    epoch: Option<Option<i64>>,
}

impl Log {
    /// The log, read afresh with `fresh` (or when not held), else as held.
    async fn held<'a>(slot: &'a mut Option<Held>, dir: &TableDir, fresh: bool) -> Result<&'a mut Held, DeltaError> {
        if let Some(held) = slot.as_mut().filter(|_| fresh)
            && let Err(e) = held.table.update_incremental(None).await
        {
            *slot = None;
            return Err(DeltaError::at(dir, readable(e)));
        }
        if slot.is_none() {
            *slot = Some(Held { table: open(dir, None).await?, epoch: None });
        }
        slot.as_mut().ok_or_else(|| DeltaError::at(dir, "the table's log was not read"))
    }

    /// Drops what is held when `result` is an error: the log is read afresh
    /// next time, since a commit may have landed before the error.
    fn forget_on_error<T>(slot: &mut Option<Held>, result: Result<T, DeltaError>) -> Result<T, DeltaError> {
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// The last epoch of `query` in the held log, read once.
    async fn epoch(held: &mut Held, dir: &TableDir, query: &str) -> Result<Option<i64>, DeltaError> {
        if let Some(epoch) = held.epoch {
            return Ok(epoch);
        }
        let epoch = committed_epoch(&held.table, query).await.map_err(|e| DeltaError::at(dir, readable(e)))?;
        held.epoch = Some(epoch);
        Ok(epoch)
    }
}

/// The last epoch of `query` the log at `dir` holds, read from the log
/// (recovery asks this first).
pub async fn logged_epoch(log: &Log, dir: &TableDir, query: &str) -> Result<Option<i64>, DeltaError> {
    let mut slot = log.0.lock().await;
    let result = async {
        let held = Log::held(&mut slot, dir, true).await?;
        held.epoch = None;
        Log::epoch(held, dir, query).await
    }
    .await;
    Log::forget_on_error(&mut slot, result)
}

/// Makes the log forget the epochs of an earlier query of the same name
/// (dropped, then created again: its epochs start at 0 again): a commit
/// whose only action sets the query's transaction version to -1. Without
/// it every new epoch up to the old query's last would count as committed.
pub async fn forget_epochs(log: &Log, dir: &TableDir, query: &str) -> Result<(), DeltaError> {
    let mut slot = log.0.lock().await;
    let held = Log::held(&mut slot, dir, true).await?;
    let properties = CommitProperties::default().with_application_transaction(Transaction::new(app_id(query), -1));
    let snapshot = held.table.snapshot().map_err(|e| DeltaError::at(dir, readable(e)))?;
    let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
    let done = CommitBuilder::from(properties).build(Some(snapshot), held.table.log_store(), operation).await;
    let result = done.map(|done| {
        held.table.state = Some(done.snapshot());
        held.epoch = Some(Some(-1));
    });
    Log::forget_on_error(&mut slot, result.map_err(|e| DeltaError::at(dir, readable(e))))
}

/// The transaction identifier of a query's commits.
pub fn app_id(query: &str) -> String {
    format!("weir:{query}")
}

/// Adds `files` (already in `dir`, under their final names) to the table
/// as epoch `batch_id` of `query`, unless the log already holds that epoch
/// (recovery publishing it again); with `overwrite`, in place of every file
/// the table had. Returns the new table version, or `None` when there was
/// nothing to do.
pub async fn commit_epoch(
    log: &Log,
    dir: &TableDir,
    query: &str,
    batch_id: i64,
    files: &[DataFile],
    overwrite: bool,
) -> Result<Option<i64>, DeltaError> {
    if files.is_empty() && !overwrite {
        // An epoch without rows changes nothing a reader sees.
        return Ok(None);
    }
    // An overwrite removes the files of the snapshot it opened; an OPTIMIZE
    // committed in between would have replaced some (its commit changes no
    // data, so the log's conflict check lets the overwrite through) and
    // the old result would stay beside the new one. One at a time.
    let _no_compaction = if overwrite { Some(MAINTENANCE.lock().await) } else { None };
    let mut slot = log.0.lock().await;
    let result = commit_held(&mut slot, dir, query, batch_id, files, overwrite).await;
    Log::forget_on_error(&mut slot, result)
}

async fn commit_held(
    slot: &mut Option<Held>,
    dir: &TableDir,
    query: &str,
    batch_id: i64,
    files: &[DataFile],
    overwrite: bool,
) -> Result<Option<i64>, DeltaError> {
    // An overwrite removes every file of the snapshot: it must be the latest.
    let held = Log::held(slot, dir, overwrite).await?;
    if Log::epoch(held, dir, query).await? >= Some(batch_id) {
        return Ok(None);
    }
    let mut actions = Vec::with_capacity(files.len());
    if overwrite {
        let snapshot = held.table.snapshot().map_err(|e| DeltaError::at(dir, readable(e)))?;
        actions.extend(snapshot.log_data().iter().map(|f| Action::Remove(f.remove_action(true))));
    }
    for file in files {
        actions.push(Action::Add(Add {
            path: file.path.clone(),
            size: i64::try_from(file.size).unwrap_or(i64::MAX),
            modification_time: file.modified_ms,
            data_change: true,
            ..Add::default()
        }));
    }
    // The commit says which query and epoch it is, for DESCRIBE HISTORY
    // and any reader of the log (the `txn` action is per query, latest only).
    let properties =
        CommitProperties::default().with_application_transaction(Transaction::new(app_id(query), batch_id)).with_metadata([
            (EPOCH_QUERY_KEY.to_string(), serde_json::Value::from(query)),
            (EPOCH_KEY.to_string(), serde_json::Value::from(batch_id)),
        ]);
    let snapshot = held.table.snapshot().map_err(|e| DeltaError::at(dir, readable(e)))?;
    let mode = if overwrite { SaveMode::Overwrite } else { SaveMode::Append };
    let operation = DeltaOperation::Write { mode, partition_by: None, predicate: None };
    let done = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), held.table.log_store(), operation)
        .await
        .map_err(|e| DeltaError::at(dir, readable(e)))?;
    // The state after the commit, as the crate read it back: the next
    // epoch starts from there without asking the store again.
    held.table.state = Some(done.snapshot());
    held.epoch = Some(Some(batch_id));
    Ok(Some(i64::try_from(done.version).unwrap_or(i64::MAX)))
}

/// The crate's error, with the protocol case said plainly: a table written
/// with reader or writer features this build does not know is refused,
/// never written.
fn readable(e: DeltaTableError) -> String {
    match e {
        DeltaTableError::Generic(m) => m,
        other => other.to_string(),
    }
}
