//! A continuous query instantiated for one attempt of its runner: the plan
//! `prepare` made, each input's slot and watermark, and the [`Operator`]
//! holding the state kept across epochs, restored from the last commit. The
//! epoch loop in `runner` drives it; `prepare` instantiates it once too, so
//! what would fail to start fails the CREATE.

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use futures::StreamExt;

use super::aggregate::{AggregateOperator, Aggregation, OutputMode};
use super::aligned::state::{AlignedOperator, AlignedState};
use super::join::state::{JoinOperator, JoinState};
use super::operator::{Operator, Output};
use super::planning::ChunkTable;
use super::rejects::split_late;
use super::runner::{RunError, fatal};
use super::spec::{QueryPlan, Slot};
use super::stateless::Stateless;
use super::watermark::Tracker;
use crate::error::QueryError;

/// One stream the query reads, as the plan sees it.
pub(super) struct Input {
    /// The stream's chunk table, and its contents during an execution.
    pub(super) table: Arc<ChunkTable>,
    pub(super) slot: Slot,
    /// The event-time column (WATERMARK FOR), for dropping late rows.
    pub(super) event_time: Option<usize>,
    /// Stateful queries only: the stream's watermark.
    pub(super) tracker: Option<tokio::sync::Mutex<Tracker>>,
}

impl Input {
    pub(super) async fn watermark(&self) -> Option<i64> {
        match &self.tracker {
            Some(t) => t.lock().await.current,
            None => None,
        }
    }
}

pub(super) struct Instance {
    pub(super) plan: Arc<QueryPlan>,
    /// In the order of `QuerySpec::streams`.
    pub(super) inputs: Vec<Input>,
    pub(super) operator: tokio::sync::Mutex<Box<dyn Operator>>,
    /// The operator keeps input rows (joins, window-aligned queries), so an
    /// epoch's size bounds its memory.
    pub(super) keeps_rows: bool,
    /// Output columns that are group keys (update and complete), which key
    /// the records of a Kafka target.
    pub(super) key_columns: Vec<usize>,
}

