//! A window-aligned query at run time: the rows kept per stream
//! ([`AlignedState`]) and the operator that evaluates the query's plan over
//! them once per closed window.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, new_null_array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::SchemaRef;

use super::AlignedShape;
use crate::error::QueryError;
use crate::stream::definition::StreamDef;
use crate::stream::join::micros_of;
use crate::stream::operator::{Operator, Output, Snapshot};
use crate::stream::ready_query::Instance;
use crate::stream::runner::{RunError, fatal};

type DFResult<T> = datafusion::error::Result<T>;

/// The rows kept for one stream.
struct Kept {
    schema: SchemaRef,
    time_column: usize,
    keep: i64,
    /// Columns no part of the query reads: kept as NULLs.
    unread: Vec<usize>,
    rows: Vec<RecordBatch>,
}

/// The kept rows of each stream and the windows evaluated so far.
pub struct AlignedState {
    pub shape: AlignedShape,
    inputs: Vec<Kept>,
    /// Windows ending at or before this have been evaluated.
    pub frontier: Option<i64>,
}

impl AlignedState {
    /// For the inputs `streams`, in the query's input order.
    pub fn new(shape: AlignedShape, streams: &[Arc<StreamDef>]) -> Result<AlignedState, QueryError> {
        let mut inputs = Vec::new();
        for s in streams {
            let ts = s.watermark.as_ref().map(|(c, _)| c.as_str()).unwrap_or_default();
            let time_column = s
                .spec
                .schema
                .index_of(ts)
                .map_err(|_| QueryError::Unsupported(format!("stream {} has no event time", s.name)))?;
            let rows = shape.streams.get(&s.name).cloned().unwrap_or_default();
            let unread = (0..s.spec.schema.fields().len())
                .filter(|c| !rows.columns.contains(c) && s.spec.schema.field(*c).is_nullable())
                .collect();
            inputs.push(Kept { schema: s.spec.schema.clone(), time_column, keep: rows.keep, unread, rows: Vec::new() });
        }
        Ok(AlignedState { shape, inputs, frontier: None })
    }

    /// Keeps on-time rows of input `input`, without the columns no part
    /// of the query reads.
    pub fn add(&mut self, input: usize, batches: Vec<RecordBatch>) -> DFResult<()> {
        let kept = &mut self.inputs[input];
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let mut columns = batch.columns().to_vec();
            for &c in &kept.unread {
                columns[c] = new_null_array(columns[c].data_type(), batch.num_rows());
            }
            kept.rows.push(RecordBatch::try_new(batch.schema(), columns)?);
        }
        Ok(())
    }

    pub fn rows(&self, input: usize) -> Vec<RecordBatch> {
        self.inputs[input].rows.clone()
    }

    /// The windows the watermark closes that are not evaluated yet.
    pub fn closing(&self, watermark: Option<i64>) -> Option<crate::stream::planning::ClosingWindows> {
        let up_to = watermark?.checked_sub(self.shape.delay)?;
        match self.frontier {
            Some(done) if up_to <= done => None,
            done => Some((done, up_to)),
        }
    }

    /// Whether a window ends in `windows` (ends are multiples of the
    /// slide): if not, there is nothing to evaluate.
    pub fn closes_any(&self, windows: crate::stream::planning::ClosingWindows) -> bool {
        let (after, up_to) = windows;
        let last_end = up_to - up_to.rem_euclid(self.shape.slide);
        after.is_none_or(|after| last_end > after)
    }

    /// Windows up to `frontier` are evaluated: rows no later window can
    /// use leave (and rows without an event time, which meet no window).
    pub fn advance(&mut self, frontier: i64) -> DFResult<()> {
        self.frontier = Some(frontier);
        for kept in &mut self.inputs {
            let mut rows = Vec::new();
            for batch in std::mem::take(&mut kept.rows) {
                let times = micros_of(&batch, kept.time_column)?;
                let (keep, slide) = (kept.keep, self.shape.slide);
                // Window ends are multiples of the slide: the last window a
                // row can reach ends at ts + keep rounded down to one.
                let last_end = |t: i64| {
                    let reach = t.saturating_add(keep);
                    reach - reach.rem_euclid(slide)
                };
                let stays: BooleanArray = times.iter().map(|t| Some(t.is_some_and(|t| last_end(t) > frontier))).collect();
                let batch = filter_record_batch(&batch, &stays)?;
                if batch.num_rows() > 0 {
                    rows.push(batch);
                }
            }
            kept.rows = rows;
        }
        Ok(())
    }

    /// Rows and bytes kept.
    pub fn size(&self) -> (usize, usize) {
        let all = || self.inputs.iter().flat_map(|k| &k.rows);
        (all().map(|b| b.num_rows()).sum(), all().map(|b| b.get_array_memory_size()).sum())
    }

    /// The frontier, then each input's rows with its watermark.
    pub fn snapshot(&self, watermarks: &[Option<i64>]) -> DFResult<Vec<u8>> {
        let frontier = self.frontier.map(|f| f.to_string()).unwrap_or_default().into_bytes();
        let mut sections = vec![frontier];
        for (i, kept) in self.inputs.iter().enumerate() {
            sections.push(crate::stream::snapshot::write(&kept.schema, &kept.rows, watermarks.get(i).copied().flatten())?);
        }
        let refs: Vec<&[u8]> = sections.iter().map(|s| s.as_slice()).collect();
        Ok(crate::stream::snapshot::pack(&refs))
    }

    /// Restores [`AlignedState::snapshot`]; returns each input's watermark.
    pub fn restore(&mut self, sections: &[&[u8]]) -> DFResult<Vec<Option<i64>>> {
        let frontier = sections.first().map(|s| String::from_utf8_lossy(s).to_string()).unwrap_or_default();
        self.frontier = frontier.parse().ok();
        let mut watermarks = Vec::new();
        for (i, kept) in self.inputs.iter_mut().enumerate() {
            let (rows, watermark) =
                crate::stream::snapshot::read(&kept.schema, sections.get(i + 1).copied().unwrap_or_default())?;
            kept.rows = rows;
            watermarks.push(watermark);
        }
        Ok(watermarks)
    }
}

