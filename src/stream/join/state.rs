//! A stream-stream join at run time: both sides' buffered rows
//! ([`JoinState`]) and the operator that meets each chunk with the other
//! side's buffer and evicts rows as the watermarks pass them.

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;

use super::{JoinKind, JoinShape, micros_of};
use crate::error::QueryError;
use crate::stream::aggregate::Aggregation;
use crate::stream::definition::StreamDef;
use crate::stream::operator::{Operator, Output, Snapshot};
use crate::stream::ready_query::Instance;
use crate::stream::runner::{RunError, fatal};

type DFResult<T> = datafusion::error::Result<T>;

/// Both sides' buffered rows.
pub struct JoinState {
    pub shape: JoinShape,
    /// Each side's event-time column in its stream's schema.
    time_columns: [usize; 2],
    schemas: [SchemaRef; 2],
    buffers: [Vec<RecordBatch>; 2],
}

impl JoinState {
    pub fn new(shape: JoinShape, streams: [&StreamDef; 2]) -> Result<JoinState, QueryError> {
        let column = |s: &StreamDef| -> Result<usize, QueryError> {
            let name = s.watermark.as_ref().map(|(c, _)| c.as_str()).unwrap_or_default();
            s.spec.schema.index_of(name).map_err(|_| QueryError::Unsupported(format!("stream {} has no event time", s.name)))
        };
        Ok(JoinState {
            time_columns: [column(streams[0])?, column(streams[1])?],
            schemas: [streams[0].spec.schema.clone(), streams[1].spec.schema.clone()],
            buffers: [Vec::new(), Vec::new()],
            shape,
        })
    }

    /// Everything buffered for `side` (0 left, 1 right); cheap clones.
    pub fn buffer(&self, side: usize) -> Vec<RecordBatch> {
        self.buffers[side].clone()
    }

    pub fn add(&mut self, side: usize, batches: Vec<RecordBatch>) {
        self.buffers[side].extend(batches.into_iter().filter(|b| b.num_rows() > 0));
    }

    /// Rows and bytes held.
    pub fn size(&self) -> (usize, usize) {
        let all = || self.buffers.iter().flatten();
        (all().map(|b| b.num_rows()).sum(), all().map(|b| b.get_array_memory_size()).sum())
    }

    /// Splits `side`'s buffer: rows `keep` says true for stay, the rest
    /// are returned. Rows without an event time can never meet the bound
    /// and are always removed.
    fn split(&mut self, side: usize, keep: impl Fn(i64) -> bool) -> DFResult<Vec<RecordBatch>> {
        let mut kept = Vec::new();
        let mut gone = Vec::new();
        for batch in std::mem::take(&mut self.buffers[side]) {
            let times = micros_of(&batch, self.time_columns[side])?;
            let stays: BooleanArray = times.iter().map(|t| Some(t.is_some_and(&keep))).collect();
            let leaves: BooleanArray = stays.iter().map(|s| s.map(|s| !s)).collect();
            let k = filter_record_batch(&batch, &stays)?;
            let g = filter_record_batch(&batch, &leaves)?;
            if k.num_rows() > 0 {
                kept.push(k);
            }
            if g.num_rows() > 0 {
                gone.push(g);
            }
        }
        self.buffers[side] = kept;
        Ok(gone)
    }

    /// Removes left rows no future right row can meet (the right stream's
    /// watermark has passed `ts + upper`) and returns them: a LEFT JOIN
    /// writes those that never matched.
    pub fn evict_left(&mut self, right_watermark: Option<i64>) -> DFResult<Vec<RecordBatch>> {
        let Some(watermark) = right_watermark else { return Ok(Vec::new()) };
        let upper = self.shape.upper;
        self.split(0, |t| t.saturating_add(upper) >= watermark)
    }