impl Instance {
    pub(super) async fn new(plan: &Arc<QueryPlan>) -> Result<Instance, QueryError> {
        let stateful = plan.aggregates || plan.join.is_some() || plan.aligned.is_some();
        let mut inputs = Vec::new();
        for (stream, (table, slot)) in plan.streams.iter().zip(&plan.tables) {
            let tracker = match stateful {
                true => Tracker::new(&plan.ctx, stream).await?.map(tokio::sync::Mutex::new),
                false => None,
            };
            let event_time = match (&stream.watermark, stateful) {
                (Some((column, _)), true) => stream.spec.schema.index_of(column).ok(),
                _ => None,
            };
            inputs.push(Input { table: table.clone(), slot: slot.clone(), event_time, tracker });
        }
        let aggregation = match plan.aggregates {
            true => {
                let has_watermark = inputs.iter().all(|i| i.tracker.is_some());
                Some(
                    Aggregation::new(&plan.ctx, plan.plan.clone(), plan.output_mode, has_watermark, plan.window_size)
                        .await?,
                )
            }
            false => None,
        };
        let key_columns = match (&aggregation, plan.output_mode) {
            (Some(agg), OutputMode::Update | OutputMode::Complete) => {
                let groups = agg.group_names();
                let output = plan.plan.schema();
                output
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| groups.iter().any(|g| g == f.name() || g.ends_with(&format!(".{}", f.name()))))
                    .map(|(i, _)| i)
                    .collect()
            }
            _ => Vec::new(),
        };
        let operator: Box<dyn Operator> = match (&plan.aligned, &plan.join, aggregation) {
            (Some(shape), _, _) => Box::new(AlignedOperator(AlignedState::new(shape.clone(), &plan.streams)?)),
            (None, Some(shape), aggregation) => {
                let state = JoinState::new(shape.clone(), [plan.streams[0].as_ref(), plan.streams[1].as_ref()])?;
                Box::new(JoinOperator { state, aggregation })
            }
            (None, None, Some(aggregation)) => Box::new(AggregateOperator(aggregation)),
            (None, None, None) => Box::new(Stateless),
        };
        let keeps_rows = plan.join.is_some() || plan.aligned.is_some();
        Ok(Instance { plan: plan.clone(), inputs, operator: tokio::sync::Mutex::new(operator), keeps_rows, key_columns })
    }

    pub(super) fn fill(&self, input: usize, batches: Vec<RecordBatch>) -> Result<(), RunError> {
        let mut slot = self.inputs[input].slot.lock().map_err(|_| RunError::Fatal("chunk slot poisoned".into()))?;
        *slot = batches;
        Ok(())
    }

    pub(super) fn clear(&self) {
        for input in &self.inputs {
            if let Ok(mut slot) = input.slot.lock() {
                slot.clear();
            }
            input.table.set_closing(None);
        }
    }

    /// Rows of a chunk of `input` older than `watermark` are split off
    /// (counted, and kept with `late_rows = 'table'`); the rest are put in
    /// the input's slot, where its watermark sees them, and returned.
    pub(super) async fn admit(
        &self,
        input: usize,
        watermark: Option<i64>,
        batches: Vec<RecordBatch>,
        out: &mut Output,
    ) -> Result<Vec<RecordBatch>, RunError> {
        let this = &self.inputs[input];
        let (batches, late) = split_late(this.event_time, watermark, batches, &mut out.late_rows)?;
        out.late(&late).await?;
        self.fill(input, batches.clone())?;
        if let Some(tracker) = &this.tracker {
            tracker.lock().await.observe(&self.plan.ctx).await.map_err(fatal)?;
        }
        Ok(batches)
    }

    /// Runs `plan` over what the slots hold and writes its rows.
    pub(super) async fn execute(&self, plan: &LogicalPlan, out: &mut Output) -> Result<(), RunError> {
        let physical = self.plan.ctx.state().create_physical_plan(plan).await.map_err(fatal)?;
        let mut rows = execute_stream(physical, self.plan.ctx.task_ctx()).map_err(fatal)?;
        while let Some(batch) = rows.next().await {
            out.write(&batch.map_err(fatal)?).await?;
        }
        Ok(())
    }

    pub(super) async fn watermark_would_move(&self) -> bool {
        let now = Instant::now();
        for input in &self.inputs {
            if let Some(tracker) = &input.tracker
                && tracker.lock().await.would_advance(now)
            {
                return true;
            }
        }
        false
    }

    /// Watermarks move now, for the next epoch's rows (see watermark.rs).
    pub(super) async fn advance_watermarks(&self) {
        let now = Instant::now();
        for input in &self.inputs {
            if let Some(tracker) = &input.tracker {
                tracker.lock().await.advance(now);
            }
        }
    }

    /// The watermark the query's state follows: the stream's, or for two
    /// streams the lower of the two.
    pub(super) async fn watermark(&self) -> Option<i64> {
        let mut lowest = None;
        for input in &self.inputs {
            let w = input.watermark().await?;
            lowest = Some(lowest.map_or(w, |l: i64| l.min(w)));
        }
        lowest
    }

    /// Each input's watermark.
    pub(super) async fn watermarks(&self) -> Vec<Option<i64>> {
        let mut watermarks = Vec::new();
        for input in &self.inputs {
            watermarks.push(input.watermark().await);
        }
        watermarks
    }

    /// Restores the operator's state from the last commit, and the
    /// watermarks it recorded with it.
    pub(super) async fn restore_state(&self, bytes: &[u8]) -> datafusion::error::Result<()> {
        let watermarks = self.operator.lock().await.restore(bytes)?;
        for (input, watermark) in watermarks {
            if let Some(tracker) = self.inputs.get(input).and_then(|i| i.tracker.as_ref()) {
                tracker.lock().await.current = watermark;
            }
        }
        Ok(())
    }

    /// Each input's per-partition event times, for the epoch's commit.
    pub(super) async fn clocks(&self) -> serde_json::Value {
        let mut clocks = Vec::new();
        for input in &self.inputs {
            clocks.push(match &input.tracker {
                Some(t) => t.lock().await.clocks(),
                None => serde_json::Value::Null,
            });
        }
        clocks.into()
    }

    /// Restores [`Instance::clocks`] from the last commit.
    pub(super) async fn restore_clocks(&self, saved: Option<&serde_json::Value>) {
        let saved = saved.and_then(|c| c.as_array()).into_iter().flatten();
        for (input, clocks) in self.inputs.iter().zip(saved) {
            if let Some(tracker) = &input.tracker {
                tracker.lock().await.restore_clocks(clocks);
            }
        }
    }
}