/// Keeps each chunk's on-time rows; evaluates at the epoch end that
/// closes windows.
pub(in crate::stream) struct AlignedOperator(pub(in crate::stream) AlignedState);

#[async_trait::async_trait]
impl Operator for AlignedOperator {
    async fn process(
        &mut self,
        query: &Instance,
        input: usize,
        batches: Vec<RecordBatch>,
        out: &mut Output,
    ) -> Result<(), RunError> {
        // Windows close by the lower watermark of the streams: a row is
        // late only when older than that.
        let watermark = query.watermark().await;
        let batches = query.admit(input, watermark, batches, out).await?;
        self.0.add(input, batches).map_err(fatal)
    }

    async fn end_epoch(&mut self, query: &Instance, out: &mut Output) -> Result<Option<i64>, RunError> {
        let watermark = query.watermark().await;
        if let Some(windows) = self.0.closing(watermark) {
            // The windows the watermark has closed: the plan runs once over
            // the kept rows, every TUMBLE/HOP producing only those windows.
            if self.0.closes_any(windows) {
                for (i, input) in query.inputs.iter().enumerate() {
                    query.fill(i, self.0.rows(i))?;
                    input.table.set_closing(Some(windows));
                }
                let result = query.execute(&query.plan.plan, out).await;
                query.clear();
                result?;
            }
            self.0.advance(windows.1).map_err(fatal)?;
        }
        Ok(watermark)
    }

    fn snapshot(&self, watermarks: &[Option<i64>]) -> DFResult<Snapshot> {
        Ok(Snapshot { bytes: self.0.snapshot(watermarks)?, size: Some(self.0.size()) })
    }

    fn restore(&mut self, bytes: &[u8]) -> DFResult<Vec<(usize, Option<i64>)>> {
        let sections = crate::stream::snapshot::unpack(bytes).unwrap_or_default();
        Ok(self.0.restore(&sections)?.into_iter().enumerate().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::aligned::KeptRows;
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use std::collections::HashMap;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]))
    }

    fn batch(times: &[i64]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![Arc::new(Int64Array::from(times.to_vec())), Arc::new(TimestampMicrosecondArray::from(times.to_vec()))],
        )
        .unwrap()
    }

    fn state(keep: i64, delay: i64, columns: Vec<usize>) -> AlignedState {
        let shape = AlignedShape {
            size: 10,
            slide: 10,
            delay,
            streams: HashMap::from([("s".to_string(), KeptRows { keep, columns: columns.clone() })]),
        };
        let unread = (0..2).filter(|c| !columns.contains(c)).collect();
        AlignedState {
            shape,
            inputs: vec![Kept { schema: schema(), time_column: 1, keep, unread, rows: Vec::new() }],
            frontier: None,
        }
    }

    fn ids(batches: &[RecordBatch]) -> Vec<Option<i64>> {
        batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().iter().collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn windows_close_once_and_rows_leave_when_no_open_window_needs_them() {
        let mut s = state(10, 0, vec![0, 1]);
        assert_eq!(s.closing(None), None);
        assert_eq!(s.closing(Some(20)), Some((None, 20)));
        s.add(0, vec![batch(&[5, 12, 25, 30])]).unwrap();
        s.advance(20).unwrap();
        // Windows end at multiples of 10: 5 and 12 are in windows ending
        // at 10 and 20, both evaluated; 25 and 30 wait for 30 and 40.
        assert_eq!(ids(&s.rows(0)), vec![Some(25), Some(30)]);
        assert_eq!(s.closing(Some(20)), None);
        assert_eq!(s.closing(Some(30)), Some((Some(20), 30)));
        assert!(s.closes_any((Some(20), 30)));
        assert!(!s.closes_any((Some(20), 29)));
        assert!(s.closes_any((None, 5)));
    }

    #[test]
    fn a_delay_holds_windows_back_for_rows_joined_to_them() {
        let s = state(10, 3, vec![0, 1]);
        assert_eq!(s.closing(Some(20)), Some((None, 17)));
    }

    #[test]
    fn unread_columns_are_not_kept_and_snapshots_round_trip() {
        let mut s = state(10, 0, vec![1]);
        s.add(0, vec![batch(&[1, 2])]).unwrap();
        assert_eq!(ids(&s.rows(0)), vec![None, None]);
        s.advance(-100).unwrap();
        let bytes = s.snapshot(&[Some(7)]).unwrap();
        let sections = crate::stream::snapshot::unpack(&bytes).unwrap();
        let mut restored = state(10, 0, vec![1]);
        assert_eq!(restored.restore(&sections).unwrap(), vec![Some(7)]);
        assert_eq!(restored.frontier, Some(-100));
        assert_eq!(restored.size().0, 2);
    }
}