    /// Removes right rows no future left row can meet; for a LEFT JOIN
    /// also only those no buffered left row can meet.
    pub fn evict_right(&mut self, left_watermark: Option<i64>) -> DFResult<()> {
        let Some(mut horizon) = left_watermark else { return Ok(()) };
        if self.shape.kind == JoinKind::LeftOuter {
            for batch in &self.buffers[0] {
                let times = micros_of(batch, self.time_columns[0])?;
                if let Some(min) = datafusion::arrow::compute::min(&times) {
                    horizon = horizon.min(min);
                }
            }
        }
        let lower = self.shape.lower;
        self.split(1, |t| t.saturating_sub(lower) >= horizon)?;
        Ok(())
    }

    /// Both buffers as Arrow IPC, each with its side's watermark.
    pub fn snapshot(&self, watermarks: [Option<i64>; 2]) -> DFResult<[Vec<u8>; 2]> {
        let one = |side: usize| crate::stream::snapshot::write(&self.schemas[side], &self.buffers[side], watermarks[side]);
        Ok([one(0)?, one(1)?])
    }

    /// Restores one side from [`JoinState::snapshot`]; returns its watermark.
    pub fn restore(&mut self, side: usize, bytes: &[u8]) -> DFResult<Option<i64>> {
        let (rows, watermark) = crate::stream::snapshot::read(&self.schemas[side], bytes)?;
        self.buffers[side] = rows;
        Ok(watermark)
    }
}

/// A join of two streams, optionally aggregated (the aggregation then
/// takes the join's rows instead of the sink).
pub(in crate::stream) struct JoinOperator {
    pub(in crate::stream) state: JoinState,
    pub(in crate::stream) aggregation: Option<Aggregation>,
}

#[async_trait::async_trait]
impl Operator for JoinOperator {
    /// The new rows run against everything buffered for the other side,
    /// then are buffered: each pair meets once, when its later row comes.
    async fn process(
        &mut self,
        query: &Instance,
        input: usize,
        batches: Vec<RecordBatch>,
        out: &mut Output,
    ) -> Result<(), RunError> {
        let watermark = query.inputs[input].watermark().await;
        let batches = query.admit(input, watermark, batches, out).await?;
        query.fill(1 - input, self.state.buffer(1 - input))?;
        match &mut self.aggregation {
            Some(agg) => agg.absorb().await.map_err(fatal)?,
            None => query.execute(&query.plan.plan, out).await?,
        }
        self.state.add(input, batches);
        Ok(())
    }

    async fn end_epoch(&mut self, query: &Instance, out: &mut Output) -> Result<Option<i64>, RunError> {
        let watermarks = [query.inputs[0].watermark().await, query.inputs[1].watermark().await];
        let gone = self.state.evict_left(watermarks[1]).map_err(fatal)?;
        if let (Some(plan), false) = (&query.plan.unmatched_plan, gone.is_empty()) {
            // Left rows no right row can meet any more: those that never
            // met one are written now, with NULLs (LEFT JOIN).
            query.fill(0, gone)?;
            query.fill(1, self.state.buffer(1))?;
            let result = query.execute(plan, out).await;
            query.clear();
            result?;
        }
        self.state.evict_right(watermarks[0]).map_err(fatal)?;
        match &mut self.aggregation {
            Some(agg) => agg.end_epoch(query.watermark().await, out).await,
            None => Ok(query.watermark().await),
        }
    }

    /// The aggregation's state (empty without one), then each side's rows.
    fn snapshot(&self, watermarks: &[Option<i64>]) -> DFResult<Snapshot> {
        let sides = [watermarks.first().copied().flatten(), watermarks.get(1).copied().flatten()];
        let [left, right] = self.state.snapshot(sides)?;
        let (rows, bytes) = self.state.size();
        let (agg, (agg_rows, agg_bytes)) = match &self.aggregation {
            Some(agg) => (agg.snapshot()?, agg.size()),
            None => (Vec::new(), (0, 0)),
        };
        let bytes_packed = crate::stream::snapshot::pack(&[&agg, &left, &right]);
        Ok(Snapshot { bytes: bytes_packed, size: Some((rows + agg_rows, bytes + agg_bytes)) })
    }

