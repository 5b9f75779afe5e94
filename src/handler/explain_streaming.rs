//! `EXPLAIN CREATE SINK | MATERIALIZED VIEW ...` (planned, nothing created)
//! and `EXPLAIN SINK | MATERIALIZED VIEW name`: one text column, `QUERY
//! PLAN`, one row per line, as PostgreSQL's EXPLAIN answers.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key, text_batch, text_schema};
use crate::engine::Engine;
use crate::error::QueryError;
use crate::sql::{CreateContinuousQuery, StreamingKind};

pub fn schema() -> SchemaRef {
    text_schema(&["QUERY PLAN"])
}

pub async fn explain_create(engine: &Engine, cq: &CreateContinuousQuery) -> Result<Output, QueryError> {
    let name = table_key(&cq.name)?;
    lines(engine.streams.explain(&name, cq).await?)
}

pub fn explain_existing(engine: &Engine, kind: StreamingKind, name: &ObjectName) -> Result<Output, QueryError> {
    let def = super::continuous_query_def(engine, kind, name)?;
    lines(engine.streams.explain_running(&def.name)?)
}

fn lines(lines: Vec<String>) -> Result<Output, QueryError> {
    Ok(Output::batch(text_batch(schema(), lines.into_iter().map(|l| vec![l]).collect())?))
}
