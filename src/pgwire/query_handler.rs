//! Simple and extended query protocol handlers over the statement handlers.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, DEFAULT_NAME, PgWireConnectionState, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::Execute;

use super::cancel::{CancelSignal, Cancellers};
use super::encode::{encode_batch, field_infos};
use super::params::decode_params;
use crate::engine::Engine;
use crate::error::QueryError;
use crate::handler::{self, Output, query};
use crate::sql::{Statement, TransactionKind};
use crate::types::pg_type;

pub struct WeirHandler {
    engine: Arc<Engine>,
    parser: Arc<WeirQueryParser>,
    cancellers: Arc<Cancellers>,
}

impl WeirHandler {
    pub fn new(engine: Arc<Engine>, cancellers: Arc<Cancellers>) -> WeirHandler {
        WeirHandler { parser: Arc::new(WeirQueryParser { engine: engine.clone() }), engine, cancellers }
    }
}

/// A statement prepared by the extended protocol's Parse. Queries are
/// planned at Parse so Describe can report parameter and result types.
#[derive(Clone, Debug)]
pub struct Prepared {
    statement: Statement,
    plan: Option<LogicalPlan>,
    /// DataFusion's inferred type of each `$n`, in order.
    param_types: Vec<Option<DataType>>,
    schema: Option<SchemaRef>,
}

pub struct WeirQueryParser {
    engine: Arc<Engine>,
}

#[async_trait]
impl QueryParser for WeirQueryParser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.engine.parser.parse(sql).map_err(|e| to_pg_error(&e))?;
        if statements.len() > 1 {
            return Err(user_error("42601", "cannot insert multiple commands into a prepared statement".into()));
        }
        let Some(statement) = statements.pop() else { return Ok(None) };
        if let Statement::Query(stmt) = &statement {
            let plan = query::plan(&self.engine, client.metadata(), stmt.clone()).await.map_err(|e| to_pg_error(&e))?;
            let param_types = query::parameter_types(&plan).map_err(|e| to_pg_error(&e))?;
            let schema = Arc::new(plan.schema().as_arrow().clone());
            return Ok(Some(Prepared { statement, param_types, schema: Some(schema), plan: Some(plan) }));
        }
        let schema = handler::result_schema(&statement);
        Ok(Some(Prepared { statement, plan: None, param_types: vec![], schema }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.iter().map(|t| t.as_ref().map(pg_type).unwrap_or(Type::TEXT)).collect())
    }

    fn get_result_schema(&self, stmt: &Prepared, format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &stmt.schema {
            Some(schema) => field_infos(schema, format.unwrap_or(&Format::UnifiedText)),
            None => vec![],
        })
    }
}

