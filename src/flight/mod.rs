//! Arrow Flight SQL endpoint: the same engine, catalog and password as the
//! PostgreSQL endpoint, with results moving as Arrow record batches instead
//! of text rows (for ADBC, pandas/polars and other Arrow-native clients).
//!
//! Built on arrow-flight's `FlightSqlService` rather than on
//! `datafusion-flight-sql-server` (checked at 0.4.19, which tracks DataFusion
//! 55): that crate plans every statement with DataFusion alone, so weir's own
//! statements (CREATE STREAM, CREATE SINK, tables the catalog must remember)
//! would not run and errors would lose their SQLSTATE; and it leaves the
//! handshake (ADBC's Basic auth), GetSqlInfo and ExecuteUpdate unimplemented.
//! Everything here goes through the same handlers as the PostgreSQL endpoint.
//!
//! * `results`: outputs as Arrow IPC streams, run a bounded distance ahead
//!   of the client.
//! * `wire_types`: Arrow types as Flight SQL clients read them.
//! * `placeholders`: `?` parameters numbered for the PostgreSQL dialect.
//! * `expiring`: the results and prepared statements clients leave behind,
//!   dropped after a while.
//! * `coalescing_writer`: the socket, with its writes coalesced.
//! * `errors`: a `QueryError` as a gRPC status, its SQLSTATE where clients
//!   can read it.

pub mod coalescing_writer;
mod errors;
mod expiring;
mod placeholders;
mod results;
mod wire_types;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use errors::status;
use expiring::Expiring;
use placeholders::number_placeholders;
use results::{affected_rows, collect_output, single_batch, stream_output};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, SchemaAsIpc,
    Ticket,
};
use base64::Engine as _;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::ipc::writer::IpcWriteOptions;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::catalog::{DATABASE, SCHEMA};
use crate::engine::Engine;
use crate::handler::{self, Output, query};
use crate::session::SessionVars;
use crate::sql::Statement;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

static SQL_INFO: LazyLock<Result<SqlInfoData, String>> = LazyLock::new(|| {
    let mut builder = SqlInfoDataBuilder::new();
    builder.append(SqlInfo::FlightSqlServerName, "weir");
    builder.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    builder.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    builder.append(SqlInfo::FlightSqlServerReadOnly, false);
    // The builder only fails on conflicting value types; were it ever to,
    // GetSqlInfo answers with an error instead of the server panicking.
    builder.build().map_err(|e| e.to_string())
});

pub struct FlightSql {
    engine: Arc<Engine>,
    /// Handed out by the handshake when a password is set; every later call
    /// must present it (or the password itself, as Basic auth).
    token: Option<String>,
    /// Prepared statements by handle: their SQL and the parameters bound by
    /// the last DoPut. Flight SQL clients close them explicitly; one never
    /// closed expires [`PREPARED_TTL`] after its last use.
    prepared: Expiring<Vec<u8>, PreparedQuery>,
    /// Results of statements that ran at GetFlightInfo (DDL, SET, SHOW),
    /// waiting for the DoGet that fetches them, at most [`RESULT_TTL`].
    finished: Expiring<Vec<u8>, (SchemaRef, Vec<RecordBatch>)>,
    /// Queries planned at GetFlightInfo, run by the DoGet of their ticket
    /// (planned once, not again from the SQL), at most [`RESULT_TTL`]; a
    /// ticket may be fetched more than once meanwhile.
    planned: Expiring<Vec<u8>, LogicalPlan>,
    next_handle: AtomicU64,
}

#[derive(Clone)]
struct PreparedQuery {
    sql: String,
    params: Vec<ScalarValue>,
}

/// How long a result stored at GetFlightInfo waits for its DoGet, and how
/// many wait at once (clients fetch within milliseconds; the rest leaked).
pub const RESULT_TTL: Duration = Duration::from_secs(5 * 60);
pub const RESULT_CAP: usize = 1_000;
/// How long an unclosed prepared statement lives after its last use, and
/// how many live at once.
pub const PREPARED_TTL: Duration = Duration::from_secs(60 * 60);
pub const PREPARED_CAP: usize = 10_000;

