//! Event-time windows as table functions over a stream:
//! `TUMBLE(stream, ts, INTERVAL '15 minutes')` and
//! `HOP(stream, ts, slide, size)` add `window_start` and `window_end` to each
//! row (HOP repeats a row once per window it falls in). Rows without an
//! event time belong to no window and are dropped.
//!
//! `SESSION(stream, ts, INTERVAL 'gap')` gives each row its own window
//! `[ts, ts + gap)`; the aggregation joins a key's overlapping windows into
//! sessions as rows arrive (see `aggregate::session`), since a session's
//! bounds depend on rows that have not arrived yet.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use super::planning::{ChunkTable, ClosingWindows};

/// Which window function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    Tumble,
    Hop,
    /// Sessions with a gap; `size` holds the gap.
    Session,
}

/// The table function, bound to one query's streams.
#[derive(Debug)]
pub struct WindowFunction {
    pub kind: WindowKind,
    pub streams: HashMap<String, Arc<ChunkTable>>,
}

/// A stream's current chunk with window columns.
#[derive(Debug)]
pub struct WindowTable {
    pub stream: String,
    pub kind: WindowKind,
    chunk: Arc<ChunkTable>,
    time_column: usize,
    /// Window length and step, in microseconds (equal for TUMBLE; for
    /// SESSION the gap, with the step unused).
    pub size: i64,
    pub slide: i64,
    schema: SchemaRef,
}

fn plan_error(msg: String) -> DataFusionError {
    DataFusionError::Plan(msg)
}

/// A fixed-length interval or duration in microseconds; None for months
/// (no fixed length) and for values too large to count in microseconds.
pub(super) fn fixed_micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            (v.days as i64).checked_mul(86_400_000_000)?.checked_add(v.nanoseconds / 1000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            (v.days as i64).checked_mul(86_400_000_000)?.checked_add(v.milliseconds as i64 * 1000)
        }
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1_000_000),
        ScalarValue::DurationMillisecond(Some(v)) => v.checked_mul(1000),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(*v),
        ScalarValue::DurationNanosecond(Some(v)) => Some(v / 1000),
        _ => None,
    }
}

/// A window argument: a positive interval literal, in microseconds.
fn interval_micros(expr: &Expr, what: &str) -> DFResult<i64> {
    let Expr::Literal(value, _) = expr else {
        return Err(plan_error(format!("{what} must be an INTERVAL literal, found {expr}")));
    };
    let micros = fixed_micros(value)
        .ok_or_else(|| plan_error(format!("{what} must be an INTERVAL of days or less, found {value}")))?;
    if micros <= 0 {
        return Err(plan_error(format!("{what} must be positive")));
    }
    Ok(micros)
}

fn column_name(expr: &Expr, what: &str) -> DFResult<String> {
    match expr {
        Expr::Column(c) => Ok(c.name.clone()),
        other => Err(plan_error(format!("{what} must be a name, found {other}"))),
    }
}

impl TableFunctionImpl for WindowFunction {
    fn call_with_args(&self, args: datafusion::catalog::TableFunctionArgs) -> DFResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let (name, expected) = match self.kind {
            WindowKind::Tumble => ("TUMBLE", "TUMBLE(stream, time_column, INTERVAL 'size')"),
            WindowKind::Hop => ("HOP", "HOP(stream, time_column, INTERVAL 'slide', INTERVAL 'size')"),
            WindowKind::Session => ("SESSION", "SESSION(stream, time_column, INTERVAL 'gap')"),
        };
        let wanted = if self.kind == WindowKind::Hop { 4 } else { 3 };
        if exprs.len() != wanted {
            return Err(plan_error(format!("{name} takes {wanted} arguments: {expected}")));
        }
        let stream = column_name(&exprs[0], &format!("the first argument of {name} (a stream)"))?;
        let chunk = self.streams.get(&stream).cloned().ok_or_else(|| {
            plan_error(format!("{name}: '{stream}' is not a stream (windows apply to streams in continuous queries)"))
        })?;
        let time = column_name(&exprs[1], &format!("the second argument of {name} (the event-time column)"))?;
        let stream_schema = chunk.schema();
        let time_column = stream_schema
            .index_of(&time)
            .map_err(|_| plan_error(format!("{name}: stream '{stream}' has no column '{time}'")))?;
        if !matches!(stream_schema.field(time_column).data_type(), DataType::Timestamp(..)) {
            return Err(plan_error(format!("{name}: '{time}' is not a timestamp column")));
        }
        let (slide, size) = match self.kind {
            WindowKind::Tumble => {
                let size = interval_micros(&exprs[2], "the window size")?;
                (size, size)
            }
            WindowKind::Session => {
                let gap = interval_micros(&exprs[2], "the session gap")?;
                (gap, gap)
            }
            WindowKind::Hop => {
                let slide = interval_micros(&exprs[2], "the slide")?;
                let size = interval_micros(&exprs[3], "the window size")?;
                if size % slide != 0 {
                    return Err(plan_error(format!("{name}: the size must be a multiple of the slide")));
                }
                (slide, size)
            }
        };
        let mut fields: Vec<Field> = stream_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        fields.push(Field::new("window_start", ts.clone(), false));
        fields.push(Field::new("window_end", ts, false));
        let schema = Arc::new(Schema::new(fields));
        Ok(Arc::new(WindowTable { stream, kind: self.kind, chunk, time_column, size, slide, schema }))
    }
}