    fn restore(&mut self, bytes: &[u8]) -> DFResult<Vec<(usize, Option<i64>)>> {
        let Some(sections) = crate::stream::snapshot::unpack(bytes) else {
            // A lone aggregation snapshot: what a single-stream query writes.
            if let Some(agg) = &mut self.aggregation {
                agg.restore(bytes)?;
                return Ok(vec![(0, agg.watermark)]);
            }
            return Ok(Vec::new());
        };
        if let (Some(agg), Some(section)) = (&mut self.aggregation, sections.first()) {
            agg.restore(section)?;
        }
        let mut watermarks = Vec::new();
        for side in 0..2 {
            watermarks.push((side, self.state.restore(side, sections.get(side + 1).copied().unwrap_or_default())?));
        }
        Ok(watermarks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn shape(kind: JoinKind, lower: i64, upper: i64) -> JoinShape {
        JoinShape { kind, streams: ["a".into(), "b".into()], lower, upper }
    }

    fn batch(times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from(times.to_vec())), Arc::new(TimestampMicrosecondArray::from(times.to_vec()))],
        )
        .unwrap()
    }

    fn state(kind: JoinKind, lower: i64, upper: i64) -> JoinState {
        let schema = batch(&[]).schema();
        JoinState {
            shape: shape(kind, lower, upper),
            time_columns: [1, 1],
            schemas: [schema.clone(), schema],
            buffers: [Vec::new(), Vec::new()],
        }
    }

    fn ids(batches: &[RecordBatch]) -> Vec<i64> {
        batches.iter().flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec()).collect()
    }

    #[test]
    fn eviction_follows_the_other_sides_watermark() {
        // right.ts - left.ts in [0, 60]
        let mut s = state(JoinKind::Inner, 0, 60);
        s.add(0, vec![batch(&[0, 50, 100])]);
        s.add(1, vec![batch(&[10, 70, 120])]);
        // right watermark 100: left rows with ts + 60 < 100 (0) go.
        assert_eq!(ids(&s.evict_left(Some(100)).unwrap()), vec![0]);
        // left watermark 80: right rows with ts < 80 (10, 70) go.
        s.evict_right(Some(80)).unwrap();
        assert_eq!(ids(&s.buffers[0]), vec![50, 100]);
        assert_eq!(ids(&s.buffers[1]), vec![120]);
    }

    #[test]
    fn left_outer_keeps_right_rows_buffered_left_rows_can_meet() {
        let mut s = state(JoinKind::LeftOuter, 0, 60);
        s.add(0, vec![batch(&[50])]);
        s.add(1, vec![batch(&[55, 70])]);
        // left watermark 100, but left row 50 is still buffered and can
        // meet right rows from 50 on: both stay.
        s.evict_right(Some(100)).unwrap();
        assert_eq!(ids(&s.buffers[1]), vec![55, 70]);
    }

    #[test]
    fn snapshot_round_trips_rows_and_watermarks() {
        let mut s = state(JoinKind::Inner, 0, 60);
        s.add(0, vec![batch(&[1, 2])]);
        let [left, right] = s.snapshot([Some(7), None]).unwrap();
        let packed = crate::stream::snapshot::pack(&[b"", &left, &right]);
        let sections = crate::stream::snapshot::unpack(&packed).unwrap();
        assert_eq!(sections.len(), 3);
        let mut restored = state(JoinKind::Inner, 0, 60);
        assert_eq!(restored.restore(0, sections[1]).unwrap(), Some(7));
        assert_eq!(restored.restore(1, sections[2]).unwrap(), None);
        assert_eq!(ids(&restored.buffers[0]), vec![1, 2]);
        assert!(crate::stream::snapshot::unpack(b"ARROW1").is_none());
    }
}
