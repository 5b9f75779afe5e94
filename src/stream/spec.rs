//! A continuous query as `StreamManager::prepare` checked it: what the
//! runner needs, owned, including the plan it instantiates. Validation and
//! execution share that plan, so a query that passed CREATE runs exactly
//! what was checked.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use super::aggregate::OutputMode;
use super::aligned::AlignedShape;
use super::definition::{QueryOptions, StreamDef};
use super::join::JoinShape;
use super::planning::ChunkTable;
use crate::sink::Target;

/// Everything a runner needs, owned: it outlives the statement that started it.
#[derive(Clone)]
pub struct QuerySpec {
    pub name: String,
    /// The streams read: one, or the left and right of a stream-stream join.
    pub streams: Vec<Arc<StreamDef>>,
    pub options: QueryOptions,
    /// Where the rows go.
    pub target: Target,
    /// The schema rows are written in: the target table's, or for a view
    /// or a topic the query's (every column nullable).
    pub target_schema: SchemaRef,
    /// Each stream's `<stream>_errors` directory (used when it dead-letters).
    pub dead_letter_dirs: Vec<Option<crate::storage::TableDir>>,
    /// `<query>_late` directory with `late_rows = 'table'`.
    pub late_dir: Option<crate::storage::TableDir>,
    /// The plan, shared by every attempt of the runner.
    pub plan: Arc<QueryPlan>,
}

impl QuerySpec {
    /// The stream read (the left one of a join).
    pub fn stream(&self) -> &Arc<StreamDef> {
        &self.streams[0]
    }
}

/// A stream's chunk while the plan runs over it.
pub(super) type Slot = Arc<Mutex<Vec<RecordBatch>>>;

/// The query planned once by DataFusion over chunk tables (see `planning`),
/// with what its shape asks of the runtime.
pub struct QueryPlan {
    pub(super) ctx: SessionContext,
    /// Runs over each chunk (for a LEFT JOIN of streams, its inner part).
    pub(super) plan: LogicalPlan,
    /// LEFT JOIN of streams: writes the left rows that met no right row.
    pub(super) unmatched_plan: Option<LogicalPlan>,
    /// Per stream read, in `QuerySpec::streams` order: its chunk table and slot.
    pub(super) tables: Vec<(Arc<ChunkTable>, Slot)>,
    pub(super) streams: Vec<Arc<StreamDef>>,
    pub(super) output_mode: OutputMode,
    /// It aggregates: partial state is kept across epochs.
    pub(super) aggregates: bool,
    /// TUMBLE/HOP size in microseconds, when the query reads a window.
    pub(super) window_size: Option<i64>,
    pub(super) join: Option<JoinShape>,
    /// Evaluated window by window (see `aligned`), when it combines windows.
    pub(super) aligned: Option<AlignedShape>,
}
