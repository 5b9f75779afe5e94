//! Continuous queries as DataFusion plans. A query is planned once against
//! a context where its stream is a [`ChunkTable`]: a table whose contents are
//! the current micro-batch. Each epoch puts a chunk in the slot and executes
//! the plan again, so DataFusion does all the relational work and weir only
//! moves chunks. Static tables resolve through the shared catalog, so a
//! stream-static join sees files that landed since the last chunk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider, SchemaProvider, Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Query, Statement as SqlStatement};

use crate::catalog::{DATABASE, SCHEMA};
use crate::error::QueryError;

/// The current chunk of a stream, as a table.
#[derive(Debug)]
pub struct ChunkTable {
    schema: SchemaRef,
    /// Filled by the runner before each execution, emptied after.
    slot: Arc<Mutex<Vec<RecordBatch>>>,
    /// Window-aligned queries (see `aligned`): the windows an evaluation
    /// closes, as (after, up to) bounds on `window_end`; window functions
    /// over this stream produce only those. None: every window.
    closing: Mutex<Option<ClosingWindows>>,
}

/// Windows whose end is after `.0` (when set) and at most `.1`.
pub type ClosingWindows = (Option<i64>, i64);

impl ChunkTable {
    pub fn new(schema: SchemaRef) -> (Arc<ChunkTable>, Arc<Mutex<Vec<RecordBatch>>>) {
        let slot = Arc::new(Mutex::new(Vec::new()));
        (Arc::new(ChunkTable { schema, slot: slot.clone(), closing: Mutex::new(None) }), slot)
    }

    /// The chunk being processed (cheap: batches share their buffers).
    pub fn current(&self) -> DFResult<Vec<RecordBatch>> {
        Ok(self.slot.lock().map_err(|_| DataFusionError::Internal("chunk slot poisoned".into()))?.clone())
    }

    pub fn closing(&self) -> Option<ClosingWindows> {
        self.closing.lock().ok().and_then(|c| *c)
    }

    pub fn set_closing(&self, windows: Option<ClosingWindows>) {
        if let Ok(mut c) = self.closing.lock() {
            *c = windows;
        }
    }
}

#[async_trait]
impl TableProvider for ChunkTable {
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
        Ok(MemorySourceConfig::try_new_exec(&[self.current()?], self.schema.clone(), projection.cloned())?)
    }
}

/// How a stream looks to ad-hoc queries: its schema (for DESCRIBE and
/// catalog listings), and a clear refusal to be scanned.
#[derive(Debug)]
pub struct StreamTable {
    pub name: String,
    pub schema: SchemaRef,
}

#[async_trait]
impl TableProvider for StreamTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::External(Box::new(QueryError::UnsupportedWithHint {
            what: format!("an ad-hoc SELECT from stream '{}'", self.name),
            hint: "a stream is unbounded: read it with CREATE SINK ... AS SELECT or CREATE MATERIALIZED VIEW, then query that table".into(),
        })))
    }
}

/// The shared `public` schema with some names answered by other tables.
#[derive(Debug)]
struct OverlaySchema {
    base: Arc<dyn SchemaProvider>,
    overlay: HashMap<String, Arc<dyn TableProvider>>,
}

#[async_trait]
impl SchemaProvider for OverlaySchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.base.table_names();
        names.extend(self.overlay.keys().filter(|k| !self.base.table_exist(k)).cloned());
        names
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        match self.overlay.get(name) {
            Some(t) => Ok(Some(t.clone())),
            None => self.base.table(name).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.overlay.contains_key(name) || self.base.table_exist(name)
    }
}

