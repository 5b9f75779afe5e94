//! Window-aligned queries: evaluated once per closed window, over the rows
//! kept for it. This is what runs queries that combine windows, where a
//! window's result is only known once all of it is there: Nexmark q5 (the
//! bid count per auction per HOP window, joined with the highest count of
//! the same window), q7 (the bids that equal their TUMBLE window's
//! highest price) and q8 (the persons and sellers of the same TUMBLE
//! window, joined):
//!
//! ```sql
//! SELECT B.auction, B.price FROM bid B
//! JOIN (SELECT max(price) AS maxprice, window_end FROM TUMBLE(bid, date_time, INTERVAL '10 seconds')
//!       GROUP BY window_end) W
//!   ON B.price = W.maxprice
//!  AND B.date_time BETWEEN W.window_end - INTERVAL '10 seconds' AND W.window_end
//! ```
//!
//! Each stream's on-time rows are kept. When the watermark (the lower of
//! the streams') passes the end of windows, the query's own plan runs once
//! over the kept rows with every TUMBLE/HOP producing only those windows;
//! rows then leave once no open window can use them. Every result row
//! comes from exactly one window, so it is written once (append), and
//! DataFusion does all the relational work: several aggregation levels,
//! joins of aggregations, a stream read more than once.
//!
//! That is correct when nothing mixes windows, which [`analyze`] checks:
//!
//! * every TUMBLE/HOP has the same size and slide, so a window closes at
//!   once in every part of the query;
//! * every aggregation groups by `window_start` or `window_end`;
//! * a join of two windowed sides equates their windows;
//! * a stream read without a window (q7's bids) is joined to a window
//!   with a time bound between its event time and the window, on the
//!   side a join does not keep unmatched: that bound says how long after a
//!   window's end its rows may still come (the evaluation waits for the
//!   watermark to pass it) and how long a row stays needed.
//!
//! This file decides and checks; `state` keeps the rows and runs the
//! evaluations epoch by epoch.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::Column;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{Expr, JoinType, LogicalPlan, Operator};

use super::definition::StreamDef;
use super::join::{aggregates, comparisons, is_stream_scan, time_term};
use super::planning::{reads_stream, scanned_tables};
use super::window::{WindowKind, WindowTable};
use crate::error::QueryError;

/// What [`analyze`] found.
#[derive(Debug, Clone)]
pub struct AlignedShape {
    /// The windows' size and slide (microseconds), shared by all of them.
    pub size: i64,
    pub slide: i64,
    /// How long after a window's end it waits before being evaluated
    /// (microseconds): rows of a stream read without a window may join it
    /// until then. 0 when every stream is read through windows.
    pub delay: i64,
    /// Per stream read: how long after its event time a row is still
    /// needed (microseconds), and the columns some part of the query reads
    /// (the others are not kept).
    pub streams: HashMap<String, KeptRows>,
}

#[derive(Debug, Clone, Default)]
pub struct KeptRows {
    pub keep: i64,
    pub columns: Vec<usize>,
}

/// Which window column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Start,
    End,
}

/// Where an output column of a plan comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Window(Edge),
    /// A stream's own event-time column, read without a window.
    EventTime,
}

/// A scan of a stream: through a window, or of its rows as they are.
enum StreamScan {
    Window { stream: String, kind: WindowKind, size: i64, slide: i64, time: String },
    Rows { stream: String },
}

fn stream_scan(scan: &datafusion::logical_expr::TableScan) -> Option<StreamScan> {
    if !is_stream_scan(scan) {
        return None;
    }
    let provider = datafusion::datasource::source_as_provider(&scan.source).ok()?;
    let any: &dyn std::any::Any = provider.as_ref();
    Some(match any.downcast_ref::<WindowTable>() {
        Some(w) => StreamScan::Window {
            stream: w.stream.clone(),
            kind: w.kind,
            size: w.size,
            slide: w.slide,
            time: w.time_column_name().to_string(),
        },
        None => StreamScan::Rows { stream: scan.table_name.table().to_string() },
    })
}

