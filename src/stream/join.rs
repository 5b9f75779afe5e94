//! Stream-stream joins with a time bound, e.g. ad impressions joined with
//! the clicks that follow within an hour:
//!
//! ```sql
//! SELECT i.ad_id, i.ts, c.ts AS clicked_at
//! FROM impressions i LEFT JOIN clicks c
//!   ON c.ad_id = i.ad_id AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '1 hour'
//! ```
//!
//! Both sides are kept in state as Arrow batches. A chunk of one side runs
//! the query's own plan with that side's slot holding the new rows and the
//! other side's slot holding everything buffered for it, so DataFusion does
//! the join and each matching pair comes out exactly once: when the later
//! of its two rows arrives. The time bound and the watermarks bound the
//! state: with `right.ts - left.ts` in `[lower, upper]`,
//!
//! * a left row can still meet a future right row (event time at least the
//!   right watermark) only while `left.ts + upper >= right watermark`;
//! * a right row can still meet a future left row only while
//!   `right.ts - lower >= left watermark`.
//!
//! Older rows are evicted at the end of an epoch. For a LEFT JOIN, a left
//! row evicted without a match is written then, padded with NULLs: the
//! query's plan is rerun with that join turned into an anti join over the
//! right buffer, which still holds every right row the left row could have
//! met (right rows are kept until no buffered left row can reach them).

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Join, JoinType, LogicalPlan, Operator, Projection};

use super::definition::StreamDef;
use super::planning::scanned_tables;
use crate::error::QueryError;

type DFResult<T> = datafusion::error::Result<T>;


/// Which rows the join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    /// Every left row, with NULLs when no right row matched in time.
    LeftOuter,
}

/// What [`analyze`] found: which stream is on which side, and the bound.
#[derive(Debug, Clone)]
pub struct JoinShape {
    pub kind: JoinKind,
    /// The stream on the join's left, then the one on its right.
    pub streams: [String; 2],
    /// `right.ts - left.ts` lies in `[lower, upper]` (microseconds).
    pub lower: i64,
    pub upper: i64,
}

fn example_bound(left: &str, right: &str) -> String {
    format!("{right}.ts BETWEEN {left}.ts AND {left}.ts + INTERVAL '1 hour'")
}