/// A context for one continuous query: the shared catalog, with `streams`
/// (name → chunk table) in front, and the window functions TUMBLE, HOP and
/// SESSION over them. One partition: parallelism comes from decoding and
/// writing running beside the plan, and from running queries side by side,
/// not from splitting a chunk.
pub fn query_context(
    shared: &SessionContext,
    streams: HashMap<String, Arc<ChunkTable>>,
) -> Result<SessionContext, QueryError> {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(DATABASE, SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_target_partitions(1)
        .with_information_schema(false);
    config.options_mut().execution.time_zone = Some("+00:00".to_string());
    let ctx = SessionContext::new_with_config_rt(config, shared.runtime_env());
    // One count(DISTINCT x) stays one aggregation, whose partial state (the
    // distinct values per group) merges across chunks; the optimizer would
    // split it into two levels, which the incremental aggregation cannot
    // run and which would read as two aggregations.
    ctx.remove_optimizer_rule("single_distinct_aggregation_to_group_by");
    crate::functions::register(&ctx);
    let base = shared
        .catalog(DATABASE)
        .and_then(|c| c.schema(SCHEMA))
        .ok_or_else(|| QueryError::Unsupported("a query context without the weir catalog".into()))?;
    use super::window::{WindowFunction, WindowKind};
    for (name, kind) in [("tumble", WindowKind::Tumble), ("hop", WindowKind::Hop), ("session", WindowKind::Session)] {
        ctx.register_udtf(name, Arc::new(WindowFunction { kind, streams: streams.clone() }));
    }
    let overlay = streams.into_iter().map(|(name, t)| (name, t as Arc<dyn TableProvider>)).collect();
    let catalog = MemoryCatalogProvider::new();
    catalog.register_schema(SCHEMA, Arc::new(OverlaySchema { base, overlay }))?;
    ctx.register_catalog(DATABASE, Arc::new(catalog));
    Ok(ctx)
}

/// Plans `query` in `ctx`.
pub async fn plan_query(ctx: &SessionContext, query: &Query) -> Result<LogicalPlan, QueryError> {
    let mut statement = SqlStatement::Query(Box::new(query.clone()));
    // Table functions are looked up by their exact name: let TUMBLE, HOP
    // and SESSION be written in any case, like other SQL functions.
    let _ = datafusion::sql::sqlparser::ast::visit_relations_mut(&mut statement, |name| {
        if let [datafusion::sql::sqlparser::ast::ObjectNamePart::Identifier(ident)] = name.0.as_mut_slice() {
            {
                let lower = ident.value.to_ascii_lowercase();
                if ident.quote_style.is_none() && matches!(lower.as_str(), "tumble" | "hop" | "session") {
                    ident.value = lower;
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    let _ = datafusion::sql::sqlparser::ast::VisitMut::visit(&mut statement, &mut AliasWindowsByStream);
    let stmt = DFStatement::Statement(Box::new(statement));
    let plan = ctx.state().statement_to_plan(stmt).await?;
    Ok(plan)
}

/// Names a window function's rows after its stream unless aliased, as
/// RisingWave and Flink do: `FROM HOP(bid, ...)` then `bid.auction` (Nexmark
/// q5 is written so). DataFusion would call them `"hop()"`.
struct AliasWindowsByStream;

impl datafusion::sql::sqlparser::ast::VisitorMut for AliasWindowsByStream {
    type Break = ();

    fn pre_visit_table_factor(
        &mut self,
        factor: &mut datafusion::sql::sqlparser::ast::TableFactor,
    ) -> std::ops::ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{
            Expr as SqlExpr, FunctionArg, FunctionArgExpr, ObjectNamePart, TableAlias, TableFactor,
        };
        if let TableFactor::Table { name, alias: alias @ None, args: Some(args), .. } = factor {
            let is_window = matches!(name.0.as_slice(), [ObjectNamePart::Identifier(f)] if matches!(f.value.as_str(), "tumble" | "hop" | "session"));
            let stream = match args.args.first() {
                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(ident)))) => Some(ident.clone()),
                _ => None,
            };
            if let (true, Some(stream)) = (is_window, stream) {
                *alias = Some(TableAlias { explicit: true, name: stream, columns: Vec::new(), at: None });
            }
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// The tables a plan scans, subqueries included; a window function counts
/// as a scan of its stream.
pub fn scanned_tables(plan: &LogicalPlan) -> Vec<String> {
    crate::catalog::scans::scanned_tables_named(plan, |scan| {
        datafusion::datasource::source_as_provider(&scan.source).ok().and_then(|p| {
            let any: &dyn std::any::Any = p.as_ref();
            any.downcast_ref::<super::window::WindowTable>().map(|w| w.stream.clone())
        })
    })
}

/// The window function a plan reads, if any, with its size (the gap for
/// SESSION), in microseconds.
pub fn window_of(plan: &LogicalPlan) -> Option<(super::window::WindowKind, i64)> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            let window = datafusion::datasource::source_as_provider(&scan.source).ok().and_then(|p| {
                let any: &dyn std::any::Any = p.as_ref();
                any.downcast_ref::<super::window::WindowTable>().map(|w| (w.kind, w.size))
            });
            if window.is_some() {
                found = window;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Whether a plan reads a stream's chunk (directly or through a window).
pub(super) fn reads_stream(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = datafusion::common::tree_node::TreeNode::apply(plan, |node| {
        if let LogicalPlan::TableScan(scan) = node {
            found |= super::join::is_stream_scan(scan);
        }
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// What a continuous query's plan needs from the runtime.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// It aggregates (GROUP BY, aggregates, DISTINCT): state across epochs.
    pub aggregates: bool,
    /// How many aggregations read a stream (more than one only runs
    /// window by window, see `aligned`).
    pub aggregations: usize,
    /// The window size when it reads TUMBLE/HOP (microseconds). None for
    /// SESSION: a session has no fixed length, its end is kept per group.
    pub window_size: Option<i64>,
    /// The gap when it reads SESSION (microseconds): the aggregation merges
    /// sessions (it finds this itself in the plan it runs).
    pub session_gap: Option<i64>,
}

/// Rejects what a continuous query cannot do, by name, and says what it
/// needs: no window functions, ORDER BY or LIMIT (a continuous result has
/// no order and no end).
pub fn check_shape(plan: &LogicalPlan) -> Result<Shape, QueryError> {
    let mut problem = None;
    let mut shape = Shape::default();
    let mut aggregates = 0;
    let _ = plan.apply_with_subqueries(|node| {
        let what = match node {
            // The aggregation weir keeps state for is the stream's; one over
            // tables alone would be mistaken for it.
            LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) if !reads_stream(node) => {
                Some("an aggregation over tables alone (e.g. a GROUP BY subquery of a table joined with the stream; land it as a table first: COPY (SELECT ...) TO '<dir>/part.parquet' STORED AS PARQUET and CREATE EXTERNAL TABLE over <dir>)")
            }
            LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => {
                aggregates += 1;
                None
            }
            LogicalPlan::Window(_) => Some("a window function (OVER)"),
            LogicalPlan::Sort(_) => Some("ORDER BY"),
            LogicalPlan::Limit(_) => Some("LIMIT / OFFSET"),
            // Each chunk runs the plan again: rows that come from tables
            // alone (a UNION branch, the kept side of an outer join) would
            // be written again for every chunk.
            LogicalPlan::Union(u) if !u.inputs.iter().all(|i| reads_stream(i)) => {
                Some("a UNION of a stream with rows of tables or VALUES")
            }
            LogicalPlan::Join(j) => {
                use datafusion::logical_expr::JoinType::*;
                let (keeps_left, keeps_right) = match j.join_type {
                    Inner => (false, false),
                    Left | LeftSemi | LeftAnti | LeftMark => (true, false),
                    Right | RightSemi | RightAnti | RightMark => (false, true),
                    Full => (true, true),
                };
                let table_kept = (keeps_left && !reads_stream(&j.left)) || (keeps_right && !reads_stream(&j.right));
                table_kept.then_some("an outer join that keeps a table's unmatched rows (write the stream on the kept side: stream LEFT JOIN table)")
            }
            _ => None,
        };
        if let Some(what) = what {
            problem = Some(what);
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Some(what) = problem {
        return Err(QueryError::Unsupported(format!("{what} in a continuous query")));
    }
    shape.aggregations = aggregates;
    shape.aggregates = aggregates >= 1;
    match window_of(plan) {
        Some((super::window::WindowKind::Session, gap)) => shape.session_gap = Some(gap),
        Some((_, size)) => shape.window_size = Some(size),
        None => {}
    }
    if shape.session_gap.is_some() && !shape.aggregates {
        return Err(QueryError::UnsupportedWithHint {
            what: "SESSION without an aggregation".into(),
            hint: "rows only form sessions when grouped: GROUP BY window_start, window_end and the session key (e.g. GROUP BY window_start, window_end, user_id)".into(),
        });
    }
    Ok(shape)
}
