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
//!
//! This file finds and checks the join in a plan; `state` holds the
//! buffers and the operator that runs the join epoch by epoch.

use std::sync::Arc;

use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
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
        let missing: Vec<&str> =
            [&left_def, &right_def].iter().filter(|s| s.watermark.is_none()).map(|s| s.name.as_str()).collect();
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
            what: format!(
                "a join of streams {left} and {right} without {missing} between {left}.{left_ts} and {right}.{right_ts}"
            ),
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
        let traced =
            |side: &LogicalPlan, ts: &str| side.schema().index_of_column(c).is_ok_and(|i| is_stream_column(side, i, ts));
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
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Plus, right }) => {
            match (time_term(left, side_of), literal_micros(right)) {
                (Some((s, o)), Some(d)) => Some((s, o.checked_add(d)?)),
                _ => match (literal_micros(left), time_term(right, side_of)) {
                    (Some(d), Some((s, o))) => Some((s, o.checked_add(d)?)),
                    _ => None,
                },
            }
        }
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
            if index < width { is_stream_column(&j.left, index, ts) } else { is_stream_column(&j.right, index - width, ts) }
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

/// A batch's event-time column as microseconds.
pub(super) fn micros_of(batch: &RecordBatch, column: usize) -> DFResult<TimestampMicrosecondArray> {
    let times = cast(batch.column(column), &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    times
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .cloned()
        .ok_or_else(|| datafusion::error::DataFusionError::Internal("event time column".into()))
}

pub mod state;
