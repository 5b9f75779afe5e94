//! Event-time watermarks of one stream, as a continuous query sees it.
//!
//! `WATERMARK FOR ts AS ts - INTERVAL '10 minutes'` makes the watermark the
//! largest `ts - 10 minutes` seen. With a partitioned source (Kafka) it is
//! tracked per partition and the stream's watermark is the minimum over
//! partitions: a partition that is behind holds the others back, so its
//! rows are not declared late just because another partition ran ahead.
//! A partition that has had no data for `idle_timeout` stops holding it back
//! (otherwise one quiet partition would stall every window forever).
//!
//! The watermark only moves at the end of an epoch ([`Tracker::advance`]),
//! as in Spark: rows of one epoch are judged against the watermark the
//! previous epoch committed. The watermark and every partition's largest
//! event time are committed with the epoch, so after a crash the replayed
//! epochs, and the ones after them, are judged as in an uninterrupted run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int32Array, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;

use super::definition::StreamDef;
use crate::error::QueryError;

/// Key for sources without partitions.
const WHOLE_STREAM: i32 = -1;

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    /// Largest value of the watermark expression seen (microseconds).
    max: i64,
    last_data: Instant,
}

pub struct Tracker {
    /// `SELECT [_partition,] max(<expr>) FROM <stream> [GROUP BY 1]` over
    /// the stream's chunk table.
    plan: LogicalPlan,
    partitioned: bool,
    idle_timeout: Option<Duration>,
    clocks: BTreeMap<i32, PartitionClock>,
    /// Partitions the source reads; those without data yet hold the
    /// watermark back until `idle_timeout` after `started`.
    expected: Vec<i32>,
    started: Instant,
    /// The committed watermark: never moves back.
    pub current: Option<i64>,
}

impl Tracker {
    /// A tracker for `stream`, or None when it declares no watermark.
    pub async fn new(ctx: &SessionContext, stream: &StreamDef) -> Result<Option<Tracker>, QueryError> {
        let Some((_, expr)) = &stream.watermark else { return Ok(None) };
        let partitioned = stream.spec.schema.index_of("_partition").is_ok();
        let table = format!("\"{}\"", stream.name.replace('"', "\"\""));
        let sql = if partitioned {
            format!("SELECT _partition, CAST(max({expr}) AS TIMESTAMP) FROM {table} GROUP BY _partition")
        } else {
            format!("SELECT CAST(-1 AS INT), CAST(max({expr}) AS TIMESTAMP) FROM {table}")
        };
        let plan = ctx.state().create_logical_plan(&sql).await?;
        Ok(Some(Tracker {
            plan,
            partitioned,
            idle_timeout: stream.idle_timeout,
            clocks: BTreeMap::new(),
            expected: Vec::new(),
            started: Instant::now(),
            current: None,
        }))
    }

    /// The partitions the source reads (known once it is restored).
    pub fn expect_partitions(&mut self, partitions: Vec<i32>) {
        self.expected = if self.partitioned { partitions } else { Vec::new() };
        self.started = Instant::now();
    }

