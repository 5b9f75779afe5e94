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

pub mod coalescing_writer;
mod expiring;
mod wire_types;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use expiring::Expiring;

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
use datafusion::arrow::array::{Int64Array, RecordBatch};
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
use crate::error::QueryError;
use crate::session::SessionVars;
use crate::handler::{self, Output, query};
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

impl FlightSql {
    pub fn new(engine: Arc<Engine>) -> FlightSql {
        let token = engine.config.password.as_ref().map(|_| crate::random::bytes().iter().map(|b| format!("{b:02x}")).collect());
        FlightSql {
            engine,
            token,
            prepared: Expiring::new(PREPARED_TTL, PREPARED_CAP),
            finished: Expiring::new(RESULT_TTL, RESULT_CAP),
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
        text.split_once(':')
            .is_some_and(|(user, pass)| user == config.user && Some(pass) == config.password.as_deref())
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
    async fn query_schema(&self, sql: &str) -> Result<Option<SchemaRef>, Status> {
        match self.parse_one(sql)? {
            Statement::Query(stmt) => {
                let plan = query::plan(&self.engine, &SessionVars::new(), stmt).await.map_err(|e| status(&e))?;
                // Writes (COPY, INSERT) run eagerly like DDL; their result is a count.
                if matches!(plan, LogicalPlan::Copy(_) | LogicalPlan::Dml(_)) {
                    return Ok(None);
                }
                Ok(Some(Arc::new(plan.schema().as_arrow().clone())))
            }
            _ => Ok(None),
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

/// An output as Arrow batches in their wire types: rows as they stream, a
/// command as one row holding its affected-row count.
fn output_batches(output: Output) -> (SchemaRef, BoxStream<RecordBatch>) {
    let rows = match output {
        Output::Rows { schema, stream } => {
            let wire = wire_types::wire_schema(&schema);
            let batch_schema = wire.clone();
            let batches = stream.map(move |batch| {
                let batch = batch.map_err(|e| status(&QueryError::from(e)))?;
                wire_types::to_wire(batch, &batch_schema).map_err(|e| Status::internal(e.to_string()))
            });
            return (wire, Box::pin(batches));
        }
        Output::Command { rows, .. } => rows.unwrap_or(0),
        Output::Transaction(_) => 0,
    };
    let (schema, batch) = affected_rows(rows);
    let batch = batch.map_err(|e| Status::internal(e.to_string()));
    (schema, Box::pin(futures::stream::once(async move { batch })))
}

/// A DoGet response streaming `output` as Arrow IPC.
fn stream_output(output: Output) -> Response<BoxStream<arrow_flight::FlightData>> {
    let (schema, batches) = output_batches(output);
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches.map_err(|s| FlightError::Tonic(Box::new(s))))
        .map_err(Status::from);
    Response::new(read_ahead(Box::pin(flight)))
}

/// Encoded messages a DoGet may have ready before the client asks for them.
const READ_AHEAD_MESSAGES: usize = 4;

/// Runs `messages` in a task of its own, up to `READ_AHEAD_MESSAGES` ahead
/// of the client. The response body is only polled while the client's
/// HTTP/2 flow-control window is open; without this, the query would sit
/// idle each time the window closed instead of decoding the next batches.
/// The task stops when the client goes away.
fn read_ahead(mut messages: BoxStream<arrow_flight::FlightData>) -> BoxStream<arrow_flight::FlightData> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_MESSAGES);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = tx.closed() => return,
            };
            let Some(message) = next else { return };
            let failed = message.is_err();
            if tx.send(message).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }))
}

fn affected_rows(n: usize) -> (SchemaRef, Result<RecordBatch, datafusion::arrow::error::ArrowError>) {
    let schema = Arc::new(Schema::new(vec![Field::new("rows", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![n as i64]))]);
    (schema, batch)
}

/// A one-batch DoGet response (catalog listings).
fn single_batch(schema: SchemaRef, batch: Result<RecordBatch, FlightError>) -> Response<BoxStream<arrow_flight::FlightData>> {
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { batch }))
        .map_err(Status::from);
    Response::new(Box::pin(flight))
}

