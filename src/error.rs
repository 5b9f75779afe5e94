//! Typed errors, one enum per layer, each mapping to the SQLSTATE a
//! PostgreSQL client sees. The pgwire layer only translates; it never guesses.

use datafusion::error::DataFusionError;
use datafusion::object_store;

/// Errors of the metastore (the SQLite catalog file and its contents).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("table '{0}' already exists")]
    DuplicateTable(String),
    #[error("table '{0}' does not exist")]
    UnknownTable(String),
    #[error("{kind} '{name}' does not exist")]
    UnknownRelation { kind: String, name: String },
    #[error(
        "catalog '{path}' was written by a newer weir (catalog format {found}, this build reads up to {supported}); upgrade weir, the file was left untouched"
    )]
    TooNew { path: String, found: i64, supported: i64 },
    #[error("catalog '{path}' is not a weir catalog or is corrupt ({reason}); the file was left untouched")]
    Corrupt { path: String, reason: String },
    #[error("catalog storage failed: {0}")]
    Storage(String),
    #[error(
        "the catalog file '{0}' was deleted or replaced while weir was running; nothing more is committed until weir restarts"
    )]
    Vanished(String),
    #[error("the catalog '{0}' is in use by another weir process (one server per data directory)")]
    InUse(String),
    #[error("epoch {batch_id} of '{query}' is already committed (is another weir running on this data directory?)")]
    EpochConflict { query: String, batch_id: i64 },
    /// A bug of ours, e.g. a panic while the connection's lock was held.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CatalogError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            CatalogError::DuplicateTable(_) => "42P07",
            CatalogError::UnknownTable(_) | CatalogError::UnknownRelation { .. } => "42P01",
            CatalogError::TooNew { .. } | CatalogError::Corrupt { .. } => "XX001",
            CatalogError::Storage(_) | CatalogError::Vanished(_) => "58030",
            CatalogError::InUse(_) => "55006",
            CatalogError::EpochConflict { .. } => "40001",
            CatalogError::Internal(_) => "XX000",
        }
    }
}

impl From<rusqlite::Error> for CatalogError {
    fn from(e: rusqlite::Error) -> Self {
        CatalogError::Storage(e.to_string())
    }
}

/// Refusals of the file and network sandbox (`storage`): a client asked
/// for something outside what the server allows.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "access to '{path}' is not allowed: weir reads and writes files only under {roots} (start it with --allow-path DIR to allow another directory)"
    )]
    Path { path: String, roots: String },
    #[error(
        "location '{location}' is not supported: weir reads and writes local paths and file:// URLs (under {roots}); object storage URLs are not supported yet"
    )]
    Scheme { location: String, roots: String },
    #[error("'{path}' holds weir's catalog and cannot be a location; use a file or directory inside the data directory")]
    Reserved { path: String },
    #[error("location '{location}' cannot be resolved safely: {reason}")]
    Unresolvable { location: String, reason: String },
    #[error(
        "connecting to '{host}' is not allowed: weir connects only to {allowed} (start it with --allow-host HOST to allow another host)"
    )]
    Host { host: String, allowed: String },
    #[error("Kafka property '{property}' is not allowed: {reason}")]
    Property { property: String, reason: String },
    #[error("the name '{name}' cannot name weir's files: {reason}")]
    Name { name: String, reason: String },
}

impl AccessError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            AccessError::Name { .. } => "42602",
            // A scheme weir cannot read yet is a missing feature, not a
            // denied permission.
            AccessError::Scheme { .. } => "0A000",
            _ => "42501",
        }
    }
}

