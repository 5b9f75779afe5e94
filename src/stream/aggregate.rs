//! Incremental aggregation for continuous queries. DataFusion plans the
//! query's aggregate as a Partial/Final pair; weir keeps the *partial
//! state* per group across epochs:
//!
//! * each chunk runs the Partial half (everything below the aggregate too:
//!   filters, TUMBLE/HOP, joins with tables) and the result is merged into
//!   the state with a PartialReduce aggregate: no recomputation over history;
//! * output runs the Final half (and whatever sits above the aggregate:
//!   HAVING, projections) over the state rows being emitted;
//! * the state is snapshotted as Arrow IPC into the epoch's commit, with the
//!   watermark in its metadata, and restored from there after a restart.
//!
//! Append mode emits a window's rows once, when the watermark passes its end,
//! and evicts them; update and complete emit the whole result each epoch.
//!
//! * `session_window`: SESSION windows, joined in the state after each merge.

mod session_window;

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;

use super::operator::{Operator, Output, Snapshot};
use super::ready_query::Instance;
use super::runner::{RunError, fatal};
use crate::error::QueryError;

/// How results of an aggregation reach the table (Spark's output modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    Append,
    Update,
    Complete,
}

impl OutputMode {
    pub fn parse(s: &str) -> Option<OutputMode> {
        match s.to_ascii_lowercase().as_str() {
            "append" => Some(OutputMode::Append),
            "update" => Some(OutputMode::Update),
            "complete" => Some(OutputMode::Complete),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OutputMode::Append => "append",
            OutputMode::Update => "update",
            OutputMode::Complete => "complete",
        }
    }
}

/// Pending partial rows below which merging always waits (one chunk's worth).
const MIN_PENDING_ROWS: usize = 64 * 1024;

type DFResult<T> = datafusion::error::Result<T>;

pub struct Aggregation {
    /// Plans without physical optimizer rules, so the raw Partial/Final
    /// pair survives (the optimizer would fuse it into one Single node).
    state: SessionState,
    plan: LogicalPlan,
    pub mode: OutputMode,
    /// Position of the window-end group column in the partial state, or of
    /// window-start plus the window size (append mode needs one of them).
    window_end: Option<(usize, i64)>,
    /// Merged partial state: one row per live group.
    groups: Vec<RecordBatch>,
    /// Partial states of chunks not merged into `groups` yet. Merging costs
    /// as much as the state is large, so it waits until the pending rows
    /// are as many as the kept ones (or an epoch ends): with millions of
    /// groups, re-hashing them all for every chunk made the work quadratic.
    pending: Vec<RecordBatch>,
    pending_rows: usize,
    partial_schema: SchemaRef,
    /// How many leading columns of the partial state are group keys.
    group_count: usize,
    /// For SESSION: where the key and bounds are, so each merge can join
    /// a key's overlapping sessions.
    session: Option<session_window::SessionColumns>,
    /// Event time up to which input is complete (microseconds).
    pub watermark: Option<i64>,
}

fn as_aggregate(node: &Arc<dyn ExecutionPlan>) -> Option<&AggregateExec> {
    let any: &dyn std::any::Any = node.as_ref();
    any.downcast_ref::<AggregateExec>()
}