/// The join between the two streams `names` in `plan`.
fn find_join<'a>(plan: &'a LogicalPlan, names: &[String]) -> Option<(&'a Join, String, String)> {
    let mut found = None;
    let _ = plan.apply(|node| {
        if let LogicalPlan::Join(join) = node {
            let streams_in = |p: &LogicalPlan| -> Vec<String> {
                let mut s: Vec<String> = scanned_tables(p).into_iter().filter(|t| names.contains(t)).collect();
                s.sort();
                s.dedup();
                s
            };
            if let ([l], [r]) = (streams_in(&join.left).as_slice(), streams_in(&join.right).as_slice()) {
                found = Some((join, l.clone(), r.clone()));
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Finds the join of two streams in an optimized plan and checks it can
/// run with bounded state: watermarks on both streams, a time bound in the
/// condition, an inner or left outer join.
pub fn analyze(plan: &LogicalPlan, streams: &[Arc<StreamDef>]) -> Result<JoinShape, QueryError> {
    let names: Vec<String> = streams.iter().map(|s| s.name.clone()).collect();
    let Some((join, left, right)) = find_join(plan, &names) else {
        return Err(QueryError::UnsupportedWithHint {
            what: format!("reading streams {} without joining them", names.join(" and ")),
            hint: "a continuous query reads one stream, or joins two streams on a key and a time bound".into(),
        });
    };
    let kind = match join.join_type {
        JoinType::Inner => JoinKind::Inner,
        JoinType::Left => JoinKind::LeftOuter,
        JoinType::Right => {
            return Err(QueryError::UnsupportedWithHint {
                what: "RIGHT JOIN of two streams".into(),
                hint: format!("write it as {right} LEFT JOIN {left}"),
            });
        }
        other => {
            return Err(QueryError::UnsupportedWithHint {
                what: format!("{} join of two streams", other.to_string().to_uppercase()),
                hint: "stream-stream joins are INNER or LEFT OUTER".into(),
            });
        }
    };
    let def = |name: &str| streams.iter().find(|s| s.name == name).cloned();
    let (Some(left_def), Some(right_def)) = (def(&left), def(&right)) else {
        return Err(QueryError::Unsupported("a join of unknown streams".into()));
    };
    let (Some((left_ts, _)), Some((right_ts, _))) = (&left_def.watermark, &right_def.watermark) else {
        let missing: Vec<&str> = [&left_def, &right_def]
            .iter()
            .filter(|s| s.watermark.is_none())
            .map(|s| s.name.as_str())
            .collect();
        return Err(QueryError::UnsupportedWithHint {
            what: format!("a join of streams {left} and {right} without a watermark on {}", missing.join(" and ")),
            hint: format!(
                "without watermarks both sides would be kept forever; declare WATERMARK FOR <col> AS <col> - INTERVAL '...' on {}, and bound the join in time in its ON condition (e.g. {})",
                missing.join(" and "),
                example_bound(&left, &right)
            ),
        });
    };
    let (lower, upper) = time_bound(join, left_ts, right_ts);
    let (Some(lower), Some(upper)) = (lower, upper) else {
        let missing = match (lower, upper) {
            (None, None) => "a time bound",
            (None, Some(_)) => "a lower time bound",
            _ => "an upper time bound",
        };
        return Err(QueryError::UnsupportedWithHint {
            what: format!("a join of streams {left} and {right} without {missing} between {left}.{left_ts} and {right}.{right_ts}"),
            hint: format!(
                "bound the join in time in its ON condition, e.g. {}: with the watermarks, that is what lets weir forget old rows",
                example_bound(&left, &right)
            ),
        });
    };
    if lower > upper {
        return Err(QueryError::Unsupported(format!("a time bound that no pair of rows of {left} and {right} can meet")));
    }
    Ok(JoinShape { kind, streams: [left, right], lower, upper })
}

/// Whether a side aggregates a stream (an aggregated static table is rows
/// like any other table's). A join with such a side runs window by window
/// (aligned.rs): join buffers hold rows, not aggregation state.
pub(super) fn aggregates(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        found |= matches!(node, LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_)) && super::planning::reads_stream(node);
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// `[lower, upper]` of `right.ts - left.ts` implied by the join's
/// conjuncts (ON pairs and filter).
fn time_bound(join: &Join, left_ts: &str, right_ts: &str) -> (Option<i64>, Option<i64>) {
    // Only the stream's own event-time column counts, traced through
    // renames: a computed column that happens to be called `ts` (or
    // another table's `ts`) would give a bound that drops pairs.
    let side_of = |c: &Column| -> Option<Side> {
        let traced = |side: &LogicalPlan, ts: &str| side.schema().index_of_column(c).is_ok_and(|i| is_stream_column(side, i, ts));
        if traced(&join.left, left_ts) {
            Some(Side::Left)
        } else if traced(&join.right, right_ts) {
            Some(Side::Right)
        } else {
            None
        }
    };
    let mut lower: Option<i64> = None;
    let mut upper: Option<i64> = None;
    let mut apply = |op: Operator, value: i64| {
        let raise = |b: &mut Option<i64>, v: i64| *b = Some(b.map_or(v, |old: i64| old.max(v)));
        let cut = |b: &mut Option<i64>, v: i64| *b = Some(b.map_or(v, |old: i64| old.min(v)));
        match op {
            Operator::GtEq => raise(&mut lower, value),
            // `>` and `<` are taken as `>=` and `<=`: a bound a hair wide
            // keeps a row a little longer; a narrow one would drop pairs.
            Operator::Gt => raise(&mut lower, value),
            Operator::LtEq => cut(&mut upper, value),
            Operator::Lt => cut(&mut upper, value),
            Operator::Eq => {
                raise(&mut lower, value);
                cut(&mut upper, value);
            }
            _ => {}
        }
    };
    for (x, op, y) in comparisons(join) {
        let (Some((sx, ox)), Some((sy, oy))) = (time_term(&x, &side_of), time_term(&y, &side_of)) else { continue };
        match (sx, sy) {
            // right + ox  op  left + oy   ⇔   right - left  op  oy - ox
            (Side::Right, Side::Left) => {
                if let Some(v) = oy.checked_sub(ox) {
                    apply(op, v)
                }
            }
            // left + ox  op  right + oy   ⇔   right - left  op'  ox - oy
            (Side::Left, Side::Right) => {
                if let (Some(flipped), Some(v)) = (op.swap(), ox.checked_sub(oy)) {
                    apply(flipped, v)
                }
            }
            _ => {}
        }
    }
    (lower, upper)
}

/// A join's conditions as comparisons `x op y`: its equi-join pairs, and
/// the comparisons among its filter's conjuncts (BETWEEN as two).
pub(super) fn comparisons(join: &Join) -> Vec<(Expr, Operator, Expr)> {
    let mut comparisons: Vec<(Expr, Operator, Expr)> = Vec::new();
    for (l, r) in &join.on {
        comparisons.push((l.clone(), Operator::Eq, r.clone()));
    }
    if let Some(filter) = &join.filter {
        for conjunct in split_conjunction(filter) {
            match conjunct {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => comparisons.push((*left.clone(), *op, *right.clone())),
                Expr::Between(between) if !between.negated => {
                    comparisons.push((*between.expr.clone(), Operator::GtEq, *between.low.clone()));
                    comparisons.push((*between.expr.clone(), Operator::LtEq, *between.high.clone()));
                }
                _ => {}
            }
        }
    }
    comparisons
}

/// `ts`, `ts + INTERVAL ...`, `ts - INTERVAL ...` (through casts) as
/// (what `side_of` says the column is, offset in microseconds).
pub(super) fn time_term<T: Copy>(expr: &Expr, side_of: &dyn Fn(&Column) -> Option<T>) -> Option<(T, i64)> {
    match expr {
        Expr::Column(c) => side_of(c).map(|s| (s, 0)),
        // Only casts that keep every microsecond: CAST(ts AS DATE) = ...
        // says nothing about how far apart the two times are.
        Expr::Cast(c) if keeps_micros(c.field.data_type()) => time_term(&c.expr, side_of),
        Expr::TryCast(c) if keeps_micros(c.field.data_type()) => time_term(&c.expr, side_of),
        Expr::Alias(a) => time_term(&a.expr, side_of),
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Plus, right }) => match (time_term(left, side_of), literal_micros(right)) {
            (Some((s, o)), Some(d)) => Some((s, o.checked_add(d)?)),
            _ => match (literal_micros(left), time_term(right, side_of)) {
                (Some(d), Some((s, o))) => Some((s, o.checked_add(d)?)),
                _ => None,
            },
        },
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Minus, right }) => {
            let (s, o) = time_term(left, side_of)?;
            Some((s, o.checked_sub(literal_micros(right)?)?))
        }
        _ => None,
    }
}

/// An interval or duration literal of fixed length, in microseconds; an
/// absurd one gives no bound (refused), never a wrapped one.
fn literal_micros(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(v, _) => super::window::fixed_micros(v),
        Expr::Cast(c) => literal_micros(&c.expr),
        _ => None,
    }
}

