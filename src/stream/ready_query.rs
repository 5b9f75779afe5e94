//! A continuous query ready to run: its DataFusion plan, the chunk slot and
//! watermark of each stream it reads, and the state it keeps across epochs
//! (aggregation, join buffers, a window-aligned query's rows). Built once per attempt by [`plan`] and
//! restored from the last commit; the epoch loop in `runner` drives it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;

use super::aggregate::{Aggregation, OutputMode};
use super::aligned::AlignedState;
use super::join::{JoinKind, JoinState, left_outer_plans};
use super::planning::{ChunkTable, plan_query, query_context};
use super::runner::{QuerySpec, RunError};
use super::watermark::Tracker;
use crate::error::QueryError;

/// One stream the query reads, as the plan sees it.
pub(super) struct Input {
    /// The stream's chunk table, and its contents during an execution.
    pub(super) table: Arc<ChunkTable>,
    pub(super) slot: Arc<Mutex<Vec<RecordBatch>>>,
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

pub(super) struct Planned {
    pub(super) ctx: SessionContext,
    pub(super) plan: LogicalPlan,
    /// In the order of `QuerySpec::streams`.
    pub(super) inputs: Vec<Input>,
    /// Kept across chunks (and epochs) when the query aggregates.
    pub(super) aggregation: Option<tokio::sync::Mutex<Aggregation>>,
    /// Both sides' rows for a stream-stream join.
    pub(super) join: Option<tokio::sync::Mutex<JoinState>>,
    /// LEFT JOIN of streams: the plan that writes unmatched left rows.
    pub(super) unmatched_plan: Option<LogicalPlan>,
    /// Window-aligned queries: the rows kept per stream.
    pub(super) aligned: Option<tokio::sync::Mutex<AlignedState>>,
    pub(super) kafka: Option<crate::sink::kafka::KafkaOut>,
}

impl Planned {
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

    /// The watermark the query's state follows: the stream's, or for a
    /// join the lower of the two.
    pub(super) async fn watermark(&self) -> Option<i64> {
        let mut lowest = None;
        for input in &self.inputs {
            let w = input.watermark().await?;
            lowest = Some(lowest.map_or(w, |l: i64| l.min(w)));
        }
        lowest
    }

    /// Restores the state the last commit recorded: the aggregation's, and a
    /// join's buffers, with each stream's watermark.
    pub(super) async fn restore_state(&self, bytes: &[u8]) -> datafusion::error::Result<()> {
        if let Some(aligned) = &self.aligned {
            let sections = super::snapshot::unpack(bytes).unwrap_or_default();
            let watermarks = aligned.lock().await.restore(&sections)?;
            for (input, watermark) in self.inputs.iter().zip(watermarks) {
                if let Some(tracker) = &input.tracker {
                    tracker.lock().await.current = watermark;
                }
            }
            return Ok(());
        }
        let Some(sections) = super::snapshot::unpack(bytes) else {
            // One aggregation snapshot (a single-stream query).
            if let Some(agg) = &self.aggregation {
                let mut agg = agg.lock().await;
                agg.restore(bytes)?;
                if let Some(tracker) = self.inputs.first().and_then(|i| i.tracker.as_ref()) {
                    tracker.lock().await.current = agg.watermark;
                }
            }
            return Ok(());
        };
        if let (Some(agg), Some(section)) = (&self.aggregation, sections.first()) {
            agg.lock().await.restore(section)?;
        }
        if let Some(join) = &self.join {
            let mut join = join.lock().await;
            for side in 0..2 {
                let watermark = join.restore(side, sections.get(side + 1).copied().unwrap_or_default())?;
                if let Some(tracker) = self.inputs.get(side).and_then(|i| i.tracker.as_ref()) {
                    tracker.lock().await.current = watermark;
                }
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

    /// Restores [`Planned::clocks`] from the last commit.
    pub(super) async fn restore_clocks(&self, saved: Option<&serde_json::Value>) {
        let saved = saved.and_then(|c| c.as_array()).into_iter().flatten();
        for (input, clocks) in self.inputs.iter().zip(saved) {
            if let Some(tracker) = &input.tracker {
                tracker.lock().await.restore_clocks(clocks);
            }
        }
    }
}

pub(super) async fn plan(spec: &QuerySpec, shared: &SessionContext) -> Result<Planned, RunError> {
    let mut streams: HashMap<String, Arc<ChunkTable>> = HashMap::new();
    let mut slots = Vec::new();
    for stream in &spec.streams {
        let (table, slot) = ChunkTable::new(stream.spec.schema.clone());
        streams.insert(stream.name.clone(), table.clone());
        slots.push((table, slot));
    }
    let fatal = |e: QueryError| RunError::Fatal(e.message());
    let ctx = query_context(shared, streams).map_err(fatal)?;
    let plan = plan_query(&ctx, &spec.query).await.map_err(fatal)?;
    let plan = ctx.state().optimize(&plan).map_err(|e| fatal(e.into()))?;
    let stateful = spec.aggregates || spec.join.is_some() || spec.aligned.is_some();
    let mut inputs = Vec::new();
    for (stream, (table, slot)) in spec.streams.iter().zip(slots) {
        let tracker = match stateful {
            true => Tracker::new(&ctx, stream).await.map_err(fatal)?.map(tokio::sync::Mutex::new),
            false => None,
        };
        let event_time = match (&stream.watermark, stateful) {
            (Some((column, _)), true) => stream.spec.schema.index_of(column).ok(),
            _ => None,
        };
        inputs.push(Input { table, slot, event_time, tracker });
    }
    let aggregation = if spec.aggregates {
        let has_watermark = inputs.iter().all(|i| i.tracker.is_some());
        let agg = Aggregation::new(&ctx, plan.clone(), spec.output_mode, has_watermark, spec.window_size)
            .await
            .map_err(fatal)?;
        Some(tokio::sync::Mutex::new(agg))
    } else {
        None
    };
    let (join, plan, unmatched_plan) = match &spec.join {
        Some(shape) => {
            let state = JoinState::new(shape.clone(), [spec.streams[0].as_ref(), spec.streams[1].as_ref()]).map_err(fatal)?;
            match shape.kind {
                JoinKind::LeftOuter => {
                    let (per_chunk, unmatched) = left_outer_plans(&plan, &shape.streams).map_err(|e| fatal(e.into()))?;
                    (Some(tokio::sync::Mutex::new(state)), per_chunk, Some(unmatched))
                }
                JoinKind::Inner => (Some(tokio::sync::Mutex::new(state)), plan, None),
            }
        }
        None => (None, plan, None),
    };
    let kafka = match &spec.kafka {
        Some(options) => {
            // Update/complete aggregations key records by their group.
            let key_columns = match (&aggregation, spec.output_mode) {
                (Some(agg), OutputMode::Update | OutputMode::Complete) => {
                    let groups = agg.lock().await.group_names();
                    let output = plan.schema();
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
            Some(crate::sink::kafka::KafkaOut::new(options, key_columns).map_err(RunError::Fatal)?)
        }
        None => None,
    };
    let aligned = match &spec.aligned {
        Some(shape) => Some(tokio::sync::Mutex::new(AlignedState::new(shape.clone(), &spec.streams).map_err(fatal)?)),
        None => None,
    };
    Ok(Planned { ctx, plan, inputs, aggregation, join, unmatched_plan, aligned, kafka })
}