fn scans(plan: &LogicalPlan) -> Vec<StreamScan> {
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            found.extend(stream_scan(scan));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn has_window(plan: &LogicalPlan) -> bool {
    scans(plan).iter().any(|s| matches!(s, StreamScan::Window { .. }))
}

/// Whether a query needs window-aligned evaluation: it reads a stream
/// more than once, aggregates more than once, or joins an aggregation of
/// a stream with another stream. (A join of two streams' rows, windowed
/// or not, runs as a stream-stream join: see join.rs.)
///
/// `aggregations` counts the aggregations of the query as written.
pub fn wanted(plan: &LogicalPlan, streams: &[String], aggregations: usize) -> bool {
    let scanned = scanned_tables(plan);
    if streams.iter().any(|s| scanned.iter().filter(|t| *t == s).count() > 1) {
        return true;
    }
    let mut window_join = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(j) = node
            && reads_stream(&j.left)
            && reads_stream(&j.right)
        {
            window_join |= aggregates(&j.left) || aggregates(&j.right);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    aggregations > 1 || window_join
}

/// The stream aggregated on one side of a join with another stream.
fn aggregated_join_side(plan: &LogicalPlan) -> Option<String> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Join(j) = node
            && reads_stream(&j.left)
            && reads_stream(&j.right)
        {
            let side = [&j.left, &j.right].into_iter().find(|side| aggregates(side));
            found = side.and_then(|side| scanned_tables(side).into_iter().next());
        }
        Ok(if found.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

fn refuse(what: impl Into<String>, hint: impl Into<String>) -> QueryError {
    QueryError::UnsupportedWithHint { what: what.into(), hint: hint.into() }
}

const ALIGNED_HINT: &str = "a continuous query that reads a stream more than once, aggregates more than once or joins a window is evaluated window by window: read the streams through TUMBLE or HOP windows of one size, GROUP BY window_start or window_end, and join windows on equal window_start";

/// Checks that `plan` can be evaluated window by window (see the module
/// comment) and finds its windows, delay and kept rows.
pub fn analyze(plan: &LogicalPlan, streams: &[Arc<StreamDef>]) -> Result<AlignedShape, QueryError> {
    let all = scans(plan);
    let mut window: Option<(i64, i64)> = None;
    for scan in &all {
        match scan {
            StreamScan::Window { kind: WindowKind::Session, .. } => {
                return Err(refuse("SESSION windows in a query that combines windows", ALIGNED_HINT));
            }
            StreamScan::Window { size, slide, .. } => match window {
                None => window = Some((*size, *slide)),
                Some(w) if w != (*size, *slide) => {
                    return Err(refuse(
                        "windows of different sizes or slides in one continuous query",
                        "every TUMBLE and HOP of a query that combines windows must have the same size and slide, so that a window closes at once in every part of the query",
                    ));
                }
                Some(_) => {}
            },
            StreamScan::Rows { .. } => {}
        }
    }
    let Some((size, slide)) = window else {
        let scanned = scanned_tables(plan);
        let twice = streams.iter().find(|s| scanned.iter().filter(|t| **t == s.name).count() > 1);
        let what = match (twice, aggregated_join_side(plan)) {
            (Some(s), _) => format!("reading stream '{}' twice in one continuous query without windows", s.name),
            (None, Some(side)) => format!("joining an aggregation of stream {side} with another stream, without windows"),
            (None, None) => "more than one aggregation level over a stream without windows".into(),
        };
        return Err(refuse(what, ALIGNED_HINT));
    };
    let event_time: HashMap<&str, &str> =
        streams.iter().filter_map(|s| s.watermark.as_ref().map(|(c, _)| (s.name.as_str(), c.as_str()))).collect();
    for s in streams {
        if s.watermark.is_none() {
            return Err(refuse(
                format!("windows of stream {} in a query that combines windows, without a watermark", s.name),
                format!(
                    "a window is evaluated when the watermark passes its end: declare WATERMARK FOR <col> AS <col> - INTERVAL '...' on {}",
                    s.name
                ),
            ));
        }
    }

    // Windows close by the watermark, which follows the WATERMARK column:
    // windows over another column would close by the wrong clock.
    for scan in &all {
        if let StreamScan::Window { stream, time, .. } = scan
            && let Some(ts) = event_time.get(stream.as_str()).filter(|ts| **ts != time.as_str())
        {
            return Err(refuse(
                format!(
                    "windows of stream {stream} over '{time}', which is not its WATERMARK column '{ts}', in a query that combines windows"
                ),
                format!(
                    "a window is evaluated when the watermark passes its end: window over {ts}, or declare WATERMARK FOR {time}"
                ),
            ));
        }
    }
    let mut delay: i64 = 0;
    let mut kept: HashMap<String, KeptRows> = HashMap::new();
    let mut keep = |stream: &str, micros: i64| {
        let entry = kept.entry(stream.to_string()).or_default();
        entry.keep = entry.keep.max(micros);
    };
    for scan in &all {
        if let StreamScan::Window { stream, .. } = scan {
            keep(stream, size);
        }
    }
    let raw_total = all.iter().filter(|s| matches!(s, StreamScan::Rows { .. })).count();
    let mut raw_joined = 0;
    let mut problem: Option<QueryError> = None;
    let _ = plan.apply_with_subqueries(|node| {
        let checked = match node {
            LogicalPlan::Aggregate(a) if reads_stream(node) => check_aggregate(a, &event_time),
            LogicalPlan::Distinct(_) if reads_stream(node) => {
                Err(refuse("SELECT DISTINCT in a query that combines windows", "write it as GROUP BY with window_start"))
            }
            LogicalPlan::Join(j) if reads_stream(&j.left) && reads_stream(&j.right) => {
                check_join(j, size, &event_time).map(|rows| {
                    // Rows read without a window, joined to one: their bound
                    // delays the window and says how long they are kept.
                    if let Some(RowsJoined { streams, lower, upper }) = rows {
                        delay = delay.max(upper.saturating_add(1));
                        for stream in streams {
                            raw_joined += 1;
                            keep(&stream, lower.saturating_neg());
                        }
                    }
                })
            }
            _ => Ok(()),
        };
        match checked {
            Err(e) => {
                problem = Some(e);
                Ok(TreeNodeRecursion::Stop)
            }
            Ok(()) => Ok(TreeNodeRecursion::Continue),
        }
    });
    if let Some(e) = problem {
        return Err(e);
    }
    if raw_joined < raw_total {
        return Err(refuse(
            "a stream read without a window in a query that combines windows, other than joined to a window",
            "read it through the same TUMBLE or HOP as the rest of the query, or join its rows to a window with a time bound",
        ));
    }
    // The columns each stream's scans read; the event time always.
    for (stream, projection) in read_columns(plan) {
        let Some(def) = streams.iter().find(|s| s.name == stream) else { continue };
        // A window's scan also has window_start and window_end, after the stream's columns.
        let width = def.spec.schema.fields().len();
        let entry = kept.entry(stream).or_default();
        match projection {
            Some(p) => entry.columns.extend(p.into_iter().filter(|&c| c < width)),
            None => entry.columns.extend(0..width),
        }
        if let Some(ts) = event_time.get(def.name.as_str()).and_then(|ts| def.spec.schema.index_of(ts).ok()) {
            entry.columns.push(ts);
        }
        entry.columns.sort_unstable();
        entry.columns.dedup();
    }
    Ok(AlignedShape { size, slide, delay, streams: kept })
}

/// Where column `c` of `plan` comes from (see [`origin`]).
fn trace(plan: &LogicalPlan, c: &Column, event_time: &HashMap<&str, &str>) -> Option<Origin> {
    plan.schema().index_of_column(c).ok().and_then(|i| origin(plan, i, event_time))
}

/// An aggregation must group by its window, so that each window's result
/// is final when the window closes.
fn check_aggregate(a: &datafusion::logical_expr::Aggregate, event_time: &HashMap<&str, &str>) -> Result<(), QueryError> {
    let by_window = a.group_expr.iter().any(|g| match g {
        Expr::Column(c) => matches!(trace(&a.input, c, event_time), Some(Origin::Window(_))),
        _ => false,
    });
    match by_window {
        true => Ok(()),
        false => Err(refuse(
            "an aggregation that does not group by window_start or window_end, in a query that combines windows",
            "GROUP BY the window (window_start or window_end), so that each window's result is final when it closes",
        )),
    }
}

/// The raw-row side of a join of rows with a window: its streams' scans
/// and `[lower, upper]` of `rows.ts - window_end`.
struct RowsJoined {
    streams: Vec<String>,
    lower: i64,
    upper: i64,
}

/// A join of two streams' sides: two windowed sides must meet on equal
/// windows; rows read without a window must meet a window with a time
/// bound, on a side the join does not keep unmatched.
fn check_join(
    j: &datafusion::logical_expr::Join,
    size: i64,
    event_time: &HashMap<&str, &str>,
) -> Result<Option<RowsJoined>, QueryError> {
    let left_windowed = match (has_window(&j.left), has_window(&j.right)) {
        (true, true) => {
            let edge = |e: &Expr, side: &LogicalPlan| match e {
                Expr::Column(c) => match trace(side, c, event_time) {
                    Some(Origin::Window(edge)) => Some(edge),
                    _ => None,
                },
                _ => None,
            };
            let same_window = comparisons(j).iter().any(|(x, op, y)| {
                let left_right = edge(x, &j.left).zip(edge(y, &j.right));
                let right_left = edge(x, &j.right).zip(edge(y, &j.left));
                *op == Operator::Eq && left_right.or(right_left).is_some_and(|(a, b)| a == b)
            });
            return match same_window {
                true => Ok(None),
                false => Err(refuse(
                    "a join of two windowed inputs without equal windows",
                    "join windows with each other on the window: add a.window_start = b.window_start to the ON condition",
                )),
            };
        }
        (false, false) => {
            return Err(refuse(
                "a join of streams read without windows, in a query that combines windows",
                "read the streams through TUMBLE or HOP and join them on window_start",
            ));
        }
        (left_windowed, _) => left_windowed,
    };
    let (rows_side, window_side) = if left_windowed { (&j.right, &j.left) } else { (&j.left, &j.right) };
    let keeps_rows_side = match j.join_type {
        JoinType::Inner => false,
        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => !left_windowed,
        JoinType::Right | JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => left_windowed,
        JoinType::Full => true,
    };
    if keeps_rows_side {
        return Err(refuse(
            format!("a {} JOIN that writes a stream's rows without their window", j.join_type.to_string().to_uppercase()),
            "join a stream's rows to a window with an INNER join, or keep the window's side (window LEFT JOIN stream)",
        ));
    }
    let Some((lower, upper)) = rows_bound(j, rows_side, window_side, size, event_time) else {
        return Err(refuse(
            "a stream's rows joined to a window without a time bound between them",
            "bound the rows' event time by the window in the join, e.g. B.date_time BETWEEN W.window_end - INTERVAL '10 seconds' AND W.window_end: that says which window a row can meet, and how long to keep it",
        ));
    };
    let streams = scans(rows_side)
        .into_iter()
        .filter_map(|scan| match scan {
            StreamScan::Rows { stream } => Some(stream),
            StreamScan::Window { .. } => None,
        })
        .collect();
    Ok(Some(RowsJoined { streams, lower, upper }))
}

/// Each stream scan's stream and the columns it reads (None: all).
fn read_columns(plan: &LogicalPlan) -> Vec<(String, Option<Vec<usize>>)> {
    let mut found = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && let Some(StreamScan::Window { stream, .. } | StreamScan::Rows { stream }) = stream_scan(scan)
        {
            found.push((stream, scan.projection.clone()));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// `[lower, upper]` of `rows.ts - window_end` from a join's conditions.
fn rows_bound(
    join: &datafusion::logical_expr::Join,
    rows_side: &LogicalPlan,
    window_side: &LogicalPlan,
    size: i64,
    event_time: &HashMap<&str, &str>,
) -> Option<(i64, i64)> {
    #[derive(Clone, Copy)]
    enum Term {
        Rows,
        Window(Edge),
    }
    let side_of = |c: &Column| -> Option<Term> {
        let on = |side: &LogicalPlan| side.schema().index_of_column(c).ok().and_then(|i| origin(side, i, event_time));
        match (on(rows_side), on(window_side)) {
            (Some(Origin::EventTime), _) => Some(Term::Rows),
            (_, Some(Origin::Window(edge))) => Some(Term::Window(edge)),
            _ => None,
        }
    };
    // A window_start term is its window_end less the size.
    let to_end = |edge: Edge, offset: i64| if edge == Edge::Start { offset.checked_sub(size) } else { Some(offset) };
    let mut lower: Option<i64> = None;
    let mut upper: Option<i64> = None;
    for (x, op, y) in comparisons(join) {
        let (Some((tx, ox)), Some((ty, oy))) = (time_term(&x, &side_of), time_term(&y, &side_of)) else { continue };
        // Written as rows.ts  op  window_end + d.
        let (op, d) = match (tx, ty) {
            (Term::Rows, Term::Window(edge)) => (op, to_end(edge, oy).and_then(|oy| oy.checked_sub(ox))),
            (Term::Window(edge), Term::Rows) => match op.swap() {
                Some(swapped) => (swapped, to_end(edge, ox).and_then(|ox| ox.checked_sub(oy))),
                None => continue,
            },
            _ => continue,
        };
        let Some(d) = d else { continue };
        let raise = |b: &mut Option<i64>| *b = Some(b.map_or(d, |old: i64| old.max(d)));
        let cut = |b: &mut Option<i64>| *b = Some(b.map_or(d, |old: i64| old.min(d)));
        match op {
            Operator::GtEq | Operator::Gt => raise(&mut lower),
            Operator::LtEq | Operator::Lt => cut(&mut upper),
            Operator::Eq => {
                raise(&mut lower);
                cut(&mut upper);
            }
            _ => {}
        }
    }
    match (lower, upper) {
        (Some(l), Some(u)) if l <= u => Some((l, u)),
        _ => None,
    }
}

/// Where output column `index` of `plan` comes from: a window's start or
/// end, or a stream's event time read without a window; followed through
/// renames, filters, group keys and joins.
fn origin(plan: &LogicalPlan, index: usize, event_time: &HashMap<&str, &str>) -> Option<Origin> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let name = scan.projected_schema.fields().get(index)?.name().clone();
            match stream_scan(scan)? {
                StreamScan::Window { .. } => match name.as_str() {
                    "window_start" => Some(Origin::Window(Edge::Start)),
                    "window_end" => Some(Origin::Window(Edge::End)),
                    _ => None,
                },
                StreamScan::Rows { stream } => {
                    (event_time.get(stream.as_str()) == Some(&name.as_str())).then_some(Origin::EventTime)
                }
            }
        }
        LogicalPlan::SubqueryAlias(a) => origin(&a.input, index, event_time),
        LogicalPlan::Filter(f) => origin(&f.input, index, event_time),
        LogicalPlan::Repartition(r) => origin(&r.input, index, event_time),
        LogicalPlan::Projection(p) => {
            let source = match p.expr.get(index)? {
                Expr::Column(c) => c,
                Expr::Alias(a) => match a.expr.as_ref() {
                    Expr::Column(c) => c,
                    _ => return None,
                },
                _ => return None,
            };
            origin(&p.input, p.input.schema().index_of_column(source).ok()?, event_time)
        }
        LogicalPlan::Aggregate(a) => match a.group_expr.get(index)? {
            Expr::Column(c) => origin(&a.input, a.input.schema().index_of_column(c).ok()?, event_time),
            _ => None,
        },
        // A column from the side an outer join pads with NULLs is not the
        // window any more: its NULL rows of every window would group
        // together (as one row per evaluation).
        LogicalPlan::Join(j) => {
            let left_width = j.left.schema().fields().len();
            match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => origin(&j.left, index, event_time),
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => origin(&j.right, index, event_time),
                JoinType::Full => None,
                JoinType::Right if index < left_width => None,
                JoinType::Left if index >= left_width => None,
                _ if index < left_width => origin(&j.left, index, event_time),
                _ => origin(&j.right, index - left_width, event_time),
            }
        }
        _ => None,
    }
}

pub mod state;