    /// Notes the event times of the chunk now in the stream's slot.
    pub async fn observe(&mut self, ctx: &SessionContext) -> datafusion::error::Result<()> {
        let physical = ctx.state().create_physical_plan(&self.plan).await?;
        let now = Instant::now();
        for batch in collect(physical, ctx.task_ctx()).await? {
            let partitions = cast(batch.column(0), &DataType::Int32)?;
            let times = cast(batch.column(1), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            let (Some(partitions), Some(times)) = (
                partitions.as_any().downcast_ref::<Int32Array>(),
                times.as_any().downcast_ref::<TimestampMicrosecondArray>(),
            ) else {
                continue;
            };
            for i in 0..batch.num_rows() {
                if times.is_null(i) {
                    continue;
                }
                let partition = if partitions.is_null(i) { WHOLE_STREAM } else { partitions.value(i) };
                let time = times.value(i);
                let clock = self.clocks.entry(partition).or_insert(PartitionClock { max: time, last_data: now });
                clock.max = clock.max.max(time);
                clock.last_data = now;
            }
        }
        Ok(())
    }

    /// The watermark the data seen so far allows: the minimum over
    /// partitions that are not idle. None while an active partition has
    /// had no data yet. When every partition is idle the stream is quiet:
    /// the maximum over all of them (what a single global watermark, as in
    /// Spark, would be).
    fn candidate(&self, now: Instant) -> Option<i64> {
        let idle = |since: Instant| self.idle_timeout.is_some_and(|t| now.duration_since(since) >= t);
        for p in &self.expected {
            if !self.clocks.contains_key(p) && !idle(self.started) {
                return None;
            }
        }
        let active = self.clocks.values().filter(|c| !idle(c.last_data)).map(|c| c.max).min();
        active.or_else(|| self.clocks.values().map(|c| c.max).max())
    }

    /// Each partition's largest event time, for the epoch's commit: after
    /// a restart the slowest partition still holds the watermark back
    /// where it would have in an uninterrupted run.
    pub fn clocks(&self) -> serde_json::Value {
        self.clocks
            .iter()
            .map(|(p, c)| (p.to_string(), serde_json::Value::from(c.max)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// Restores [`Tracker::clocks`]; their idle time counts from now.
    pub fn restore_clocks(&mut self, saved: &serde_json::Value) {
        let now = Instant::now();
        if let Some(saved) = saved.as_object() {
            for (p, max) in saved {
                if let (Ok(p), Some(max)) = (p.parse::<i32>(), max.as_i64()) {
                    self.clocks.insert(p, PartitionClock { max, last_data: now });
                }
            }
        }
    }

    /// Whether [`Tracker::advance`] would move the watermark now: an idle
    /// partition can release it without any new row arriving.
    pub fn would_advance(&self, now: Instant) -> bool {
        match (self.candidate(now), self.current) {
            (Some(candidate), Some(current)) => candidate > current,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Moves the committed watermark forward (end of an epoch).
    pub fn advance(&mut self, now: Instant) -> Option<i64> {
        if let Some(candidate) = self.candidate(now) {
            self.current = Some(self.current.map_or(candidate, |c| c.max(candidate)));
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(idle_timeout: Option<Duration>, expected: Vec<i32>) -> Tracker {
        Tracker {
            plan: LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
                produce_one_row: false,
                schema: std::sync::Arc::new(datafusion::common::DFSchema::empty()),
            }),
            partitioned: true,
            idle_timeout,
            clocks: BTreeMap::new(),
            expected,
            started: Instant::now(),
            current: None,
        }
    }

    fn see(t: &mut Tracker, partition: i32, max: i64, at: Instant) {
        t.clocks.insert(partition, PartitionClock { max, last_data: at });
    }

    #[test]
    fn slowest_partition_holds_the_watermark() {
        let now = Instant::now();
        let mut t = tracker(None, vec![0, 1]);
        see(&mut t, 0, 100, now);
        assert_eq!(t.advance(now), None, "partition 1 has no data yet");
        see(&mut t, 1, 40, now);
        assert_eq!(t.advance(now), Some(40));
        see(&mut t, 1, 30, now);
        assert_eq!(t.advance(now), Some(40), "never moves back");
    }

    #[test]
    fn idle_partition_stops_holding_it_back() {
        let start = Instant::now();
        let mut t = tracker(Some(Duration::from_secs(10)), vec![0, 1, 2]);
        see(&mut t, 0, 100, start);
        see(&mut t, 1, 50, start);
        assert_eq!(t.advance(start), None, "partition 2 not idle yet");
        let later = start + Duration::from_secs(11);
        see(&mut t, 0, 200, later);
        // 1 and 2 have been quiet for 11 s: only 0 counts.
        assert_eq!(t.advance(later), Some(200));
    }

    #[test]
    fn partition_clocks_survive_a_restart() {
        let now = Instant::now();
        let mut before = tracker(None, vec![0, 1]);
        see(&mut before, 0, 100, now);
        see(&mut before, 1, 50, now);
        assert_eq!(before.advance(now), Some(50));
        let mut after = tracker(None, vec![0, 1]);
        after.current = before.current;
        after.restore_clocks(&before.clocks());
        // Partition 0 runs ahead again: partition 1's 50 still holds it.
        see(&mut after, 0, 300, now);
        assert_eq!(after.advance(now), Some(50));
    }

    #[test]
    fn a_quiet_stream_releases_its_highest_partition() {
        let start = Instant::now();
        let mut t = tracker(Some(Duration::from_secs(10)), vec![0, 1]);
        see(&mut t, 0, 100, start);
        see(&mut t, 1, 50, start);
        assert_eq!(t.advance(start), Some(50));
        assert!(t.would_advance(start + Duration::from_secs(11)));
        assert_eq!(t.advance(start + Duration::from_secs(11)), Some(100));
    }
}