/// The same SQLSTATE-bearing message the PostgreSQL endpoint sends, as a
/// gRPC status of the matching class.
fn status(e: &QueryError) -> Status {
    let message = format!("{} (SQLSTATE {})", e.message(), e.sqlstate());
    match &e.sqlstate()[..2] {
        "42" | "22" => Status::invalid_argument(message),
        "0A" => Status::unimplemented(message),
        "58" => Status::not_found(message),
        "28" => Status::unauthenticated(message),
        "53" => Status::resource_exhausted(message),
        _ => Status::internal(message),
    }
}

/// Flight SQL clients (ADBC, JDBC bridges) write parameters as `?`; the
/// PostgreSQL dialect numbers them (`$1`). Rewrites `?` outside string
/// literals, quoted identifiers and comments, in order.
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut n = 0;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                // Doubled quotes inside the literal close and reopen it: fine.
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
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
        let header =
            request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
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
        if let Some(schema) = self.query_schema(&cmd.query).await? {
            let ticket = TicketStatementQuery { statement_handle: cmd.query.into_bytes().into() };
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
                let plan =
                    query::plan(&self.engine, &SessionVars::new(), stmt).await.map_err(|e| status(&e))?;
                let params = query::parameter_types(&plan).map_err(|e| status(&e))?;
                let fields: Vec<Field> = params
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Field::new(format!("${}", i + 1), t.clone().unwrap_or(DataType::Utf8), true))
                    .collect();
                (plan.schema().as_arrow().clone(), Schema::new(fields))
            }
            other => (
                handler::result_schema(&other).map(|s| s.as_ref().clone()).unwrap_or_else(|| affected_rows(0).0.as_ref().clone()),
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
        let schema = self.query_schema(&sql).await?.unwrap_or_else(|| affected_rows(0).0);
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
            // A table whose files are gone is listed without columns.
            let table_schema = match self.engine.context().table_provider(def.name.as_str()).await {
                Ok(provider) => provider.schema(),
                Err(_) => Arc::new(Schema::empty()),
            };
            builder
                .append(DATABASE, SCHEMA, &def.name, "TABLE", &table_schema)
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

async fn collect_output(output: Output) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
    let (schema, batches) = output_batches(output);
    Ok((schema, batches.try_collect().await?))
}

#[cfg(test)]
mod tests {
    use super::number_placeholders;

    #[test]
    fn question_marks_become_numbered_placeholders() {
        assert_eq!(
            number_placeholders("SELECT '?', \"a?\" FROM t WHERE x = ? AND y > ? -- ?\n"),
            "SELECT '?', \"a?\" FROM t WHERE x = $1 AND y > $2 -- ?\n"
        );
    }
}

#[cfg(test)]
mod read_ahead_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow_flight::FlightData;
    use futures::StreamExt;
    use tonic::Status;

    use super::{READ_AHEAD_MESSAGES, read_ahead};

    /// An endless source that counts how many messages were taken from it.
    fn counted() -> (Arc<AtomicUsize>, super::BoxStream<FlightData>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let source = futures::stream::repeat_with(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(FlightData::default())
        });
        (pulled, Box::pin(source))
    }

    #[tokio::test]
    async fn runs_a_bounded_distance_ahead_and_stops_when_the_client_leaves() {
        let (pulled, source) = counted();
        let mut messages = read_ahead(source);
        for _ in 0..3 {
            messages.next().await.unwrap().unwrap();
        }
        // The task fills the channel, however long the scheduler takes to run it.
        while pulled.load(Ordering::SeqCst) < 3 + READ_AHEAD_MESSAGES {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ahead = pulled.load(Ordering::SeqCst);
        assert!(ahead <= 3 + READ_AHEAD_MESSAGES + 1, "it should stop at the bound, pulled {ahead}");
        drop(messages);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let after = pulled.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(pulled.load(Ordering::SeqCst), after, "the task must stop once the client is gone");
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_after_it_is_delivered() {
        let source = futures::stream::iter(vec![
            Ok(FlightData::default()),
            Err(Status::internal("disk gone")),
            Ok(FlightData::default()),
        ]);
        let got: Vec<_> = read_ahead(Box::pin(source)).collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap_err().message(), "disk gone");
    }
}