fn keeps_micros(to: &DataType) -> bool {
    matches!(to, DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _))
}

/// Whether output column `index` of `plan` is the stream's column `ts`
/// itself: followed down through aliases, filters, plain column
/// projections and joins to the scan.
fn is_stream_column(plan: &LogicalPlan, index: usize, ts: &str) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => {
            scan.projected_schema.fields().get(index).is_some_and(|f| f.name() == ts) && is_stream_scan(scan)
        }
        LogicalPlan::SubqueryAlias(a) => is_stream_column(&a.input, index, ts),
        LogicalPlan::Filter(f) => is_stream_column(&f.input, index, ts),
        LogicalPlan::Projection(p) => {
            let source = match p.expr.get(index) {
                Some(Expr::Column(c)) => c,
                Some(Expr::Alias(a)) => match a.expr.as_ref() {
                    Expr::Column(c) => c,
                    _ => return false,
                },
                _ => return false,
            };
            p.input.schema().index_of_column(source).is_ok_and(|i| is_stream_column(&p.input, i, ts))
        }
        LogicalPlan::Join(j) => {
            let width = j.left.schema().fields().len();
            if index < width {
                is_stream_column(&j.left, index, ts)
            } else {
                is_stream_column(&j.right, index - width, ts)
            }
        }
        _ => false,
    }
}

/// A scan of a stream's chunk (or of a window function over it).
pub(super) fn is_stream_scan(scan: &datafusion::logical_expr::TableScan) -> bool {
    datafusion::datasource::source_as_provider(&scan.source).is_ok_and(|p| {
        let any: &dyn std::any::Any = p.as_ref();
        any.is::<super::planning::ChunkTable>() || any.is::<super::window::WindowTable>()
    })
}