/// Ticket handles of stored results start with this, so they never collide
/// with a ticket that carries SQL text.
const RESULT_PREFIX: &[u8] = b"\0weir-result:";
/// ... and handles of planned queries with this.
const PLAN_PREFIX: &[u8] = b"\0weir-plan:";

impl FlightSql {
    pub fn new(engine: Arc<Engine>) -> FlightSql {
        let token =
            engine.config.password.as_ref().map(|_| crate::random::bytes().iter().map(|b| format!("{b:02x}")).collect());
        FlightSql {
            engine,
            token,
            prepared: Expiring::new(PREPARED_TTL, PREPARED_CAP),
            finished: Expiring::new(RESULT_TTL, RESULT_CAP),
            planned: Expiring::new(RESULT_TTL, RESULT_CAP),
            next_handle: AtomicU64::new(1),
        }
    }

    fn check_auth(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(token) = &self.token else { return Ok(()) };
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if header.strip_prefix("Bearer ").is_some_and(|t| t == token) || self.basic_auth_ok(header) {
            Ok(())
        } else {
            Err(Status::unauthenticated("password authentication failed: send the handshake's bearer token"))
        }
    }

    fn basic_auth_ok(&self, header: &str) -> bool {
        let Some(encoded) = header.strip_prefix("Basic ") else { return false };
        // arrow-go (ADBC) encodes without padding; others pad.
        let encoded = encoded.trim_end_matches('=');
        let Ok(decoded) = base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded) else { return false };
        let text = String::from_utf8_lossy(&decoded);
        let config = &self.engine.config;
        text.split_once(':').is_some_and(|(user, pass)| user == config.user && Some(pass) == config.password.as_deref())
    }

    fn handle(&self, prefix: &[u8]) -> Vec<u8> {
        let mut h = prefix.to_vec();
        h.extend_from_slice(self.next_handle.fetch_add(1, Ordering::Relaxed).to_string().as_bytes());
        h
    }

    fn parse_one(&self, sql: &str) -> Result<Statement, Status> {
        let sql = number_placeholders(sql);
        let mut statements = self.engine.parser.parse(&sql).map_err(|e| status(&e))?;
        match statements.len() {
            1 => Ok(statements.remove(0)),
            0 => Err(Status::invalid_argument("empty query")),
            _ => Err(Status::invalid_argument("Flight SQL runs one statement per command")),
        }
    }

    /// The result schema of a query, without running it.
    async fn query_schema(&self, sql: &str) -> Result<Option<(SchemaRef, Option<LogicalPlan>)>, Status> {
        match self.parse_one(sql)? {
            Statement::Query(stmt) => {
                let plan = query::plan(&self.engine, &SessionVars::new(), stmt).await.map_err(|e| status(&e))?;
                // Writes (COPY, INSERT) run eagerly like DDL; their result is a count.
                if matches!(plan, LogicalPlan::Copy(_) | LogicalPlan::Dml(_)) {
                    return Ok(None);
                }
                Ok(Some((Arc::new(plan.schema().as_arrow().clone()), Some(plan))))
            }
            // SHOW, DESCRIBE, SHOW CREATE: their rows' schema, known without
            // running them (announcing the row count of a command instead
            // made ADBC refuse the rows: "inconsistent schema").
            other => Ok(handler::result_schema(&other).map(|schema| (schema, None))),
        }
    }

    /// Runs one statement with bound parameters.
    async fn run(&self, sql: &str, params: Vec<ScalarValue>) -> Result<Output, Status> {
        let mut vars = SessionVars::new();
        let result = match self.parse_one(sql)? {
            Statement::Query(stmt) => {
                let plan = query::plan(&self.engine, &vars, stmt).await.map_err(|e| status(&e))?;
                let plan = if params.is_empty() {
                    plan
                } else {
                    plan.with_param_values(ParamValues::from(params)).map_err(|e| status(&e.into()))?
                };
                query::run(&self.engine, &vars, plan).await
            }
            other => handler::execute(&self.engine, &mut vars, other).await,
        };
        result.map_err(|e| status(&e))
    }

    fn flight_info(&self, schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
        Ok(FlightInfo::new()
            .try_with_schema(&wire_types::wire_schema(schema))
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor))
    }
}