impl WindowTable {
    /// The event-time column the windows are computed from.
    pub fn time_column_name(&self) -> &str {
        self.schema.field(self.time_column).name()
    }

    /// The rows of `batch` with their windows: the columns `projection`
    /// picks (all when None), only windows `closing` allows.
    fn assign(
        &self,
        batch: &RecordBatch,
        projection: Option<&Vec<usize>>,
        closing: Option<ClosingWindows>,
    ) -> DFResult<RecordBatch> {
        let time = cast(batch.column(self.time_column), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let time = time
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| DataFusionError::Internal("window time column".into()))?;
        let per_row = if self.kind == WindowKind::Session { 1 } else { (self.size / self.slide) as usize };
        let wanted = |end: i64| closing.is_none_or(|(after, up_to)| after.is_none_or(|a| end > a) && end <= up_to);
        let mut rows = Vec::with_capacity(time.len() * per_row);
        let mut starts = Vec::with_capacity(time.len() * per_row);
        for (i, t) in time.iter().enumerate() {
            let Some(t) = t else { continue };
            if self.kind == WindowKind::Session {
                rows.push(i as u32);
                starts.push(t);
                continue;
            }
            // The newest window containing t starts at t rounded down to the
            // slide; older ones step back by the slide while they still cover t.
            let newest = t - t.rem_euclid(self.slide);
            for k in 0..per_row as i64 {
                let start = newest - k * self.slide;
                if start + self.size > t && wanted(start + self.size) {
                    rows.push(i as u32);
                    starts.push(start);
                }
            }
        }
        let indices = UInt32Array::from(rows);
        let width = batch.num_columns();
        let all: Vec<usize>;
        let picked = match projection {
            Some(p) => p,
            None => {
                all = (0..width + 2).collect();
                &all
            }
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(picked.len());
        for &c in picked {
            columns.push(match c {
                c if c < width => take(batch.column(c).as_ref(), &indices, None)?,
                c if c == width => Arc::new(TimestampMicrosecondArray::from(starts.clone())),
                _ => Arc::new(TimestampMicrosecondArray::from(starts.iter().map(|s| s + self.size).collect::<Vec<i64>>())),
            });
        }
        let schema = Arc::new(self.schema.project(picked)?);
        Ok(RecordBatch::try_new_with_options(
            schema,
            columns,
            &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(indices.len())),
        )?)
    }
}

#[async_trait]
impl TableProvider for WindowTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let closing = self.chunk.closing();
        let batches =
            self.chunk.current()?.iter().map(|b| self.assign(b, projection, closing)).collect::<DFResult<Vec<_>>>()?;
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        Ok(MemorySourceConfig::try_new_exec(&[batches], schema, None)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(kind: WindowKind, slide: i64, size: i64) -> WindowTable {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true)]));
        let (chunk, _) = ChunkTable::new(schema.clone());
        let f = WindowFunction { kind, streams: HashMap::from([("s".to_string(), chunk.clone())]) };
        let _ = f;
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("window_start", DataType::Timestamp(TimeUnit::Microsecond, None), false));
        fields.push(Field::new("window_end", DataType::Timestamp(TimeUnit::Microsecond, None), false));
        WindowTable { stream: "s".into(), kind, chunk, time_column: 0, size, slide, schema: Arc::new(Schema::new(fields)) }
    }

    fn starts(t: &WindowTable, times: Vec<Option<i64>>) -> Vec<i64> {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true)])),
            vec![Arc::new(TimestampMicrosecondArray::from(times))],
        )
        .unwrap();
        let out = t.assign(&batch, None, None).unwrap();
        let s = out.column(1).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        s.values().to_vec()
    }

    #[test]
    fn tumbling_and_hopping_windows() {
        let tumble = table(WindowKind::Tumble, 10, 10);
        assert_eq!(starts(&tumble, vec![Some(0), Some(9), Some(10), Some(-1), None]), vec![0, 0, 10, -10]);
        let hop = table(WindowKind::Hop, 5, 10);
        assert_eq!(starts(&hop, vec![Some(7)]), vec![5, 0]);
        assert_eq!(starts(&hop, vec![Some(10)]), vec![10, 5]);
    }

    #[test]
    fn a_session_window_starts_at_its_row() {
        let session = table(WindowKind::Session, 30, 30);
        assert_eq!(starts(&session, vec![Some(7), None, Some(-3)]), vec![7, -3]);
    }
}
