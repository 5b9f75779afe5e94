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

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;

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

const WATERMARK_KEY: &str = "weir.watermark";

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
    partial_schema: SchemaRef,
    /// How many leading columns of the partial state are group keys.
    group_count: usize,
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
        if let Some(agg) = as_aggregate(node) {
            if *agg.mode() == AggregateMode::Partial {
                found = Some(node.clone());
                return Ok(TreeNodeRecursion::Stop);
            }
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
            .ok_or_else(|| QueryError::Unsupported("this aggregation in a continuous query".into()))?;
        let partial_schema = partial.schema();
        let group_names: Vec<String> = as_aggregate(&partial)
            .map(|a| a.group_expr().expr().iter().map(|(_, name)| name.clone()).collect())
            .unwrap_or_default();
        let position = |name: &str| group_names.iter().position(|g| g == name || g.ends_with(&format!(".{name}")));
        let window_end = match (position("window_end"), position("window_start"), window_size) {
            (Some(i), _, _) => Some((i, 0)),
            (None, Some(i), Some(size)) => Some((i, size)),
            _ => None,
        };
        if mode == OutputMode::Append {
            if !has_watermark || window_end.is_none() {
                return Err(QueryError::UnsupportedWithHint {
                    what: "output_mode 'append' (the default) for an aggregation without a watermark and a window".into(),
                    hint: "append writes a group's row once, when the watermark passes its window's end: declare WATERMARK FOR <col> AS <col> - INTERVAL '...' on the stream and GROUP BY window_start, window_end of TUMBLE/HOP, or use WITH (output_mode = 'complete') or 'update'".into(),
                });
            }
        }
        let group_count = group_names.len();
        Ok(Aggregation { state, plan, mode, window_end, groups: Vec::new(), partial_schema, group_count, watermark: None })
    }

    /// Runs the Partial half over the current chunk and merges it into the state.
    pub async fn absorb(&mut self) -> DFResult<()> {
        let physical = self.state.create_physical_plan(&self.plan).await?;
        let partial = find_partial(&physical).ok_or_else(|| internal("no partial aggregate"))?;
        let fresh = collect(partial.clone(), self.state.task_ctx()).await?;
        if fresh.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let agg = as_aggregate(&partial).ok_or_else(|| internal("partial aggregate"))?;
        let mut input = std::mem::take(&mut self.groups);
        input.extend(fresh);
        let source = MemorySourceConfig::try_new_exec(&[input], self.partial_schema.clone(), None)?;
        let reduce = AggregateExec::try_new(
            AggregateMode::PartialReduce,
            agg.group_expr().as_final(),
            agg.aggr_expr().to_vec(),
            agg.filter_expr().to_vec(),
            source,
            agg.input_schema(),
        )?;
        self.groups = collect(Arc::new(reduce), self.state.task_ctx()).await?;
        Ok(())
    }

    /// The rows to write at the end of an epoch. Append: windows the
    /// watermark has passed (then forgotten); update and complete: all.
    pub async fn emit(&mut self) -> DFResult<Vec<RecordBatch>> {
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
                    let is_closed: BooleanArray = ends.iter().map(|e| Some(e.is_some_and(|e| e + size <= watermark))).collect();
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
        let rows = self.groups.iter().map(|b| b.num_rows()).sum();
        let bytes = self.groups.iter().map(|b| b.get_array_memory_size()).sum();
        (rows, bytes)
    }

    /// The state as bytes for the epoch's commit.
    pub fn snapshot(&self) -> DFResult<Vec<u8>> {
        let mut metadata = HashMap::new();
        if let Some(w) = self.watermark {
            metadata.insert(WATERMARK_KEY.to_string(), w.to_string());
        }
        let schema = Arc::new(self.partial_schema.as_ref().clone().with_metadata(metadata));
        let mut bytes = Vec::new();
        {
            let mut writer = StreamWriter::try_new(&mut bytes, &schema)?;
            if !self.groups.is_empty() {
                let merged = concat_batches(&self.partial_schema, &self.groups)?;
                writer.write(&RecordBatch::try_new(schema.clone(), merged.columns().to_vec())?)?;
            }
            writer.finish()?;
        }
        Ok(bytes)
    }

    /// Restores a snapshot taken by [`Aggregation::snapshot`].
    pub fn restore(&mut self, bytes: &[u8]) -> DFResult<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        self.watermark = reader.schema().metadata().get(WATERMARK_KEY).and_then(|w| w.parse().ok());
        let mut groups = Vec::new();
        for batch in reader {
            let batch = batch?;
            groups.push(RecordBatch::try_new(self.partial_schema.clone(), batch.columns().to_vec())?);
        }
        self.groups = groups;
        Ok(())
    }
}
