//! Generator connector, Spark's rate source: `rows_per_second` rows a second
//! of (timestamp, value), value counting up from 0.
//!
//! Deterministic, so exactly-once holds across restarts: value `v` always has
//! timestamp `start_micros + v * 1_000_000 / rows_per_second`, and the
//! checkpoint is just the next value and the start. Rows are emitted once
//! their timestamp has passed; a restarted query catches up on what it missed.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{ArrayRef, Int64Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Bound, Chunk, Poll, Source, SourceError, SourceSpec};

/// Options of `connector = 'generator'` besides the common ones.
pub const OPTIONS: &[&str] = &["rows_per_second"];

/// The generator's fixed columns.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("value", DataType::Int64, true),
    ]))
}

pub struct GeneratorSource {
    stream: String,
    schema: SchemaRef,
    rows_per_second: u64,
    /// Wall-clock microseconds of value 0; fixed at the first start.
    start_micros: i64,
    /// The next value to emit.
    next: u64,
    /// With `Bound::AvailableNow`: the first value not to emit.
    end: Option<u64>,
}

impl GeneratorSource {
    pub fn new(spec: SourceSpec) -> Result<GeneratorSource, SourceError> {
        let rows_per_second = match spec.options.get("rows_per_second") {
            None => 1,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n > 0 && n <= 1_000_000_000 => n,
                _ => {
                    return Err(SourceError::Fatal(format!(
                        "stream '{}': option 'rows_per_second' must be an integer from 1 to 1000000000, got '{v}'",
                        spec.stream
                    )));
                }
            },
        };
        let types = |s: &SchemaRef| s.fields().iter().map(|f| f.data_type().clone()).collect::<Vec<_>>();
        if types(&spec.schema) != types(&schema()) {
            return Err(SourceError::Fatal(format!(
                "stream '{}': a generator stream has exactly the columns (timestamp, value)",
                spec.stream
            )));
        }
        Ok(GeneratorSource {
            stream: spec.stream,
            schema: spec.schema,
            rows_per_second,
            start_micros: now_micros(),
            next: 0,
            end: None,
        })
    }

    /// The timestamp of value `v`.
    fn timestamp(&self, v: u64) -> i64 {
        let offset = i128::from(v) * 1_000_000 / i128::from(self.rows_per_second);
        i64::try_from(i128::from(self.start_micros) + offset).unwrap_or(i64::MAX)
    }

    /// How many values are due at `now` (values `0..due` have timestamps <= now).
    fn due(&self, now: i64) -> u64 {
        if now < self.start_micros {
            return 0;
        }
        let elapsed = i128::from(now) - i128::from(self.start_micros);
        let due = elapsed * i128::from(self.rows_per_second) / 1_000_000 + 1;
        u64::try_from(due).unwrap_or(u64::MAX)
    }

    fn rows(&self, from: u64, count: u64) -> Result<RecordBatch, SourceError> {
        let values = (from..from + count).map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let timestamps = (from..from + count).map(|v| self.timestamp(v));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from_iter_values(timestamps)),
            Arc::new(Int64Array::from_iter_values(values)),
        ];
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| SourceError::Fatal(format!("stream '{}': generator batch: {e}", self.stream)))
    }
}

