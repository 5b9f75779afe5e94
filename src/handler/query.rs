//! Everything DataFusion plans: SELECT, EXPLAIN, COPY TO, INSERT. DDL that
//! would create in-memory (unpersisted) objects is refused by name.

use std::path::Path;

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{ExprSchema, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use std::collections::HashMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::parser::{ExplainStatement, Statement as DFStatement};
use futures::StreamExt;

use super::Output;
use crate::catalog::Catalog;
use crate::catalog::diagnose;
use crate::catalog::scans::scanned_tables;
use crate::engine::Engine;
use crate::error::QueryError;
use crate::session::{self, SessionVars};
use crate::sql::{scalar_subqueries, search_path};
use crate::storage::s3;

/// Plans a statement for this session; placeholders (`$1`) stay in the plan.
pub async fn plan(engine: &Engine, vars: &SessionVars, stmt: DFStatement) -> Result<LogicalPlan, QueryError> {
    super::unwind::catch(plan_unguarded(engine, vars, stmt), super::unwind::internal).await
}

async fn plan_unguarded(engine: &Engine, vars: &SessionVars, stmt: DFStatement) -> Result<LogicalPlan, QueryError> {
    let stmt = resolve_copy_target(engine, stmt).await?;
    let state = engine.session_state(vars)?;
    let stmt = follow_search_path(&state, vars, stmt);
    let mut plan = state.statement_to_plan(stmt.clone()).await?;
    if scalar_subqueries::has_scalar_subquery(&stmt) {
        // DataFusion refuses unaggregated correlated scalar subqueries in its
        // analyzer (at execution); find out now and re-plan them aggregated.
        let analyzed = state.analyzer().execute_and_check(plan.clone(), state.config_options(), |_, _| {});
        if let Err(e) = analyzed
            && scalar_subqueries::is_unaggregated_subquery_error(&e.to_string())
        {
            let mut retry = stmt;
            if scalar_subqueries::aggregate_scalar_subqueries(&mut retry) {
                plan = state.statement_to_plan(retry).await?;
            }
        }
    }
    check_writes(engine, &plan)?;
    match &plan {
        LogicalPlan::Ddl(ddl) => Err(QueryError::Unsupported(ddl.name().to_string())),
        LogicalPlan::Statement(s) => Err(QueryError::Unsupported(s.name().to_string())),
        _ => Ok(plan),
    }
}

/// A `COPY ... TO` target (also under `EXPLAIN`) resolved by the sandbox:
/// relative targets land in the data directory, like relative LOCATIONs,
/// not wherever the server happened to be started, and no target leaves
/// the allowed roots. DataFusion then writes exactly the resolved path.
/// An `s3://` target's bucket is asked (and its client configured from the
/// environment, unless a table configured it) as a LOCATION's is.
async fn resolve_copy_target(engine: &Engine, stmt: DFStatement) -> Result<DFStatement, QueryError> {
    match stmt {
        DFStatement::CopyTo(copy) => Ok(DFStatement::CopyTo(resolve_copy(engine, copy).await?)),
        DFStatement::Explain(ExplainStatement { options, statement }) => {
            let statement = match *statement {
                DFStatement::CopyTo(copy) => DFStatement::CopyTo(resolve_copy(engine, copy).await?),
                other => other,
            };
            Ok(DFStatement::Explain(ExplainStatement { options, statement: Box::new(statement) }))
        }
        other => Ok(other),
    }
}

async fn resolve_copy(
    engine: &Engine,
    mut copy: datafusion::sql::parser::CopyToStatement,
) -> Result<datafusion::sql::parser::CopyToStatement, QueryError> {
    if copy.stored_as.is_none() && Path::new(&copy.target).extension().is_none() {
        // DataFusion would say so with a configuration error (XX000).
        return Err(QueryError::Syntax(format!(
            "COPY ... TO '{}' needs STORED AS PARQUET, CSV or JSON: the target has no file extension to tell the format from",
            copy.target
        )));
    }
    if s3::is_s3(&copy.target) {
        let dir = s3::resolve(&engine.sandbox, &copy.target, &Default::default()).await?;
        s3::attach(engine.context().runtime_env().as_ref(), &dir)?;
        // The scheme as the object store is registered under.
        copy.target = format!("s3://{}", &copy.target[5..]);
    } else {
        copy.target = engine.sandbox.resolve(&copy.target)?.display().to_string();
    }
    Ok(copy)
}

/// Every file a plan writes (`COPY`, also under `EXPLAIN ANALYZE`) must be
/// allowed: checked on the plan, whatever the statement looked like.
fn check_writes(engine: &Engine, plan: &LogicalPlan) -> Result<(), QueryError> {
    let mut refused = None;
    let _ = plan.apply(|node| {
        if let LogicalPlan::Copy(copy) = node {
            let target = Path::new(&copy.output_url);
            // A path DataFusion got unresolved is relative to the process;
            // a bucket must be one a LOCATION or COPY target has resolved.
            let checked = match (copy.output_url.contains("://"), std::path::absolute(target)) {
                _ if s3::is_s3(&copy.output_url) => s3::S3Dir::parse(&copy.output_url)
                    .and_then(|dir| s3::configured_or_refuse(&dir.bucket).map(|_| ()))
                    .map_err(|e| match e {
                        QueryError::Access(e) => e,
                        other => crate::error::AccessError::Unresolvable {
                            location: copy.output_url.clone(),
                            reason: other.message(),
                        },
                    }),
                (false, Ok(absolute)) => engine.sandbox.resolve(&absolute.display().to_string()).map(|_| ()),
                _ => engine.sandbox.resolve(&copy.output_url).map(|_| ()),
            };
            if let Err(e) = checked {
                refused = Some(e);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match refused {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `stmt` with its unqualified table names qualified by the session's
/// `search_path` (see `sql::search_path`); as written under the default path.
fn follow_search_path(state: &SessionState, vars: &SessionVars, mut stmt: DFStatement) -> DFStatement {
    let Some(path) = session::search_path(vars) else {
        return stmt;
    };
    let exists = |schema: &str, table: &str| {
        state.schema_for_ref(TableReference::partial(schema, table)).is_ok_and(|s| s.table_exist(table))
    };
    search_path::qualify(&mut stmt, &path, &exists);
    stmt
}

/// Runs a planned statement. Queries stream; writes run to completion first
/// so that a later statement in the same batch sees their files. A panic
/// while it runs, or while its rows stream, is its error and names the
/// Parquet file behind it when one of the scanned tables has a bad file.
pub async fn run(engine: &Engine, vars: &SessionVars, plan: LogicalPlan) -> Result<Output, QueryError> {
    let scanned = scanned_tables(&plan);
    let catalog = engine.catalog.clone();
    let explain = move |message: String| panic_culprit(&catalog, &scanned, message);
    let output = super::unwind::catch(run_unguarded(engine, vars, plan), explain.clone()).await?;
    Ok(match output {
        Output::Rows { schema, stream } => Output::Rows { schema, stream: super::unwind::guard_stream(stream, explain) },
        other => other,
    })
}

async fn run_unguarded(engine: &Engine, vars: &SessionVars, plan: LogicalPlan) -> Result<Output, QueryError> {
    let state = engine.session_state(vars)?;
    let write_tag = match &plan {
        LogicalPlan::Copy(_) => Some("COPY"),
        LogicalPlan::Dml(dml) => Some(match dml.op {
            WriteOp::Insert(_) => "INSERT",
            WriteOp::Delete => "DELETE",
            WriteOp::Update => "UPDATE",
            WriteOp::Ctas => "SELECT",
            WriteOp::Truncate => "TRUNCATE",
            _ => "DML",
        }),
        _ => None,
    };
    let scanned = scanned_tables(&plan);
    let temporal = involves_temporal(&plan);
    let df = DataFrame::new(state, plan);
    if let Some(tag) = write_tag {
        let batches = df.collect().await.map_err(|e| diagnose(engine, &scanned, temporal, e))?;
        let rows = batches
            .iter()
            .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>().map(|a| a.iter().flatten().sum::<u64>()))
            .sum::<u64>();
        return Ok(Output::Command { tag: tag.to_string(), rows: Some(rows as usize), notices: Vec::new() });
    }
    let stream = df.execute_stream().await.map_err(|e| diagnose(engine, &scanned, temporal, e))?;
    let schema = stream.schema();
    // Only a failing batch looks anything up; healthy batches pass through.
    let catalog = engine.catalog.clone();
    let stream = stream.map(move |batch| {
        batch.map_err(|e| match parquet_culprit(&catalog, &scanned, &e).or_else(|| datetime_overflow(temporal, &e)) {
            Some(ours) => DataFusionError::External(Box::new(ours)),
            None => e,
        })
    });
    Ok(Output::Rows { schema: schema.clone(), stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)) })
}

/// The type of each `$n` parameter, in order: DataFusion's inference, else
/// the type the query casts it to (`$1::BIGINT`), as PostgreSQL infers it.
pub fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, QueryError> {
    let mut cast_types: HashMap<String, DataType> = HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        let _ = node.apply_expressions(|expr| {
            let _ = expr.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e
                    && let Expr::Placeholder(p) = expr.as_ref()
                {
                    cast_types.entry(p.id.clone()).or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            });
            Ok(TreeNodeRecursion::Continue)
        });
        Ok(TreeNodeRecursion::Continue)
    });
    // Positional: `$k` is slot k-1 even when some `$j` does not occur.
    let mut types: Vec<Option<DataType>> = Vec::new();
    for (name, inferred) in plan.get_parameter_types()? {
        let Some(k) = name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|k| *k >= 1) else {
            continue;
        };
        if types.len() < k {
            types.resize(k, None);
        }
        types[k - 1] = inferred.or_else(|| cast_types.get(&name).cloned());
    }
    Ok(types)
}

