//! Statement execution: one dispatch match, one file per statement kind.
//! Each handler returns an [`Output`]; the pgwire layer turns it into
//! protocol messages.

pub mod alter_streaming;
pub mod create_query;
pub mod create_stream;
pub mod create_table;
pub mod describe;
pub mod drop_streaming;
pub mod drop_table;
pub mod explain_streaming;
pub mod maintenance;
pub mod query;
pub mod session;
pub mod show_create;
pub mod show_streaming;
pub mod show_tables;
pub mod unwind;
pub mod views;

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use crate::engine::Engine;
use crate::error::QueryError;
use crate::session::SessionVars;
use crate::sql::{Statement, TransactionKind};

/// What a statement produced.
pub enum Output {
    /// Rows, streamed batch by batch to the client.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// A command tag such as `CREATE EXTERNAL TABLE` or `INSERT 0 5`, with
    /// notices for the client where the statement skipped work (`IF NOT
    /// EXISTS`, `IF EXISTS`), as PostgreSQL sends them.
    Command {
        tag: String,
        rows: Option<usize>,
        notices: Vec<Notice>,
    },
    Transaction(TransactionKind),
}

/// A NOTICE: its SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub code: &'static str,
    pub message: String,
}

impl Output {
    fn command(tag: &str) -> Output {
        Output::Command { tag: tag.to_string(), rows: None, notices: Vec::new() }
    }

    /// `CREATE ... IF NOT EXISTS` that found `name` taken: PostgreSQL's
    /// notice (42P07), and the command's tag.
    fn exists_skipping(tag: &str, name: &str) -> Output {
        let notice = Notice { code: "42P07", message: format!("relation \"{name}\" already exists, skipping") };
        Output::Command { tag: tag.to_string(), rows: None, notices: vec![notice] }
    }

    /// `DROP ... IF EXISTS` that found some names missing: PostgreSQL's
    /// notice (00000) for each, naming the kind of object, and the tag.
    fn missing_skipping(tag: &str, kind: &str, missing: &[String]) -> Output {
        let notices = missing
            .iter()
            .map(|name| Notice { code: "00000", message: format!("{kind} \"{name}\" does not exist, skipping") })
            .collect();
        Output::Command { tag: tag.to_string(), rows: None, notices }
    }

    /// Rows already in memory (catalog listings, SHOW results).
    fn batch(batch: RecordBatch) -> Output {
        let schema = batch.schema();
        let stream = futures::stream::iter(vec![Ok(batch)]);
        Output::Rows { schema: schema.clone(), stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)) }
    }
}

/// Runs one parsed statement for a session. A panic on the way is this
/// statement's error (see [`unwind`]), not the connection's end.
pub async fn execute(engine: &Engine, vars: &mut SessionVars, stmt: Statement) -> Result<Output, QueryError> {
    match unwind::catch(dispatch(engine, vars, stmt), unwind::internal).await? {
        Output::Rows { schema, stream } => {
            Ok(Output::Rows { schema, stream: unwind::guard_stream(stream, unwind::internal) })
        }
        other => Ok(other),
    }
}

