//! Nexmark connector: the person, auction and bid events of the Nexmark
//! streaming benchmark, from the `nexmark` crate (RisingWave's generator),
//! built straight into Arrow arrays.
//!
//! The crate numbers all events in one sequence (per 50 events: 1 person,
//! 3 auctions, 46 bids) and derives every event, its timestamp included, from
//! its number alone: event `n` happens at `base_time + n / 10` ms (10,000
//! events per second of event time). A stream reads one `table` of that
//! sequence; its checkpoint is how many rows of that table it has emitted, so
//! a restart replays exactly. `events` counts the whole sequence, as
//! RisingWave's `nexmark.event.num` does: person, auction and bid streams
//! with the same `events` cover the same span of event time.

mod tables;

use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{StringBuilder, StringViewBuilder};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use nexmark::EventGenerator;
use nexmark::config::NexmarkConfig;

use super::{Bound, Chunk, Poll, Source, SourceError, SourceSpec};
use tables::{Builder, Kind, read_table, table_name, value};
pub use tables::{Table, schema_for};

/// Options of `connector = 'nexmark'` besides the common ones.
pub const OPTIONS: &[&str] = &["table", "events", "events_per_second", "base_time"];

/// RisingWave's base time for per-table Nexmark sources: 2015-07-15 00:00:00
/// UTC, in milliseconds. Fixed, so every run sees the same timestamps.
const DEFAULT_BASE_TIME_MS: u64 = 1_436_918_400_000;

/// Below this many rows a poll generates on the calling thread.
const PARALLEL_MIN_ROWS: usize = 8192;

/// One declared column: which Nexmark field fills it and how it is built.
#[derive(Debug, Clone)]
struct Column {
    /// Index into [`Table::columns`].
    field: usize,
    kind: Kind,
    /// Text is built straight into the declared string type when it is
    /// Utf8View (DataFusion's TEXT); anything else is built as Utf8.
    view: bool,
    /// The declared type, when it differs from what is built (e.g. INT).
    cast_to: Option<DataType>,
}

pub struct NexmarkSource {
    stream: String,
    schema: SchemaRef,
    table: Table,
    columns: Vec<Column>,
    /// Cloned into each generator; `base_time` set from the checkpoint.
    config: NexmarkConfig,
    /// Events of the whole sequence after which the stream ends.
    events: Option<u64>,
    /// Wall-clock limit on the whole sequence's rate; 0 = none.
    events_per_second: u64,
    /// Wall-clock microseconds when this query first started reading: the
    /// rate limit counts from here, across restarts, like the generator.
    start_micros: i64,
    /// Rows of this table emitted (the generator's offset in the table).
    next: u64,
    /// With `Bound::AvailableNow`: the sequence position to stop at.
    end: Option<u64>,
}

impl NexmarkSource {
    pub fn new(spec: SourceSpec) -> Result<NexmarkSource, SourceError> {
        let stream = spec.stream.clone();
        let fatal = |msg: String| SourceError::Fatal(format!("stream '{stream}': {msg}"));
        let table = read_table(&spec.stream, &spec.options).map_err(SourceError::Fatal)?;
        let number = |key: &str, min: u64| -> Result<Option<u64>, SourceError> {
            match spec.options.get(key) {
                None => Ok(None),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n >= min => Ok(Some(n)),
                    _ => Err(fatal(format!("option '{key}' must be an integer of at least {min}, got '{v}'"))),
                },
            }
        };
        let events = number("events", 1)?;
        let events_per_second = number("events_per_second", 0)?.unwrap_or(0);
        let base_time = match spec.options.get("base_time") {
            None => DEFAULT_BASE_TIME_MS,
            Some(v) if v.trim().eq_ignore_ascii_case("now") => u64::try_from(now_micros() / 1000).unwrap_or(0),
            Some(v) => {
                let nanos = datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(v.trim())
                    .map_err(|e| fatal(format!("option 'base_time' must be a timestamp or 'now', got '{v}': {e}")))?;
                u64::try_from(nanos / 1_000_000)
                    .map_err(|_| fatal(format!("option 'base_time' must not be before 1970, got '{v}'")))?
            }
        };