/// Errors of executing one statement: what a session reports to its client.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("{0} is not supported")]
    Unsupported(String),
    #[error("{what} is not supported; {hint}")]
    UnsupportedWithHint { what: String, hint: String },
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("{0}")]
    Access(#[from] AccessError),
    #[error(
        "location '{0}' does not exist; create it first, or declare the table's columns and use a relative location to let weir create it under its data directory"
    )]
    MissingLocation(String),
    #[error("location '{path}' cannot be read: {reason}")]
    UnreadableLocation { path: String, reason: String },
    #[error("file '{path}' is not a readable Parquet file: {reason}")]
    BadParquetFile { path: String, reason: String },
    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownParameter(String),
    #[error("invalid value for parameter \"{name}\": {reason}")]
    InvalidParameterValue { name: String, reason: String },
    #[error("unknown option '{option}' in WITH clause of {context}; expected one of: {valid}")]
    InvalidOption { option: String, context: String, valid: String },
    #[error("invalid value for option '{option}': {reason}")]
    InvalidOptionValue { option: String, reason: String },
    #[error("{0}")]
    DependentObjects(String),
    #[error("{0}")]
    WrongObjectType(String),
    #[error("{0}")]
    DatatypeMismatch(String),
    /// The object is in the wrong state for the statement (resuming a
    /// finished query): PostgreSQL's object_not_in_prerequisite_state.
    #[error("{0}")]
    WrongState(String),
    /// Arithmetic on intervals, timestamps or dates left their range.
    #[error("{0}")]
    DatetimeOverflow(String),
    /// Deeper than `sql::limits` allows: PostgreSQL's "stack depth limit exceeded".
    #[error("{0}")]
    TooComplex(String),
    /// A statement panicked inside the engine (a bug, or a file crafted to
    /// trip one), or an earlier panic poisoned a lock; the session and the
    /// server carry on.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    DataFusion(Box<DataFusionError>),
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        // Our own errors travel through DataFusion streams as `External`.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<QueryError>() {
                Ok(ours) => *ours,
                Err(other) => QueryError::DataFusion(Box::new(DataFusionError::External(other))),
            },
            other => QueryError::DataFusion(Box::new(other)),
        }
    }
}

impl QueryError {
    pub fn sqlstate(&self) -> &'static str {
        match self {
            QueryError::Syntax(_) => "42601",
            QueryError::Unsupported(_) | QueryError::UnsupportedWithHint { .. } => "0A000",
            QueryError::Catalog(e) => e.sqlstate(),
            QueryError::Access(e) => e.sqlstate(),
            QueryError::MissingLocation(_) => "58P01",
            QueryError::UnreadableLocation { .. } => "58030",
            QueryError::BadParquetFile { .. } => "XX001",
            QueryError::UnknownParameter(_) => "42704",
            QueryError::InvalidParameterValue { .. } => "22023",
            QueryError::InvalidOption { .. } | QueryError::InvalidOptionValue { .. } => "22023",
            QueryError::DependentObjects(_) => "2BP01",
            QueryError::WrongObjectType(_) => "42809",
            QueryError::DatatypeMismatch(_) => "42804",
            QueryError::WrongState(_) => "55000",
            QueryError::TooComplex(_) => "54001",
            QueryError::DatetimeOverflow(_) => "22008",
            QueryError::Internal(_) => "XX000",
            QueryError::DataFusion(e) => datafusion_sqlstate(e),
        }
    }

    /// The message without DataFusion's nesting noise ("Error during planning: ...").
    pub fn message(&self) -> String {
        match self {
            QueryError::DataFusion(e) => datafusion_message(e),
            other => other.to_string(),
        }
    }
}

/// Whether `e` is Arrow's checked-arithmetic overflow (which says which
/// numbers overflowed, not whether they were intervals or plain numbers).
pub fn is_arithmetic_overflow(e: &DataFusionError) -> bool {
    matches!(innermost(e), DataFusionError::ArrowError(err, _) if matches!(err.as_ref(), datafusion::arrow::error::ArrowError::ArithmeticOverflow(_)))
}

/// The innermost DataFusion error, past contexts, shared wrappers and boxes.
fn innermost(e: &DataFusionError) -> &DataFusionError {
    match e {
        DataFusionError::Context(_, inner) => innermost(inner),
        DataFusionError::Shared(inner) => innermost(inner),
        DataFusionError::Diagnostic(_, inner) => innermost(inner),
        DataFusionError::Collection(errs) if !errs.is_empty() => innermost(&errs[0]),
        other => other,
    }
}

fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    use datafusion::arrow::error::ArrowError;
    use datafusion::common::SchemaError;
    match innermost(e) {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::SchemaError(err, _) => match err.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. } | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::Plan(msg) => plan_sqlstate(msg),
        DataFusionError::ResourcesExhausted(_) => "53200",
        // The sandbox's backstop in the object store, or the OS saying no.
        DataFusionError::ObjectStore(err) if matches!(err.as_ref(), object_store::Error::PermissionDenied { .. }) => "42501",
        DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => "58030",
        // A missing or contradictory option (e.g. COPY without a format).
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::ParquetError(_) => "XX001",
        DataFusionError::ArrowError(err, _) => match err.as_ref() {
            ArrowError::DivideByZero => "22012",
            ArrowError::CastError(_) | ArrowError::ParseError(_) => "22P02",
            ArrowError::ComputeError(_) | ArrowError::InvalidArgumentError(_) => "22023",
            ArrowError::ParquetError(_) => "XX001",
            ArrowError::IoError(..) => "58030",
            // Numbers: numeric_value_out_of_range. Interval and timestamp
            // overflows become `DatetimeOverflow` where the plan is known.
            ArrowError::ArithmeticOverflow(_) => "22003",
            // "Unable to get field named ...": a column the statement names.
            ArrowError::SchemaError(msg) if msg.contains("field named") => "42703",
            _ => "XX000",
        },
        // A location with `[`, `*` or `?` is read as a glob pattern.
        DataFusionError::External(e) if e.to_string().starts_with("Pattern syntax error") => "22023",
        DataFusionError::Execution(msg) if msg.contains("Divide by zero") => "22012",
        DataFusionError::Execution(msg) if msg.contains("Cannot cast") => "22P02",
        DataFusionError::Execution(_) => "22000",
        _ => "XX000",
    }
}

/// DataFusion reports most planning mistakes as `Plan(String)`; its wording is
/// stable enough to tell the common classes apart.
fn plan_sqlstate(msg: &str) -> &'static str {
    let lower = msg.to_ascii_lowercase();
    if lower.contains("table") && lower.contains("not found") {
        "42P01"
    } else if lower.contains("invalid function")
        || lower.contains("no function matches")
        || lower.contains("failed to coerce arguments")
        || lower.contains("failed to match any signature")
        || lower.contains("does not support inputs")
        || lower.starts_with("function '") && lower.contains("' expects ")
    {
        "42883"
    } else if lower.contains("no field named") || lower.contains("column") && lower.contains("not found") {
        "42703"
    } else if lower.contains("already exists") {
        "42P07"
    } else if lower.contains("cannot be cast")
        || lower.contains("cannot coerce")
        || lower.contains("type") && lower.contains("mismatch")
    {
        "42804"
    } else {
        "42000"
    }
}

pub fn datafusion_message(e: &DataFusionError) -> String {
    let inner = innermost(e);
    let text = match inner {
        DataFusionError::Plan(m) | DataFusionError::Execution(m) | DataFusionError::NotImplemented(m) => m.clone(),
        DataFusionError::SQL(err, _) => err.to_string(),
        DataFusionError::SchemaError(err, _) => err.to_string(),
        other => other.to_string(),
    };
    // DataFusion appends backtrace hints and "Error during planning:" prefixes; strip both.
    let mut text = text.split("\n\nbacktrace").next().unwrap_or(&text).trim();
    // Layer prefixes say which DataFusion module failed, not what the user did.
    const PREFIXES: &[&str] = &[
        "Arrow error: ",
        "Cast error: ",
        "Parser error: ",
        "Error during planning: ",
        "Execution error: ",
        "External error: ",
        "sql parser error: ",
        "Compute error: ",
        "Invalid argument error: ",
        "Invalid or Unsupported Configuration: ",
        "Object Store error: ",
    ];
    while let Some(rest) = PREFIXES.iter().find_map(|p| text.strip_prefix(p)) {
        text = rest;
    }
    match text {
        "Divide by zero error" => "division by zero".to_string(),
        other => other.to_string(),
    }
}

/// Errors that stop the server from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use data directory '{0}': {1}")]
    DataDir(String, String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot listen on {0}: {1}")]
    Listen(String, String),
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    #[error("query engine set-up failed: {0}")]
    Engine(String),
}
