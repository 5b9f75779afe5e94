//! A sqllogictest engine that talks to weir over tokio-postgres, in either the
//! simple or the extended query protocol.
//!
//! Why not the stock `sqllogictest_engines::postgres` engines: their errors
//! print as a bare "db error" (the message and SQLSTATE live in the error's
//! source), and the extended engine panics (`todo!`) on bytea, json, uuid and
//! other types, renders `""` as `(empty)` only for some types, and renders
//! intervals and timestamptz by sending a second query to the server under
//! test. This engine keeps what the stock engines do well (SQLSTATE via
//! `error_sql_state`, `t`/`f`, `NULL`, `(empty)`) and renders every binary
//! value the extended protocol returns into PostgreSQL's own text form, so one
//! `.slt` file states one expectation for both protocols.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, pin_mut};
use sqllogictest::{AsyncDB, ColumnType, DBOutput};
use tokio::task::JoinHandle;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::pg_text;

/// Which PostgreSQL query protocol every statement of a run goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// One `Query` message; the server sends every value as text.
    Simple,
    /// `Parse`/`Bind`/`Execute`; tokio-postgres asks for binary results.
    Extended,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
        }
    }
}

/// Column type letters, as DataFusion's own sqllogictest files use them.
///
/// `B` bool, `I` integer, `R` float or numeric, `T` text (and json), `D` date
/// or time, `P` timestamp, `?` anything else (bytea, interval, arrays, ...).
/// The simple protocol does not tell tokio-postgres the column types, so there
/// every column is [`WeirColumnType::Unknown`] and only the count is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeirColumnType {
    Boolean,
    Integer,
    Float,
    Text,
    DateTime,
    Timestamp,
    Another,
    /// Not reported by the protocol; matches any expected letter.
    Unknown,
}

impl ColumnType for WeirColumnType {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'B' => Self::Boolean,
            'I' => Self::Integer,
            'R' => Self::Float,
            'T' => Self::Text,
            'D' => Self::DateTime,
            'P' => Self::Timestamp,
            '?' => Self::Another,
            _ => return None,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Boolean => 'B',
            Self::Integer => 'I',
            Self::Float => 'R',
            Self::Text => 'T',
            Self::DateTime => 'D',
            Self::Timestamp => 'P',
            Self::Another => '?',
            Self::Unknown => '*',
        }
    }
}

impl WeirColumnType {
    fn of(ty: &Type) -> Self {
        match *ty {
            Type::BOOL => Self::Boolean,
            Type::INT2 | Type::INT4 | Type::INT8 | Type::OID => Self::Integer,
            Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC => Self::Float,
            Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::CHAR
            | Type::UNKNOWN
            | Type::JSON
            | Type::JSONB => Self::Text,
            Type::DATE | Type::TIME | Type::TIMETZ => Self::DateTime,
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Self::Timestamp,
            _ => Self::Another,
        }
    }
}

/// Column-type check: counts must agree; letters must agree where the
/// protocol reported a type.
#[allow(clippy::ptr_arg)] // the signature sqllogictest's `ColumnTypeValidator` requires
pub fn column_types_match(actual: &Vec<WeirColumnType>, expected: &Vec<WeirColumnType>) -> bool {
    actual.len() == expected.len() && actual.iter().zip(expected).all(|(a, e)| *a == WeirColumnType::Unknown || a == e)
}

/// An error whose text carries the SQLSTATE, severity, message, detail and
/// hint, so both `statement error (42P01)` and message regexes can match it.
#[derive(Debug)]
pub struct SltError {
    text: String,
    sqlstate: Option<String>,
}

impl fmt::Display for SltError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for SltError {}