        let mut columns = Vec::with_capacity(spec.schema.fields().len());
        for declared in spec.schema.fields() {
            let Some(field) = table.columns().iter().position(|(name, _)| declared.name().eq_ignore_ascii_case(name)) else {
                return Err(fatal(format!(
                    "nexmark table '{}' has no column '{}'; its columns are: {}",
                    table_name(table),
                    declared.name(),
                    table.column_names()
                )));
            };
            let kind = table.columns()[field].1;
            let view = kind == Kind::Text && declared.data_type() == &DataType::Utf8View;
            let built = match kind {
                Kind::Int => DataType::Int64,
                Kind::Text if view => DataType::Utf8View,
                Kind::Text => DataType::Utf8,
                Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, None),
            };
            let cast_to = (declared.data_type() != &built).then(|| declared.data_type().clone());
            if let Some(to) = &cast_to
                && !can_cast_types(&built, to)
            {
                return Err(fatal(format!("column '{}' is {built} in nexmark and cannot be read as {to}", declared.name())));
            }
            columns.push(Column { field, kind, view, cast_to });
        }
        let config = NexmarkConfig { base_time, ..NexmarkConfig::default() };
        Ok(NexmarkSource {
            stream: spec.stream,
            schema: spec.schema,
            table,
            columns,
            config,
            events,
            events_per_second,
            start_micros: now_micros(),
            next: 0,
            end: None,
        })
    }

    /// Where this table's proportion of each 50 events starts, and its size.
    fn share(&self) -> (u64, u64, u64) {
        let c = &self.config;
        let (person, auction, bid) = (c.person_proportion as u64, c.auction_proportion as u64, c.bid_proportion as u64);
        let denominator = person + auction + bid;
        match self.table {
            Table::Person => (0, person, denominator),
            Table::Auction => (person, auction, denominator),
            Table::Bid => (person + auction, bid, denominator),
        }
    }

    /// Rows of this table among the first `events` events of the sequence.
    fn rows_before(&self, events: u64) -> u64 {
        let (start, size, denominator) = self.share();
        (events / denominator) * size + (events % denominator).saturating_sub(start).min(size)
    }

    /// The sequence position of this table's row `row` (what the crate
    /// calls its global offset).
    fn position_of(&self, row: u64) -> u64 {
        let (start, size, denominator) = self.share();
        (row / size) * denominator + start + row % size
    }

    /// Events of the sequence due by `now` under the rate limit.
    fn due(&self, now: i64) -> u64 {
        if self.events_per_second == 0 {
            return u64::MAX;
        }
        let elapsed = i128::from(now.saturating_sub(self.start_micros).max(0));
        u64::try_from(elapsed * i128::from(self.events_per_second) / 1_000_000 + 1).unwrap_or(u64::MAX)
    }

    /// Where the sequence stops for good: `events`, or the bound.
    fn stop_at(&self) -> Option<u64> {
        match (self.events, self.end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Builds rows `from..from + count` of the table, split over the cores
    /// when there are many (generating is most of a simple query's work).
    fn rows(&self, from: u64, count: usize) -> Result<Vec<RecordBatch>, SourceError> {
        let parts = if count >= PARALLEL_MIN_ROWS {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8)
        } else {
            1
        };
        let size = count.div_ceil(parts).max(1);
        let ranges: Vec<(u64, usize)> =
            (0..count).step_by(size).map(|start| (from + start as u64, size.min(count - start))).collect();
        let results: Vec<Result<RecordBatch, ArrowError>> =
            if ranges.len() <= 1 {
                ranges.iter().map(|&(start, n)| self.build(start, n)).collect()
            } else {
                std::thread::scope(|scope| {
                    let handles: Vec<_> =
                        ranges[1..].iter().map(|&(start, n)| scope.spawn(move || self.build(start, n))).collect();
                    let mut results = vec![self.build(ranges[0].0, ranges[0].1)];
                    for handle in handles {
                        results.push(handle.join().unwrap_or_else(|_| {
                            Err(ArrowError::ComputeError("a nexmark generator thread panicked".into()))
                        }));
                    }
                    results
                })
            };
        results
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SourceError::Fatal(format!("stream '{}': nexmark batch: {e}", self.stream)))
    }

    /// One batch of `count` rows starting at row `from` of the table.
    fn build(&self, from: u64, count: usize) -> Result<RecordBatch, ArrowError> {
        let mut builders: Vec<Builder> = self
            .columns
            .iter()
            .map(|c| match c.kind {
                Kind::Int => Builder::Int(Vec::with_capacity(count)),
                Kind::Time => Builder::Time(Vec::with_capacity(count)),
                Kind::Text if c.view => Builder::View(StringViewBuilder::with_capacity(count)),
                Kind::Text => Builder::Text(StringBuilder::with_capacity(count, count * 16)),
            })
            .collect();
        let generator = EventGenerator::new(self.config.clone()).with_type_filter(self.table.event_type()).with_offset(from);
        for event in generator.take(count) {
            for (column, builder) in self.columns.iter().zip(builders.iter_mut()) {
                builder.push(value(&event, column.field));
            }
        }
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (column, builder) in self.columns.iter().zip(builders) {
            let array = builder.finish();
            arrays.push(match &column.cast_to {
                Some(to) => cast(&array, to)?,
                None => array,
            });
        }
        if arrays.is_empty() {
            let options = datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(count));
            return RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options);
        }
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