fn now_micros() -> i64 {
    // A clock before 1970 is not a case worth failing a query for.
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Source for GeneratorSource {
    async fn restore(&mut self, committed: &[serde_json::Value], bound: Bound) -> Result<(), SourceError> {
        // Each checkpoint holds the whole position: the last one is enough.
        if let Some(last) = committed.last() {
            let field = |name: &str| last.get(name).and_then(serde_json::Value::as_i64);
            let (Some(next), Some(start)) = (field("next"), field("start_micros")) else {
                return Err(SourceError::Fatal(format!("stream '{}': unreadable generator checkpoint {last}", self.stream)));
            };
            self.next = u64::try_from(next).unwrap_or(0);
            self.start_micros = start;
            // Changed since? Keep time continuous: the next value is due
            // when it was due at the old rate.
            let rate = last.get("rows_per_second").and_then(serde_json::Value::as_u64).unwrap_or(self.rows_per_second);
            if rate != self.rows_per_second && rate > 0 {
                let was_due = i128::from(start) + i128::from(self.next) * 1_000_000 / i128::from(rate);
                let rebased = was_due - i128::from(self.next) * 1_000_000 / i128::from(self.rows_per_second);
                self.start_micros = i64::try_from(rebased).unwrap_or(start);
            }
        }
        if bound == Bound::AvailableNow {
            self.end = Some(self.due(now_micros()).max(self.next));
        }
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<Poll, SourceError> {
        let deadline = Instant::now() + wait;
        loop {
            if self.end.is_some_and(|end| self.next >= end) {
                return Ok(Poll::End);
            }
            let now = now_micros();
            let available = self.end.map_or(self.due(now), |end| end.min(self.due(now)));
            if available > self.next {
                let count = (available - self.next).min(max_records.max(1) as u64);
                let batch = self.rows(self.next, count)?;
                self.next += count;
                let input_records = usize::try_from(count).unwrap_or(usize::MAX);
                return Ok(Poll::Data(Chunk { batches: vec![batch], input_records, bad_records: Vec::new() }));
            }
            // Sleep until the next value is due, within the wait.
            let until_due = u64::try_from(self.timestamp(self.next).saturating_sub(now)).unwrap_or(0);
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Poll::Idle);
            }
            tokio::time::sleep(Duration::from_micros(until_due.max(1)).min(remaining)).await;
        }
    }

    fn checkpoint(&mut self) -> serde_json::Value {
        serde_json::json!({
            "next": self.next,
            "start_micros": self.start_micros,
            "rows_per_second": self.rows_per_second,
        })
    }

    fn lag(&self) -> Option<i64> {
        let due = self.end.map_or(self.due(now_micros()), |end| end.min(self.due(now_micros())));
        Some(i64::try_from(due.saturating_sub(self.next)).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use std::collections::BTreeMap;

    fn spec(rows_per_second: &str) -> SourceSpec {
        SourceSpec {
            stream: "g".into(),
            value_schema: schema(),
            schema: schema(),
            format: super::super::Format::Bytes,
            options: BTreeMap::from([("rows_per_second".to_string(), rows_per_second.to_string())]),
        }
    }

    fn source(rows_per_second: &str) -> GeneratorSource {
        GeneratorSource::new(spec(rows_per_second)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// (value, timestamp) pairs of polls until `End` or `Idle`.
    async fn drain(src: &mut GeneratorSource, max: usize) -> (Vec<(i64, i64)>, bool) {
        let mut rows = Vec::new();
        loop {
            match src.poll(max, Duration::from_millis(20)).await {
                Ok(Poll::Data(chunk)) => {
                    for b in &chunk.batches {
                        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>().values();
                        let vs = b.column(1).as_primitive::<Int64Type>().values();
                        rows.extend(vs.iter().copied().zip(ts.iter().copied()));
                    }
                }
                Ok(Poll::Idle) => return (rows, false),
                Ok(Poll::End) => return (rows, true),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn restore_continues_with_the_same_timestamps() {
        let start = now_micros() - 2_000_000;
        let mut src = source("10");
        let checkpoint = serde_json::json!({"next": 5, "start_micros": start, "rows_per_second": 10});
        src.restore(&[checkpoint], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        let (rows, ended) = drain(&mut src, 4).await;
        assert!(!ended);
        assert!(rows.len() >= 16, "{rows:?}"); // values 5..=20 are due
        for (i, (v, ts)) in rows.iter().enumerate() {
            assert_eq!(*v, 5 + i as i64);
            assert_eq!(*ts, start + v * 100_000);
        }
        let next = 5 + rows.len() as u64;
        assert_eq!(src.checkpoint(), serde_json::json!({"next": next, "start_micros": start, "rows_per_second": 10}));
    }

    #[tokio::test]
    async fn first_start_emits_value_zero_now_and_available_now_ends() {
        let mut src = source("1");
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        let (rows, _) = drain(&mut src, 100).await;
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0]);

        let start = now_micros() - 1_000_000;
        let mut src = source("1000");
        let checkpoint = serde_json::json!({"next": 0, "start_micros": start});
        src.restore(&[checkpoint], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        let (rows, ended) = drain(&mut src, 300).await;
        assert!(ended);
        assert!((1001..1100).contains(&rows.len()), "{}", rows.len());
        assert_eq!(src.lag(), Some(0));
    }

    #[tokio::test]
    async fn a_new_rate_keeps_time_continuous() {
        let start = now_micros() - 12_000_000; // values 10..=14 are due at the new rate
        let mut src = source("2");
        let checkpoint = serde_json::json!({"next": 10, "start_micros": start, "rows_per_second": 1});
        src.restore(&[checkpoint], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        let (rows, _) = drain(&mut src, 1).await;
        assert_eq!(rows[0], (10, start + 10_000_000));
        assert_eq!(rows[1], (11, start + 10_500_000));
    }

    #[test]
    fn rows_per_second_must_be_positive() {
        for bad in ["0", "-1", "fast"] {
            assert!(matches!(GeneratorSource::new(spec(bad)), Err(SourceError::Fatal(_))));
        }
    }
}