fn schema_bytes(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(&wire_types::wire_schema(schema), &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        // Credentials come as a Basic header (ADBC, arrow-go) or as a
        // BasicAuth message in the first handshake payload (older clients).
        let mut payload_ok = false;
        if self.token.is_some() && !self.basic_auth_ok(&header) {
            let mut stream = request.into_inner();
            if let Some(Ok(first)) = stream.next().await
                && let Ok(auth) = arrow_flight::BasicAuth::decode(first.payload.as_ref())
            {
                let config = &self.engine.config;
                payload_ok = auth.username == config.user && Some(auth.password.as_str()) == config.password.as_deref();
            }
        }
        let token = match &self.token {
            Some(token) if payload_ok || self.basic_auth_ok(&header) => token.clone(),
            Some(_) => return Err(Status::unauthenticated("password authentication failed")),
            None => String::new(),
        };
        let reply = HandshakeResponse { protocol_version: 0, payload: token.clone().into() };
        let mut response: Response<BoxStream<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::iter(vec![Ok(reply)])));
        if !token.is_empty()
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        cmd: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check_auth(request.metadata())?;
        let descriptor = request.into_inner();
        if let Some((schema, plan)) = self.query_schema(&cmd.query).await? {
            let handle = match plan {
                // Planned once: DoGet runs this plan.
                Some(plan) => {
                    let handle = self.handle(PLAN_PREFIX);
                    self.planned.insert(handle.clone(), plan);
                    handle
                }
                None => cmd.query.into_bytes(),
            };
            let ticket = TicketStatementQuery { statement_handle: handle.into() };
            return Ok(Response::new(self.flight_info(&schema, ticket.as_any().encode_to_vec(), descriptor)?));
        }
        // DDL and session statements take effect now, whether or not the
        // client ever fetches their (small) result.
        let output = self.run(&cmd.query, vec![]).await?;
        let (schema, batches) = collect_output(output).await?;
        let handle = self.handle(RESULT_PREFIX);
        let info = self.flight_info(
            &schema,
            TicketStatementQuery { statement_handle: handle.clone().into() }.as_any().encode_to_vec(),
            descriptor,
        )?;
        self.finished.insert(handle, (schema, batches));
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.check_auth(request.metadata())?;
        let handle = ticket.statement_handle.to_vec();
        if handle.starts_with(RESULT_PREFIX) {
            let (schema, batches) = self
                .finished
                .take(&handle)
                .ok_or_else(|| Status::not_found("result already fetched, or expired unfetched"))?;
            let flight = FlightDataEncoderBuilder::new()
                .with_schema(schema)
                .build(futures::stream::iter(batches.into_iter().map(Ok)))
                .map_err(Status::from);
            return Ok(Response::new(Box::pin(flight)));
        }
        if handle.starts_with(PLAN_PREFIX) {
            let plan = self.planned.get(&handle).ok_or_else(|| Status::not_found("query ticket expired unfetched"))?;
            let output = query::run(&self.engine, &SessionVars::new(), plan).await.map_err(|e| status(&e))?;
            return Ok(stream_output(output));
        }
        let sql = String::from_utf8(handle).map_err(|_| Status::invalid_argument("ticket is not SQL text"))?;
        Ok(stream_output(self.run(&sql, vec![]).await?))
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.check_auth(request.metadata())?;
        match self.run(&cmd.query, vec![]).await? {
            Output::Command { rows, .. } => Ok(rows.unwrap_or(0) as i64),
            Output::Rows { stream, .. } => {
                let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| status(&e.into()))?;
                Ok(batches.iter().map(|b| b.num_rows() as i64).sum())
            }
            Output::Transaction(_) => Ok(0),
        }
    }

    async fn do_action_create_prepared_statement(
        &self,
        request: ActionCreatePreparedStatementRequest,
        action: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        self.check_auth(action.metadata())?;
        let (dataset_schema, parameter_schema) = match self.parse_one(&request.query)? {
            Statement::Query(stmt) => {
                let plan = query::plan(&self.engine, &SessionVars::new(), stmt).await.map_err(|e| status(&e))?;
                let params = query::parameter_types(&plan).map_err(|e| status(&e))?;
                let fields: Vec<Field> = params
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone().unwrap_or(DataType::Utf8), true))
                    .collect();
                (plan.schema().as_arrow().clone(), Schema::new(fields))
            }
            other => (
                handler::result_schema(&other)
                    .map(|s| s.as_ref().clone())
                    .unwrap_or_else(|| affected_rows(0).0.as_ref().clone()),
                Schema::empty(),
            ),
        };
        let handle = self.handle(b"prepared:");
        self.prepared.insert(handle.clone(), PreparedQuery { sql: request.query, params: vec![] });
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes(&dataset_schema)?,
            parameter_schema: schema_bytes(&parameter_schema)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.check_auth(request.metadata())?;
        let batches: Vec<RecordBatch> =
            FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from))
                .try_collect()
                .await
                .map_err(Status::from)?;
        // One set of parameters per execution: the first row binds $1..$n.
        let params = match batches.iter().find(|b| b.num_rows() > 0) {
            Some(batch) => batch
                .columns()
                .iter()
                .map(|c| ScalarValue::try_from_array(c, 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| status(&e.into()))?,
            None => vec![],
        };
        let handle = cmd.prepared_statement_handle.to_vec();
        if !self.prepared.update(&handle, |entry| entry.params = params) {
            return Err(unknown_prepared());
        }
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.into()) })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check_auth(request.metadata())?;
        let sql = self.prepared_query(&cmd.prepared_statement_handle)?.sql;
        let schema = self.query_schema(&sql).await?.map(|(schema, _)| schema).unwrap_or_else(|| affected_rows(0).0);
        let info = self.flight_info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())?;
        Ok(Response::new(info))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.check_auth(request.metadata())?;
        let prepared = self.prepared_query(&cmd.prepared_statement_handle)?;
        Ok(stream_output(self.run(&prepared.sql, prepared.params).await?))
    }

    async fn do_action_close_prepared_statement(
        &self,
        request: ActionClosePreparedStatementRequest,
        action: Request<Action>,
    ) -> Result<(), Status> {
        self.check_auth(action.metadata())?;
        self.prepared.take(&request.prepared_statement_handle.to_vec());
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check_auth(request.metadata())?;
        let schema = query.into_builder().schema();
        Ok(Response::new(self.flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.check_auth(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(DATABASE);
        Ok(single_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check_auth(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(self.flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.check_auth(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(DATABASE, SCHEMA);
        Ok(single_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check_auth(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(self.flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.check_auth(request.metadata())?;
        let mut builder = query.into_builder();
        let defs = self.engine.catalog.list().map_err(|e| status(&e.into()))?;
        for def in defs {
            // The kinds psql sees too: a stream is a foreign table; a sink
            // is a query, not a relation.
            let table_type = match def.kind {
                crate::catalog::RelationKind::View => "VIEW",
                crate::catalog::RelationKind::Stream => "FOREIGN TABLE",
                crate::catalog::RelationKind::Sink => continue,
                crate::catalog::RelationKind::ExternalTable | crate::catalog::RelationKind::MaterializedView => "TABLE",
            };
            // A table whose files are gone is listed without columns.
            let table_schema = match self.engine.context().table_provider(def.name.as_str()).await {
                Ok(provider) => provider.schema(),
                Err(_) => Arc::new(Schema::empty()),
            };
            builder
                .append(DATABASE, SCHEMA, &def.name, table_type, &table_schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(single_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check_auth(request.metadata())?;
        let schema = query.clone().into_builder(sql_info()?).schema();
        Ok(Response::new(self.flight_info(&schema, query.as_any().encode_to_vec(), request.into_inner())?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.check_auth(request.metadata())?;
        let builder = query.into_builder(sql_info()?);
        Ok(single_batch(builder.schema(), builder.build()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn sql_info() -> Result<&'static SqlInfoData, Status> {
    SQL_INFO.as_ref().map_err(|e| Status::internal(format!("server info: {e}")))
}

impl FlightSql {
    fn prepared_query(&self, handle: &[u8]) -> Result<PreparedQuery, Status> {
        self.prepared.get(&handle.to_vec()).ok_or_else(unknown_prepared)
    }
}

fn unknown_prepared() -> Status {
    Status::not_found("unknown prepared statement (closed, or unused for longer than it is kept)")
}