/// The first Partial aggregate in a physical plan.
fn find_partial(plan: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    let mut found = None;
    let _ = plan.apply(|node| {
        if let Some(agg) = as_aggregate(node)
            && *agg.mode() == AggregateMode::Partial
        {
            found = Some(node.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn internal(msg: &str) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Internal(msg.to_string())
}

impl Aggregation {
    /// `window_size` is the TUMBLE/HOP size when the query groups by a
    /// window (for `window_start`-only groupings).
    pub async fn new(
        ctx: &SessionContext,
        plan: LogicalPlan,
        mode: OutputMode,
        has_watermark: bool,
        window_size: Option<i64>,
    ) -> Result<Aggregation, QueryError> {
        let state = SessionStateBuilder::new_from_existing(ctx.state()).with_physical_optimizer_rules(vec![]).build();
        let physical = state.create_physical_plan(&plan).await?;
        let partial = find_partial(&physical)
            .ok_or_else(|| QueryError::Unsupported("an aggregate without partial state (one DataFusion cannot split into partial and final steps) in a continuous query".into()))?;
        let partial_schema = partial.schema();
        let group_names: Vec<String> = as_aggregate(&partial)
            .map(|a| a.group_expr().expr().iter().map(|(_, name)| name.clone()).collect())
            .unwrap_or_default();
        let position = |name: &str| group_names.iter().position(|g| g == name || g.ends_with(&format!(".{name}")));
        let is_session = matches!(super::planning::window_of(&plan), Some((super::window::WindowKind::Session, _)));
        let session = match (is_session, position("window_start"), position("window_end")) {
            (false, _, _) => None,
            (true, Some(start), Some(end)) => {
                let keys = (0..group_names.len()).filter(|&i| i != start && i != end).collect();
                Some(session_window::SessionColumns { keys, start, end })
            }
            (true, _, _) => {
                return Err(QueryError::UnsupportedWithHint {
                    what: "SESSION without both window_start and window_end in GROUP BY".into(),
                    hint: "a session's bounds grow as events join it, so both are part of its group: GROUP BY window_start, window_end and the session key (e.g. GROUP BY window_start, window_end, user_id)".into(),
                });
            }
        };
        let window_end = match (position("window_end"), position("window_start"), window_size) {
            (Some(i), _, _) => Some((i, 0)),
            (None, Some(i), Some(size)) if !is_session => Some((i, size)),
            _ => None,
        };
        if mode == OutputMode::Append && (!has_watermark || window_end.is_none()) {
            return Err(QueryError::UnsupportedWithHint {
                what: "output_mode 'append' (the default) for an aggregation without a watermark and a window".into(),
                hint: "append writes a group's row once, when the watermark passes its window's end: declare WATERMARK FOR <col> AS <col> - INTERVAL '...' on the stream and GROUP BY window_start, window_end of TUMBLE/HOP/SESSION, or use WITH (output_mode = 'complete') or 'update'".into(),
            });
        }
        let group_count = group_names.len();
        Ok(Aggregation {
            state,
            plan,
            mode,
            window_end,
            groups: Vec::new(),
            pending: Vec::new(),
            pending_rows: 0,
            partial_schema,
            group_count,
            session,
            watermark: None,
        })
    }

    /// Runs the Partial half over the current chunk and merges it into the state.
    pub async fn absorb(&mut self) -> DFResult<()> {
        let physical = self.state.create_physical_plan(&self.plan).await?;
        let partial = find_partial(&physical).ok_or_else(|| internal("no partial aggregate"))?;
        let fresh = collect(partial.clone(), self.state.task_ctx()).await?;
        if fresh.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        self.pending_rows += fresh.iter().map(|b| b.num_rows()).sum::<usize>();
        self.pending.extend(fresh.into_iter().filter(|b| b.num_rows() > 0));
        let kept: usize = self.groups.iter().map(|b| b.num_rows()).sum();
        if self.pending_rows >= kept.max(MIN_PENDING_ROWS) {
            self.merge_pending(&partial).await?;
        }
        Ok(())
    }

    /// Folds the pending partial states into the kept groups.
    async fn merge(&mut self) -> DFResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let physical = self.state.create_physical_plan(&self.plan).await?;
        let partial = find_partial(&physical).ok_or_else(|| internal("no partial aggregate"))?;
        self.merge_pending(&partial).await
    }

    async fn merge_pending(&mut self, partial: &Arc<dyn ExecutionPlan>) -> DFResult<()> {
        let agg = as_aggregate(partial).ok_or_else(|| internal("partial aggregate"))?;
        let mut input = std::mem::take(&mut self.groups);
        input.append(&mut self.pending);
        self.pending_rows = 0;
        self.groups = self.reduce(agg, input).await?;
        if let Some(columns) = &self.session {
            // The new windows may overlap kept sessions (or join two of
            // them): give joined rows the same bounds, then reduce again
            // so their partial states become one.
            let all = concat_batches(&self.partial_schema, &self.groups)?;
            if let Some(merged) = session_window::merge_bounds(&all, columns)? {
                self.groups = self.reduce(agg, vec![merged]).await?;
            }
        }
        Ok(())
    }

    /// Merges state rows with equal groups (PartialReduce).
    async fn reduce(&self, agg: &AggregateExec, input: Vec<RecordBatch>) -> DFResult<Vec<RecordBatch>> {
        let source = MemorySourceConfig::try_new_exec(&[input], self.partial_schema.clone(), None)?;
        let reduce = AggregateExec::try_new(
            AggregateMode::PartialReduce,
            agg.group_expr().as_final(),
            agg.aggr_expr().to_vec(),
            agg.filter_expr().to_vec(),
            source,
            agg.input_schema(),
        )?;
        let out = collect(Arc::new(reduce), self.state.task_ctx()).await?;
        Ok(out.into_iter().filter(|b| b.num_rows() > 0).collect())
    }

    /// The rows to write at the end of an epoch. Append: windows the
    /// watermark has passed (then forgotten); update and complete: all.
    pub async fn emit(&mut self) -> DFResult<Vec<RecordBatch>> {
        self.merge().await?;
        let rows = match self.mode {
            OutputMode::Append => {
                let (Some((column, size)), Some(watermark)) = (self.window_end, self.watermark) else {
                    return Ok(Vec::new());
                };
                let mut closed = Vec::new();
                let mut open = Vec::new();
                for batch in std::mem::take(&mut self.groups) {
                    let ends = cast(batch.column(column), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
                    let ends = ends
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .ok_or_else(|| internal("window end column"))?;
                    let is_closed: BooleanArray =
                        ends.iter().map(|e| Some(e.is_some_and(|e| e + size <= watermark))).collect();
                    let is_open: BooleanArray = is_closed.iter().map(|c| c.map(|c| !c)).collect();
                    closed.push(filter_record_batch(&batch, &is_closed)?);
                    open.push(filter_record_batch(&batch, &is_open)?);
                }
                self.groups = open.into_iter().filter(|b| b.num_rows() > 0).collect();
                closed.retain(|b| b.num_rows() > 0);
                closed
            }
            OutputMode::Update | OutputMode::Complete => self.groups.clone(),
        };
        if rows.is_empty() && self.mode == OutputMode::Append {
            return Ok(Vec::new());
        }
        self.finalize(rows).await
    }

    /// The Final half (and the plan above it) over the given state rows.
    async fn finalize(&self, rows: Vec<RecordBatch>) -> DFResult<Vec<RecordBatch>> {
        let physical = self.state.create_physical_plan(&self.plan).await?;
        let schema = self.partial_schema.clone();
        let source = MemorySourceConfig::try_new_exec(&[rows], schema, None)?;
        let replaced = physical.transform_up(|node| {
            let is_partial = as_aggregate(&node).is_some_and(|a| *a.mode() == AggregateMode::Partial);
            if is_partial {
                Ok(Transformed::yes(source.clone() as Arc<dyn ExecutionPlan>))
            } else {
                Ok(Transformed::no(node))
            }
        })?;
        let out = collect(replaced.data, self.state.task_ctx()).await?;
        Ok(out.into_iter().filter(|b| b.num_rows() > 0).collect())
    }

    /// The names of the grouping columns, as the partial state has them.
    pub fn group_names(&self) -> Vec<String> {
        self.partial_schema.fields().iter().take(self.group_count).map(|f| f.name().clone()).collect()
    }

    /// Groups held, and their approximate memory.
    pub fn size(&self) -> (usize, usize) {
        let all = || self.groups.iter().chain(&self.pending);
        (all().map(|b| b.num_rows()).sum(), all().map(|b| b.get_array_memory_size()).sum())
    }

    /// The state as bytes for the epoch's commit.
    pub fn snapshot(&self) -> DFResult<Vec<u8>> {
        // Pending rows are partial states too; restore merges them.
        let all: Vec<RecordBatch> = self.groups.iter().chain(&self.pending).cloned().collect();
        super::snapshot::write(&self.partial_schema, &all, self.watermark)
    }

    /// Restores a snapshot taken by [`Aggregation::snapshot`].
    pub fn restore(&mut self, bytes: &[u8]) -> DFResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (groups, watermark) = super::snapshot::read(&self.partial_schema, bytes)?;
        self.watermark = watermark;
        // Merged before the next emission (a snapshot may hold pending rows).
        self.pending_rows = groups.iter().map(|b| b.num_rows()).sum();
        self.pending = groups;
        self.groups = Vec::new();
        Ok(())
    }
}

impl Aggregation {
    /// The epoch's end: the watermark moves to the query's (never back) and
    /// what [`Aggregation::emit`] gives is written. Returns the watermark.
    pub(super) async fn end_epoch(&mut self, watermark: Option<i64>, out: &mut Output) -> Result<Option<i64>, RunError> {
        if let Some(w) = watermark {
            self.watermark = Some(self.watermark.map_or(w, |old| old.max(w)));
        }
        for batch in &self.emit().await.map_err(fatal)? {
            out.write(batch).await?;
        }
        Ok(self.watermark)
    }
}

/// A query over one stream that aggregates: each chunk's on-time rows are
/// merged into the kept groups; they are written when the epoch ends.
pub(super) struct AggregateOperator(pub(super) Aggregation);

#[async_trait::async_trait]
impl Operator for AggregateOperator {
    async fn process(
        &mut self,
        query: &Instance,
        input: usize,
        batches: Vec<RecordBatch>,
        out: &mut Output,
    ) -> Result<(), RunError> {
        let watermark = query.inputs[input].watermark().await;
        query.admit(input, watermark, batches, out).await?;
        self.0.absorb().await.map_err(fatal)
    }

    async fn end_epoch(&mut self, query: &Instance, out: &mut Output) -> Result<Option<i64>, RunError> {
        self.0.end_epoch(query.watermark().await, out).await
    }

    fn snapshot(&self, _watermarks: &[Option<i64>]) -> DFResult<Snapshot> {
        // The watermark goes in with the groups (see `snapshot`).
        Ok(Snapshot { bytes: self.0.snapshot()?, size: Some(self.0.size()) })
    }

    fn restore(&mut self, bytes: &[u8]) -> DFResult<Vec<(usize, Option<i64>)>> {
        self.0.restore(bytes)?;
        Ok(vec![(0, self.0.watermark)])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::common::assert_batches_sorted_eq;
    use datafusion::prelude::SessionConfig;

    use super::*;
    use crate::stream::planning::ChunkTable;
    use crate::stream::window::{WindowFunction, WindowKind};

    const MINUTE: i64 = 60_000_000;

    /// Sessions per user with a 30-minute gap, as a runner would drive
    /// them: chunks absorbed, then the watermark advanced and rows emitted.
    #[tokio::test]
    async fn sessions_join_across_chunks_and_close_at_the_watermark() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let (chunk, slot) = ChunkTable::new(schema.clone());
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
        let streams = HashMap::from([("clicks".to_string(), chunk)]);
        ctx.register_udtf("session", Arc::new(WindowFunction { kind: WindowKind::Session, streams }));
        let sql = "SELECT window_start, window_end, user_id, count(*) AS clicks \
                   FROM session(clicks, ts, INTERVAL '30 minutes') GROUP BY window_start, window_end, user_id";
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        let plan = ctx.state().optimize(&plan).unwrap();
        let new = || Aggregation::new(&ctx, plan.clone(), OutputMode::Append, true, None);
        let mut agg = new().await.unwrap();

        let chunk = |rows: &[(&str, i64)]| {
            let users = StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>());
            let times = TimestampMicrosecondArray::from(rows.iter().map(|r| r.1 * MINUTE).collect::<Vec<_>>());
            RecordBatch::try_new(schema.clone(), vec![Arc::new(users), Arc::new(times)]).unwrap()
        };
        let fill = |rows: &[(&str, i64)]| *slot.lock().unwrap() = vec![chunk(rows)];

        // Out of order: a's second session arrives before its first.
        fill(&[("a", 50), ("a", 0), ("b", 10)]);
        agg.absorb().await.unwrap();
        agg.watermark = Some(0);
        assert!(agg.emit().await.unwrap().is_empty());
        assert_eq!(agg.size().0, 3);

        // a at 25 bridges a's two sessions; b at 45 is a new session (its
        // first ended at 40). The watermark reaches b's first end: it closes.
        fill(&[("a", 25), ("b", 45)]);
        agg.absorb().await.unwrap();
        agg.watermark = Some(40 * MINUTE);
        let out = agg.emit().await.unwrap();
        assert_batches_sorted_eq!(
            [
                "+---------------------+---------------------+---------+--------+",
                "| window_start        | window_end          | user_id | clicks |",
                "+---------------------+---------------------+---------+--------+",
                "| 1970-01-01T00:10:00 | 1970-01-01T00:40:00 | b       | 1      |",
                "+---------------------+---------------------+---------+--------+",
            ],
            &out
        );

        // Open sessions survive a snapshot and restore.
        let bytes = agg.snapshot().unwrap();
        let mut agg = new().await.unwrap();
        agg.restore(&bytes).unwrap();
        assert_eq!((agg.size().0, agg.watermark), (2, Some(40 * MINUTE)));

        fill(&[("b", 60)]);
        agg.absorb().await.unwrap();
        agg.watermark = Some(100 * MINUTE);
        let out = agg.emit().await.unwrap();
        assert_batches_sorted_eq!(
            [
                "+---------------------+---------------------+---------+--------+",
                "| window_start        | window_end          | user_id | clicks |",
                "+---------------------+---------------------+---------+--------+",
                "| 1970-01-01T00:00:00 | 1970-01-01T01:20:00 | a       | 3      |",
                "| 1970-01-01T00:45:00 | 1970-01-01T01:30:00 | b       | 2      |",
                "+---------------------+---------------------+---------+--------+",
            ],
            &out
        );
        assert_eq!(agg.size().0, 0);
    }

    #[tokio::test]
    async fn a_session_needs_both_bounds_in_group_by() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let (chunk, _slot) = ChunkTable::new(schema);
        let ctx = SessionContext::new();
        let streams = HashMap::from([("clicks".to_string(), chunk)]);
        ctx.register_udtf("session", Arc::new(WindowFunction { kind: WindowKind::Session, streams }));
        let sql = "SELECT window_start, user_id, count(*) FROM session(clicks, ts, INTERVAL '5 minutes') GROUP BY window_start, user_id";
        let plan = ctx.state().create_logical_plan(sql).await.unwrap();
        let err = Aggregation::new(&ctx, plan, OutputMode::Update, true, None).await.err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("window_end")));
    }
}