/// The two plans a LEFT JOIN of streams runs, both with the join's own
/// output schema so everything above it runs unchanged: per chunk, the
/// join as an INNER join (a left row without a match yet may still get
/// one); at eviction, an anti join padded with NULLs (the left rows that
/// never met a right row).
pub fn left_outer_plans(plan: &LogicalPlan, names: &[String]) -> DFResult<(LogicalPlan, LogicalPlan)> {
    Ok((rewrite_join(plan, names, JoinType::Inner)?, rewrite_join(plan, names, JoinType::LeftAnti)?))
}

fn rewrite_join(plan: &LogicalPlan, names: &[String], join_type: JoinType) -> DFResult<LogicalPlan> {
    let Some((target, _, _)) = find_join(plan, names) else {
        return Err(datafusion::error::DataFusionError::Internal("stream join not found".into()));
    };
    let target = target.clone();
    let rewritten = plan.clone().transform_up(|node| {
        let LogicalPlan::Join(join) = &node else { return Ok(Transformed::no(node)) };
        if *join != target {
            return Ok(Transformed::no(node));
        }
        let replaced = Join::try_new(
            join.left.clone(),
            join.right.clone(),
            join.on.clone(),
            join.filter.clone(),
            join_type,
            join.join_constraint,
            join.null_equality,
            false,
        )?;
        let replaced_schema = replaced.schema.clone();
        let mut exprs = Vec::with_capacity(join.schema.fields().len());
        for (i, (qualifier, field)) in join.schema.iter().enumerate() {
            if i < replaced_schema.fields().len() {
                exprs.push(Expr::Column(Column::new(qualifier.cloned(), field.name())));
            } else {
                let null = ScalarValue::try_from(field.data_type())?;
                exprs.push(Expr::Literal(null, None).alias_qualified(qualifier.cloned(), field.name()));
            }
        }
        let padded = Projection::try_new_with_schema(exprs, Arc::new(LogicalPlan::Join(replaced)), join.schema.clone())?;
        Ok(Transformed::new(LogicalPlan::Projection(padded), true, TreeNodeRecursion::Stop))
    })?;
    Ok(rewritten.data)
}

/// Both sides' buffered rows.
pub struct JoinState {
    pub shape: JoinShape,
    /// Each side's event-time column in its stream's schema.
    time_columns: [usize; 2],
    schemas: [SchemaRef; 2],
    buffers: [Vec<RecordBatch>; 2],
}

/// A batch's event-time column as microseconds.
pub(super) fn micros_of(batch: &RecordBatch, column: usize) -> DFResult<TimestampMicrosecondArray> {
    let times = cast(batch.column(column), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    times
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .cloned()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("event time column".into()))
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
        let one = |side: usize| super::snapshot::write(&self.schemas[side], &self.buffers[side], watermarks[side]);
        Ok([one(0)?, one(1)?])
    }

    /// Restores one side from [`JoinState::snapshot`]; returns its watermark.
    pub fn restore(&mut self, side: usize, bytes: &[u8]) -> DFResult<Option<i64>> {
        let (rows, watermark) = super::snapshot::read(&self.schemas[side], bytes)?;
        self.buffers[side] = rows;
        Ok(watermark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{Field, Schema};

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
            vec![
                Arc::new(Int64Array::from(times.to_vec())),
                Arc::new(TimestampMicrosecondArray::from(times.to_vec())),
            ],
        )
        .unwrap()
    }

    fn state(kind: JoinKind, lower: i64, upper: i64) -> JoinState {
        let schema = batch(&[]).schema();
        JoinState { shape: shape(kind, lower, upper), time_columns: [1, 1], schemas: [schema.clone(), schema], buffers: [Vec::new(), Vec::new()] }
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
        let packed = super::super::snapshot::pack(&[b"", &left, &right]);
        let sections = super::super::snapshot::unpack(&packed).unwrap();
        assert_eq!(sections.len(), 3);
        let mut restored = state(JoinKind::Inner, 0, 60);
        assert_eq!(restored.restore(0, sections[1]).unwrap(), Some(7));
        assert_eq!(restored.restore(1, sections[2]).unwrap(), None);
        assert_eq!(ids(&restored.buffers[0]), vec![1, 2]);
        assert!(super::super::snapshot::unpack(b"ARROW1").is_none());
    }
}