async fn dispatch(engine: &Engine, vars: &mut SessionVars, stmt: Statement) -> Result<Output, QueryError> {
    match stmt {
        Statement::CreateExternalTable(cmd) => create_table::handle(engine, cmd).await,
        Statement::ShowTables => show_tables::handle(engine),
        Statement::Describe(name) => describe::handle(engine, &name).await,
        Statement::ShowCreateTable(name) => show_create::handle(engine, &name),
        Statement::DropTable { names, if_exists, cascade } => drop_table::handle(engine, &names, if_exists, cascade).await,
        Statement::CreateView(view) => views::create(engine, *view).await,
        Statement::DropView { names, if_exists, cascade } => views::drop(engine, &names, if_exists, cascade).await,
        Statement::Set { name, value, tag } => session::set(vars, &name, value, tag),
        Statement::ResetAll => session::reset_all(vars),
        Statement::Show(name) => session::show(vars, &name),
        Statement::Transaction(kind) => Ok(Output::Transaction(kind)),
        Statement::NoOp(tag) => Ok(Output::command(tag)),
        Statement::Query(stmt) => {
            let plan = query::plan(engine, vars, stmt).await?;
            query::run(engine, vars, plan).await
        }
        Statement::CreateStream(ddl) => create_stream::handle(engine, *ddl).await,
        Statement::CreateContinuousQuery(cq) => create_query::handle(engine, cq).await,
        Statement::ShowStreaming(kind) => show_streaming::handle(engine, kind),
        Statement::ShowCreateStreaming(kind, name) => show_streaming::show_create(engine, kind, &name),
        Statement::DropStreaming { kind, names, if_exists, cascade } => {
            drop_streaming::handle(engine, kind, &names, if_exists, cascade).await
        }
        Statement::AlterStreaming { kind, name, action } => alter_streaming::handle(engine, kind, &name, action).await,
        Statement::Maintenance(statement) => maintenance::handle(engine, statement).await,
        Statement::ExplainContinuousQuery(cq) => explain_streaming::explain_create(engine, &cq).await,
        Statement::ExplainStreaming(kind, name) => explain_streaming::explain_existing(engine, kind, &name),
    }
}

/// The result schema of a statement that is not a DataFusion query, known
/// without running it (for the extended protocol's Describe).
pub fn result_schema(stmt: &Statement) -> Option<SchemaRef> {
    match stmt {
        Statement::ShowTables => Some(show_tables::schema()),
        Statement::Describe(_) => Some(describe::schema()),
        Statement::ShowCreateTable(_) => Some(show_create::schema()),
        Statement::Show(name) => Some(session::show_schema(name)),
        Statement::ShowStreaming(kind) => Some(show_streaming::schema(*kind)),
        Statement::ShowCreateStreaming(..) => Some(show_streaming::show_create_schema()),
        Statement::ExplainContinuousQuery(_) | Statement::ExplainStreaming(..) => Some(explain_streaming::schema()),
        Statement::Maintenance(statement) => Some(maintenance::schema(statement)),
        _ => None,
    }
}

pub use crate::sql::table_key;

/// The catalog entry of the sink or materialized view `name`: 42P01 when
/// there is none, 42809 when `name` is another kind of relation.
fn continuous_query_def(
    engine: &Engine,
    kind: crate::sql::StreamingKind,
    name: &datafusion::sql::sqlparser::ast::ObjectName,
) -> Result<crate::catalog::RelationDef, QueryError> {
    use crate::catalog::RelationKind;
    let wanted = match kind {
        crate::sql::StreamingKind::MaterializedView => RelationKind::MaterializedView,
        _ => RelationKind::Sink,
    };
    let key = table_key(name)?;
    match engine.catalog.get(&key)? {
        Some(def) if def.kind == wanted => Ok(def),
        Some(def) => Err(QueryError::WrongObjectType(format!(
            "'{key}' is {}, not a {}",
            def.kind.described(),
            kind.sql_name().to_lowercase()
        ))),
        None => Err(crate::error::CatalogError::UnknownRelation { kind: kind.sql_name().to_lowercase(), name: key }.into()),
    }
}

pub(crate) fn text_schema(columns: &[&str]) -> SchemaRef {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    Arc::new(Schema::new(columns.iter().map(|c| Field::new(*c, DataType::Utf8, true)).collect::<Vec<_>>()))
}

/// A batch of text columns; every row has one value per column.
pub(crate) fn text_batch(schema: SchemaRef, rows: Vec<Vec<String>>) -> Result<RecordBatch, QueryError> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    let columns: Vec<ArrayRef> = (0..schema.fields().len())
        .map(|i| Arc::new(rows.iter().map(|r| Some(r[i].as_str())).collect::<StringArray>()) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(schema, columns).map_err(datafusion::error::DataFusionError::from)?)
}