fn now_micros() -> i64 {
    // A clock before 1970 is not a case worth failing a query for.
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl Source for NexmarkSource {
    async fn restore(&mut self, committed: &[serde_json::Value], bound: Bound) -> Result<(), SourceError> {
        // Each checkpoint holds the whole position: the last one is enough.
        if let Some(last) = committed.last() {
            let field = |name: &str| last.get(name).and_then(serde_json::Value::as_u64);
            let (Some(next), Some(base_time), Some(start)) =
                (field("next"), field("base_time_ms"), last.get("start_micros").and_then(serde_json::Value::as_i64))
            else {
                return Err(SourceError::Fatal(format!("stream '{}': unreadable nexmark checkpoint {last}", self.stream)));
            };
            // The checkpoint's base time wins (it differs when the stream
            // says base_time = 'now'): a replay yields the same events.
            self.next = next;
            self.config.base_time = base_time;
            self.start_micros = start;
        }
        if bound == Bound::AvailableNow {
            if self.events.is_none() && self.events_per_second == 0 {
                return Err(SourceError::Fatal(format!(
                    "stream '{}': a nexmark stream without 'events' never ends; trigger 'available_now' or 'once' \
                     needs events = '<count>' (or events_per_second, to read what is due)",
                    self.stream
                )));
            }
            let due = self.due(now_micros());
            self.end = Some(due.max(self.position_of(self.next)));
        }
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<Poll, SourceError> {
        let deadline = Instant::now() + wait;
        loop {
            let stop = self.stop_at();
            let finished = stop.is_some_and(|stop| self.next >= self.rows_before(stop));
            if finished && self.end.is_some() {
                return Ok(Poll::End);
            }
            let now = now_micros();
            let limit = stop.map_or(self.due(now), |stop| stop.min(self.due(now)));
            let available = self.rows_before(limit).saturating_sub(self.next);
            if available > 0 {
                let count = usize::try_from(available).unwrap_or(usize::MAX).min(max_records.max(1));
                let batches = self.rows(self.next, count)?;
                self.next += count as u64;
                return Ok(Poll::Data(Chunk { batches, input_records: count, bad_records: Vec::new() }));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Poll::Idle);
            }
            // Wait for the next row to come due, or, at the end of an
            // unbounded stream, out the rest of the wait.
            let until_due = if finished || self.events_per_second == 0 {
                remaining
            } else {
                let position = i128::from(self.position_of(self.next));
                let due_at = i128::from(self.start_micros) + position * 1_000_000 / i128::from(self.events_per_second);
                Duration::from_micros(u64::try_from(due_at - i128::from(now)).unwrap_or(0).max(1))
            };
            tokio::time::sleep(until_due.min(remaining)).await;
        }
    }

    fn checkpoint(&mut self) -> serde_json::Value {
        serde_json::json!({
            "next": self.next,
            "events": self.position_of(self.next),
            "base_time_ms": self.config.base_time,
            "start_micros": self.start_micros,
        })
    }

    fn lag(&self) -> Option<i64> {
        let due = self.due(now_micros());
        let limit = self.stop_at().map_or(due, |stop| stop.min(due));
        if limit == u64::MAX {
            return None;
        }
        Some(i64::try_from(self.rows_before(limit).saturating_sub(self.next)).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Field, Int64Type, Schema, TimestampMicrosecondType};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn spec(table: &str, options: &[(&str, &str)], schema: Option<SchemaRef>) -> SourceSpec {
        let mut map: BTreeMap<String, String> = options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        map.insert("table".into(), table.into());
        let schema = schema.unwrap_or_else(|| schema_for("n", &map).unwrap_or_else(|e| panic!("{e}")));
        SourceSpec {
            stream: "n".into(),
            value_schema: schema.clone(),
            schema,
            format: super::super::Format::Bytes,
            options: map,
        }
    }

    fn source(table: &str, options: &[(&str, &str)]) -> NexmarkSource {
        NexmarkSource::new(spec(table, options, None)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// All batches of polls until `End` (or `Idle`), concatenated.
    async fn drain(src: &mut NexmarkSource, max: usize) -> (RecordBatch, bool) {
        let mut batches = Vec::new();
        let ended = loop {
            match src.poll(max, Duration::from_millis(20)).await {
                Ok(Poll::Data(chunk)) => batches.extend(chunk.batches),
                Ok(Poll::Idle) => break false,
                Ok(Poll::End) => break true,
                Err(e) => panic!("{e}"),
            }
        };
        let all = datafusion::arrow::compute::concat_batches(&src.schema, &batches).unwrap_or_else(|e| panic!("{e}"));
        (all, ended)
    }

    #[tokio::test]
    async fn events_count_the_whole_sequence() {
        // Per 50 events: 1 person, 3 auctions, 46 bids; 1000 events -> 20 epochs.
        for (table, rows) in [("person", 20), ("auction", 60), ("bid", 920)] {
            let mut src = source(table, &[("events", "1000")]);
            src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
            let (batch, ended) = drain(&mut src, 100).await;
            assert!(ended);
            assert_eq!(batch.num_rows(), rows, "{table}");
        }
        // Part of an epoch: events 0..57 hold persons 0 and 50, bids 4..50 and 54..57.
        let mut src = source("bid", &[("events", "57")]);
        src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(drain(&mut src, 1000).await.0.num_rows(), 49);
        assert_eq!(src.checkpoint()["events"], 57); // the next bid is event 57

        // Only the newest checkpoint counts, and it must be whole.
        let mut src = source("bid", &[]);
        let unreadable = src.restore(&[serde_json::json!({"next": 1})], Bound::Unbounded).await;
        assert!(matches!(unreadable, Err(SourceError::Fatal(_))));
    }

    #[tokio::test]
    async fn event_time_is_the_generator_timestamp() {
        let mut src = source("bid", &[("events", "100000"), ("base_time", "2026-11-23 10:00:00")]);
        src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        let (batch, _) = drain(&mut src, 40_000).await;
        let times = batch.column(5).as_primitive::<TimestampMicrosecondType>().values();
        let base = 1_795_428_000_000_000i64; // 2026-11-23 10:00:00 UTC in microseconds
        // Bid 0 is event 4: 0.4 ms rounds to 0; event n is at n / 10 ms.
        assert_eq!(times[0], base);
        assert_eq!(times[times.len() - 1], base + 10_000_000); // event 99999: 9999.9 ms rounds to 10 s
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[tokio::test]
    async fn restore_replays_exactly() {
        let mut whole = source("bid", &[("events", "20000")]);
        whole.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        let (expected, _) = drain(&mut whole, 20_000).await;

        // Stop after the first poll, then restart from its checkpoint.
        let mut first = source("bid", &[("events", "20000")]);
        first.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        let Ok(Poll::Data(chunk)) = first.poll(777, Duration::ZERO).await else { panic!("no data") };
        let checkpoint = first.checkpoint();
        assert_eq!(checkpoint["next"], 777);
        let mut again = source("bid", &[("events", "20000")]);
        again
            .restore(&[serde_json::json!({"next": 1}), checkpoint], Bound::AvailableNow)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (rest, ended) = drain(&mut again, 5000).await;
        assert!(ended);
        let mut batches = chunk.batches;
        batches.push(rest);
        let replayed =
            datafusion::arrow::compute::concat_batches(&expected.schema(), &batches).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(replayed, expected);
        assert_eq!(expected.num_rows(), 18_400);
    }

    #[tokio::test]
    async fn declared_columns_pick_fields_and_types() {
        let declared = Arc::new(Schema::new(vec![
            Field::new("price", DataType::Int32, true),
            Field::new("channel", DataType::Utf8View, true),
            Field::new("auction", DataType::Int64, true),
        ]));
        let mut src =
            NexmarkSource::new(spec("bid", &[("events", "500")], Some(declared.clone()))).unwrap_or_else(|e| panic!("{e}"));
        src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        let (batch, _) = drain(&mut src, 1000).await;
        assert_eq!(batch.schema(), declared);
        assert_eq!(batch.num_rows(), 460);
        // Nexmark starts auction ids at 1000.
        assert!(batch.column(2).as_primitive::<Int64Type>().values().iter().all(|a| *a >= 1000));

        let wrong = Arc::new(Schema::new(vec![Field::new("bidder_name", DataType::Utf8, true)]));
        let err = NexmarkSource::new(spec("bid", &[], Some(wrong))).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("no column 'bidder_name'") && err.contains("auction, bidder, price"), "{err}");
    }

    #[tokio::test]
    async fn bad_options_and_endless_available_now_are_refused() {
        for (key, value) in [("events", "0"), ("events", "many"), ("events_per_second", "-1"), ("base_time", "soon")] {
            assert!(NexmarkSource::new(spec("bid", &[(key, value)], None)).is_err(), "{key} = {value}");
        }
        let mut map = BTreeMap::new();
        map.insert("table".to_string(), "bids".to_string());
        assert!(schema_for("n", &map).is_err_and(|e| e.contains("unknown nexmark table 'bids'")));

        let mut src = source("bid", &[]);
        assert!(src.restore(&[], Bound::AvailableNow).await.is_err());
    }

    #[tokio::test]
    async fn the_rate_limit_holds_rows_back_and_the_end_stays_idle() {
        let mut src = source("person", &[("events_per_second", "1000")]);
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        let (batch, ended) = drain(&mut src, 1000).await;
        assert!(!ended);
        // Person 0 (event 0) is due at once, the next (event 50) after 50 ms;
        // the drain stops at the first 20 ms without data.
        let most = 1 + started.elapsed().as_millis() / 50;
        assert!((1..=most).contains(&(batch.num_rows() as u128)), "{} rows", batch.num_rows());

        // Unbounded, past `events`: idle, not ended.
        let mut src = source("auction", &[("events", "100")]);
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        let (batch, ended) = drain(&mut src, 1000).await;
        assert_eq!((batch.num_rows(), ended), (6, false));
        assert_eq!(src.lag(), Some(0));
    }
}