impl From<tokio_postgres::Error> for SltError {
    fn from(err: tokio_postgres::Error) -> Self {
        match err.as_db_error() {
            Some(db) => {
                let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
                if let Some(detail) = db.detail() {
                    text.push_str(&format!("\nDETAIL: {detail}"));
                }
                if let Some(hint) = db.hint() {
                    text.push_str(&format!("\nHINT: {hint}"));
                }
                SltError { text, sqlstate: Some(db.code().code().to_owned()) }
            }
            None => {
                let mut text = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(cause) = source {
                    text.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                SltError { text, sqlstate: None }
            }
        }
    }
}

impl SltError {
    fn decode(column: usize, ty: &Type, why: String) -> Self {
        SltError { text: format!("cannot render column {column} of type {ty}: {why}"), sqlstate: None }
    }
}

/// The raw binary bytes of one value, whatever its type.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// One connection to weir.
pub struct Weir {
    /// `None` once the connection has been shut down.
    client: Option<Client>,
    connection: Option<JoinHandle<()>>,
    protocol: Protocol,
}

impl Weir {
    pub async fn connect(conn_str: &str, protocol: Protocol) -> Result<Self, SltError> {
        let (client, connection) = tokio_postgres::connect(conn_str, NoTls).await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Weir { client: Some(client), connection: Some(connection), protocol })
    }

    fn client(&self) -> Result<&Client, SltError> {
        self.client.as_ref().ok_or_else(|| SltError { text: "connection already shut down".into(), sqlstate: None })
    }

    async fn run_simple(&mut self, sql: &str) -> Result<DBOutput<WeirColumnType>, SltError> {
        let mut columns = None;
        let mut rows = Vec::new();
        let mut count = 0;
        for message in self.client()?.simple_query(sql).await? {
            match message {
                SimpleQueryMessage::RowDescription(cols) => columns = Some(cols.len()),
                SimpleQueryMessage::Row(row) => {
                    let values = (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_owned(),
                            Some("") => "(empty)".to_owned(),
                            Some(v) => v.to_owned(),
                        })
                        .collect();
                    rows.push(values);
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows { types: vec![WeirColumnType::Unknown; n], rows },
            None => DBOutput::StatementComplete(count),
        })
    }

    async fn run_extended(&mut self, sql: &str) -> Result<DBOutput<WeirColumnType>, SltError> {
        let client = self.client()?;
        let stmt = client.prepare(sql).await?;
        let stream = client.query_raw(&stmt, std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>()).await?;
        pin_mut!(stream);
        let mut rows = Vec::new();
        while let Some(row) = stream.next().await {
            let row = row?;
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                let raw: Option<Raw> = row.try_get(i)?;
                let text = match raw {
                    None => "NULL".to_owned(),
                    Some(Raw(bytes)) => {
                        pg_text::render(column.type_(), bytes).map_err(|why| SltError::decode(i, column.type_(), why))?
                    }
                };
                values.push(if text.is_empty() { "(empty)".to_owned() } else { text });
            }
            rows.push(values);
        }
        if stmt.columns().is_empty() {
            Ok(DBOutput::StatementComplete(stream.rows_affected().unwrap_or(0)))
        } else {
            let types = stmt.columns().iter().map(|c| WeirColumnType::of(c.type_())).collect();
            Ok(DBOutput::Rows { types, rows })
        }
    }
}

#[async_trait]
impl AsyncDB for Weir {
    type Error = SltError;
    type ColumnType = WeirColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<WeirColumnType>, SltError> {
        match self.protocol {
            Protocol::Simple => self.run_simple(sql).await,
            Protocol::Extended => self.run_extended(sql).await,
        }
    }

    async fn shutdown(&mut self) {
        // Dropping the client sends Terminate; the connection task then ends.
        drop(self.client.take());
        if let Some(connection) = self.connection.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }

    fn engine_name(&self) -> &str {
        match self.protocol {
            Protocol::Simple => "weir-simple",
            Protocol::Extended => "weir-extended",
        }
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }

    fn error_sql_state(err: &SltError) -> Option<String> {
        err.sqlstate.clone()
    }
}