#[async_trait]
impl SimpleQueryHandler for WeirHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = self.engine.parser.parse(query).map_err(|e| to_pg_error(&e))?;
        let mut responses = Vec::with_capacity(statements.len());
        // One signal for the whole query: each statement's rows stream only
        // after every statement has started, so a cancel must reach them all.
        let query_signal = self.cancellers.begin(client);
        for statement in statements {
            // Reads can be cancelled; statements that change state (DDL,
            // COPY, INSERT, starting a continuous query) run to their end.
            let mut signal = reads_only(&statement).then(|| query_signal.clone());
            let work = handler::execute(&self.engine, client.metadata_mut(), statement);
            let result = match signal.as_mut() {
                Some(signal) => signal.race(work).await,
                None => Ok(work.await),
            };
            match result {
                Ok(Ok(output)) => {
                    // Sent now, ahead of the responses pgwire writes once
                    // every statement has run: right for the usual single
                    // statement, early for a later one of several.
                    send_notices(client, notices_of(&output)).await?;
                    responses.push(to_response(output, &Format::UnifiedText, signal))
                }
                // Like PostgreSQL: earlier results stand, later statements do not run.
                Ok(Err(e)) => {
                    responses.push(Response::Error(Box::new(error_info(&e))));
                    break;
                }
                Err(cancelled) => {
                    responses.push(Response::Error(Box::new(cancelled.into())));
                    break;
                }
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for WeirHandler {
    type Statement = Prepared;
    type QueryParser = WeirQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// Streams a fresh portal's rows straight to the socket when the client
    /// asks for all of them (`max_rows == 0`, what drivers send). pgwire's
    /// default path parks the result in the portal and collects every row
    /// into memory before sending the first; row-limited fetches (cursors)
    /// still go that way.
    async fn on_execute<C>(&self, client: &mut C, mut message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        message.max_rows = fetch_limit(message.max_rows);
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            _ => return self._on_execute(client, message).await,
        };
        let fresh = matches!(*portal.state().lock().await, PortalExecutionState::Initial);
        let returns_rows = portal.statement.statement.schema.is_some();
        if message.max_rows != 0
            || !fresh
            || !returns_rows
            || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
        {
            return self._on_execute(client, message).await;
        }

        client.set_state(PgWireConnectionState::QueryInProgress);
        let response = ExtendedQueryHandler::do_query(self, client, portal.as_ref(), 0).await?;
        *portal.state().lock().await = PortalExecutionState::Finished;
        match response {
            Response::Query(results) => send_query_response(client, results, false).await?,
            Response::Execution(tag) => send_execution_response(client, tag).await?,
            Response::Error(err) => {
                client.feed(PgWireBackendMessage::ErrorResponse((*err).into())).await?;
                let status = client.transaction_status().to_error_state();
                client.set_transaction_status(status);
            }
            // Statements with a result schema answer with rows or a tag.
            _ => {}
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, _max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let (result, signal) = match &prepared.plan {
            Some(plan) => {
                let values = decode_params(portal, &prepared.param_types)?;
                let values = cast_to_inferred(values, &prepared.param_types)?;
                let plan = if values.is_empty() {
                    plan.clone()
                } else {
                    plan.clone().with_param_values(ParamValues::from(values)).map_err(|e| to_pg_error(&e.into()))?
                };
                if matches!(plan, LogicalPlan::Copy(_) | LogicalPlan::Dml(_)) {
                    (query::run(&self.engine, client.metadata(), plan).await, None)
                } else {
                    let mut signal = self.cancellers.begin(client);
                    let result = signal.race(query::run(&self.engine, client.metadata(), plan)).await?;
                    (result, Some(signal))
                }
            }
            None => (handler::execute(&self.engine, client.metadata_mut(), prepared.statement.clone()).await, None),
        };
        match result {
            Ok(output) => {
                send_notices(client, notices_of(&output)).await?;
                Ok(to_response(output, &portal.result_column_format, signal))
            }
            Err(e) => Err(to_pg_error(&e)),
        }
    }
}

/// The notices a statement left (`IF NOT EXISTS` that skipped).
fn notices_of(output: &Output) -> Vec<handler::Notice> {
    match output {
        Output::Command { notices, .. } => notices.clone(),
        _ => Vec::new(),
    }
}

/// Feeds `notices` to the client, ahead of the statement's command tag.
async fn send_notices<C>(client: &mut C, notices: Vec<handler::Notice>) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for notice in notices {
        let info = ErrorInfo::new("NOTICE".to_string(), notice.code.to_string(), notice.message);
        client.feed(PgWireBackendMessage::NoticeResponse(info.into())).await?;
    }
    Ok(())
}

/// Most rows one Execute returns from a portal; a larger limit is served in
/// slices (the portal is suspended and the client's next Execute goes on, as
/// the protocol allows a server to do).
const MAX_FETCH_ROWS: i32 = 100_000;

/// The row limit of an Execute as weir serves it. PostgreSQL reads zero or
/// less as "all rows"; pgwire reserves room for the limit up front, so a
/// negative one (cast to a huge count) panics and a huge positive one asks
/// for an allocation that aborts the process.
fn fetch_limit(max_rows: i32) -> i32 {
    if max_rows <= 0 { 0 } else { max_rows.min(MAX_FETCH_ROWS) }
}

/// Whether a cancel request may stop `statement`: a SELECT (or EXPLAIN) only.
/// A write stopped halfway (COPY, INSERT) could leave some of its files
/// published, and DDL is quick.
fn reads_only(statement: &Statement) -> bool {
    match statement {
        Statement::Query(DFStatement::Statement(s)) => matches!(**s, SqlStatement::Query(_) | SqlStatement::Explain { .. }),
        _ => false,
    }
}

/// DataFusion checks that a bound value has the placeholder's type; clients
/// often bind an int8 where DataFusion inferred int4, so cast first.
fn cast_to_inferred(
    values: Vec<datafusion::common::ScalarValue>,
    inferred: &[Option<DataType>],
) -> PgWireResult<Vec<datafusion::common::ScalarValue>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match inferred.get(i).and_then(|t| t.as_ref()) {
            Some(t) if v.data_type() != *t => v.cast_to(t).map_err(|e| {
                user_error("22P02", format!("parameter ${} cannot be used as {t}: {}", i + 1, QueryError::from(e).message()))
            }),
            _ => Ok(v),
        })
        .collect()
}

/// The protocol response to `output`; a query's rows end early with 57014
/// if `signal` fires while they stream.
fn to_response(output: Output, format: &Format, signal: Option<CancelSignal>) -> Response {
    match output {
        Output::Rows { schema, stream } => {
            let fields = Arc::new(field_infos(&schema, format));
            let encode_fields = fields.clone();
            let rows = stream.flat_map(move |batch| {
                let encoded = match batch {
                    Ok(batch) => match encode_batch(&batch, &encode_fields) {
                        Ok(rows) => rows.into_iter().map(Ok).collect(),
                        Err(e) => vec![Err(e)],
                    },
                    Err(e) => vec![Err(to_pg_error(&e.into()))],
                };
                stream::iter(encoded)
            });
            match signal {
                Some(signal) => Response::Query(QueryResponse::new(fields, signal.guard(Box::pin(rows)))),
                None => Response::Query(QueryResponse::new(fields, rows)),
            }
        }
        Output::Command { tag, rows, .. } => {
            let mut t = Tag::new(&tag);
            if tag == "INSERT" {
                t = t.with_oid(0);
            }
            if let Some(n) = rows {
                t = t.with_rows(n);
            }
            Response::Execution(t)
        }
        Output::Transaction(TransactionKind::Begin) => Response::TransactionStart(Tag::new("BEGIN")),
        Output::Transaction(TransactionKind::Commit) => Response::TransactionEnd(Tag::new("COMMIT")),
        Output::Transaction(TransactionKind::Rollback) => Response::TransactionEnd(Tag::new("ROLLBACK")),
    }
}

fn error_info(e: &QueryError) -> ErrorInfo {
    ErrorInfo::new("ERROR".to_string(), e.sqlstate().to_string(), e.message())
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".to_string(), code.to_string(), message)))
}

pub fn to_pg_error(e: &QueryError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}