/// The error for a statement that panicked: internal, and naming the first
/// unreadable Parquet file of the tables it scanned, if there is one.
fn panic_culprit(catalog: &Catalog, scanned: &[String], message: String) -> QueryError {
    match scanned_culprit(catalog, scanned, "") {
        Some(bad) => super::unwind::internal(format!("{}; {message}", bad.message())),
        None => super::unwind::internal(message),
    }
}

fn diagnose(engine: &Engine, scanned: &[String], temporal: bool, e: DataFusionError) -> QueryError {
    parquet_culprit(&engine.catalog, scanned, &e).or_else(|| datetime_overflow(temporal, &e)).unwrap_or_else(|| e.into())
}

/// Arrow reports an interval or timestamp overflow like any other
/// (`2147483647 + 1`); in a plan that computes with such values it is
/// PostgreSQL's datetime_field_overflow (22008), not a numeric one.
fn datetime_overflow(temporal: bool, e: &DataFusionError) -> Option<QueryError> {
    (temporal && crate::error::is_arithmetic_overflow(e)).then(|| {
        QueryError::DatetimeOverflow(format!("interval or timestamp out of range: {}", crate::error::datafusion_message(e)))
    })
}

/// Whether any expression of the plan holds an interval, timestamp, date
/// or time: a literal of such a type, or a column of one.
fn involves_temporal(plan: &LogicalPlan) -> bool {
    let temporal = |t: &DataType| {
        matches!(
            t,
            DataType::Interval(_)
                | DataType::Timestamp(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Time32(_)
                | DataType::Time64(_)
                | DataType::Duration(_)
        )
    };
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        let schemas: Vec<_> = node.inputs().iter().map(|i| i.schema().clone()).chain([node.schema().clone()]).collect();
        let _ = node.apply_expressions(|expr| {
            expr.apply(|e| {
                found |= match e {
                    Expr::Literal(value, _) => temporal(&value.data_type()),
                    Expr::Column(c) => schemas.iter().any(|s| s.field_from_column(c).is_ok_and(|f| temporal(f.data_type()))),
                    _ => false,
                };
                Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
            })
        });
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found
}

/// When a scan of `scanned` tables fails on a Parquet file (a corrupt
/// footer or page, or a column whose type differs from the table's), find
/// which file so the error names it. Runs on the error path only.
fn parquet_culprit(catalog: &Catalog, scanned: &[String], e: &DataFusionError) -> Option<QueryError> {
    let text = e.to_string();
    if !text.to_ascii_lowercase().contains("parquet") && !text.contains("Cannot cast column '") {
        return None;
    }
    scanned_culprit(catalog, scanned, &text)
}

fn scanned_culprit(catalog: &Catalog, scanned: &[String], error: &str) -> Option<QueryError> {
    let defs = catalog.list().ok()?;
    defs.iter().filter(|d| scanned.contains(&d.name)).find_map(|d| diagnose::culprit(&d.location, error))
}
