//! Weir's statement kinds: the ones weir handles itself, and `Query` for
//! everything DataFusion plans. Unsupported DDL is rejected here, by name.

use datafusion::sql::parser::{CreateExternalTable, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, ObjectType, Reset, ResetStatement, Set, ShowCreateObject, Statement as SqlStatement, Value,
    ValueWithSpan,
};

use crate::error::QueryError;

#[derive(Debug, Clone)]
pub enum Statement {
    CreateExternalTable(CreateExternalTable),
    ShowTables,
    Describe(ObjectName),
    ShowCreateTable(ObjectName),
    DropTable {
        names: Vec<ObjectName>,
        if_exists: bool,
        /// Drops the views that read them too.
        cascade: bool,
    },
    /// `SET name = value` (also `SET TIME ZONE`, `SET NAMES`); `value` is
    /// `None` for `SET name TO DEFAULT`.
    Set {
        name: String,
        value: Option<String>,
        /// `SET` or `RESET`: the command tag.
        tag: &'static str,
    },
    /// `RESET ALL`. (`RESET name` is `Set` with no value.)
    ResetAll,
    /// `SHOW name`; `all` for `SHOW ALL`.
    Show(String),
    Transaction(TransactionKind),
    /// Accepted and ignored, answered with this command tag (DISCARD ALL,
    /// DEALLOCATE, SAVEPOINT...): clients and pools send these routinely.
    NoOp(&'static str),
    /// Planned and run by DataFusion.
    Query(DFStatement),
    CreateStream(Box<super::CreateStream>),
    /// `CREATE SINK` and `CREATE MATERIALIZED VIEW`.
    CreateContinuousQuery(super::CreateContinuousQuery),
    ShowStreaming(super::StreamingKind),
    ShowCreateStreaming(super::StreamingKind, ObjectName),
    DropStreaming {
        kind: super::StreamingKind,
        names: Vec<ObjectName>,
        if_exists: bool,
        /// Drops the views that read them too.
        cascade: bool,
    },
    /// `CREATE [OR REPLACE] VIEW name [(columns)] AS SELECT ...`.
    CreateView(Box<datafusion::sql::sqlparser::ast::CreateView>),
    /// `DROP VIEW [IF EXISTS] name, ... [CASCADE]`.
    DropView {
        names: Vec<ObjectName>,
        if_exists: bool,
        cascade: bool,
    },
    /// `EXPLAIN CREATE SINK | MATERIALIZED VIEW ...`: planned, not created.
    ExplainContinuousQuery(super::CreateContinuousQuery),
    /// `EXPLAIN SINK | MATERIALIZED VIEW name`: the plan it runs.
    ExplainStreaming(super::StreamingKind, ObjectName),
    /// `OPTIMIZE`, `VACUUM`, `DESCRIBE HISTORY` of a Delta table.
    Maintenance(super::Maintenance),
    /// `ALTER SINK | MATERIALIZED VIEW name PAUSE | RESUME | SET (...)`.
    AlterStreaming {
        kind: super::StreamingKind,
        name: ObjectName,
        action: super::AlterAction,
    },
}

/// Transactions are accepted and have no effect: every statement commits on
/// its own (documented in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    Begin,
    Commit,
    Rollback,
}

pub fn classify(stmt: SqlStatement) -> Result<Statement, QueryError> {
    Ok(match stmt {
        SqlStatement::ShowTables { .. } => Statement::ShowTables,
        SqlStatement::ExplainTable { table_name, .. } => Statement::Describe(table_name),
        SqlStatement::ShowCreate { obj_type: ShowCreateObject::Table, obj_name } => Statement::ShowCreateTable(obj_name),
        SqlStatement::ShowCreate { obj_type, .. } => {
            return Err(QueryError::Unsupported(format!("SHOW CREATE {obj_type}")));
        }
        SqlStatement::Drop { object_type: ObjectType::Table, if_exists, names, cascade, .. } => {
            Statement::DropTable { names, if_exists, cascade }
        }
        SqlStatement::Drop { object_type: ObjectType::View, if_exists, names, cascade, .. } => {
            Statement::DropView { names, if_exists, cascade }
        }
        SqlStatement::Drop { object_type, .. } => {
            return Err(QueryError::Unsupported(format!("DROP {object_type}")));
        }
        SqlStatement::Set(set) => classify_set(set)?,
        SqlStatement::Reset(ResetStatement { reset: Reset::ALL }) => Statement::ResetAll,
        SqlStatement::Reset(ResetStatement { reset: Reset::ConfigurationParameter(name) }) => {
            Statement::Set { name: name.to_string().trim_matches('"').to_string(), value: None, tag: "RESET" }
        }
        SqlStatement::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(|i| i.value.to_ascii_lowercase()).collect();
            // The parser splits `datafusion.execution.batch_size` at its dots
            // as it splits `TIME ZONE` at its space; DataFusion's settings are
            // the dotted ones (as `SET` takes them).
            let separator = if words.first().is_some_and(|w| w == "datafusion") { "." } else { " " };
            Statement::Show(words.join(separator))
        }
        SqlStatement::StartTransaction { .. } => Statement::Transaction(TransactionKind::Begin),
        SqlStatement::Commit { .. } => Statement::Transaction(TransactionKind::Commit),
        SqlStatement::Rollback { savepoint: None, .. } => Statement::Transaction(TransactionKind::Rollback),
        SqlStatement::Rollback { savepoint: Some(_), .. } => Statement::NoOp("ROLLBACK"),
        SqlStatement::Savepoint { .. } => Statement::NoOp("SAVEPOINT"),
        SqlStatement::ReleaseSavepoint { .. } => Statement::NoOp("RELEASE"),
        SqlStatement::Discard { .. } => Statement::NoOp("DISCARD ALL"),
        SqlStatement::Deallocate { .. } => Statement::NoOp("DEALLOCATE"),
        SqlStatement::CreateTable(t) if t.external => {
            // sqlparser's Hive-style form; route through DataFusion's grammar.
            return Err(QueryError::Syntax(format!(
                "could not parse '{}' as CREATE EXTERNAL TABLE ... STORED AS <format> LOCATION '<path>'",
                t.name
            )));
        }
        SqlStatement::CreateTable(_) => {
            return Err(QueryError::Unsupported(
                "CREATE TABLE (weir tables are files: use CREATE EXTERNAL TABLE ... STORED AS PARQUET LOCATION '...')"
                    .into(),
            ));
        }
        SqlStatement::CreateView(view) if view.temporary => {
            return Err(QueryError::Unsupported("CREATE TEMPORARY VIEW (views are kept in the catalog)".into()));
        }
        SqlStatement::CreateView(view) => Statement::CreateView(Box::new(view)),
        SqlStatement::CreateSchema { .. } => return Err(QueryError::Unsupported("CREATE SCHEMA".into())),
        SqlStatement::CreateDatabase { .. } => return Err(QueryError::Unsupported("CREATE DATABASE".into())),
        SqlStatement::CreateIndex(_) => return Err(QueryError::Unsupported("CREATE INDEX".into())),
        SqlStatement::AlterTable(_) => return Err(QueryError::Unsupported("ALTER TABLE".into())),
        SqlStatement::Update(_) => return Err(QueryError::Unsupported("UPDATE".into())),
        SqlStatement::Delete(_) => return Err(QueryError::Unsupported("DELETE".into())),
        SqlStatement::Truncate(_) => return Err(QueryError::Unsupported("TRUNCATE".into())),
        mut other => {
            super::column_names::name_like_postgres(&mut other);
            Statement::Query(DFStatement::Statement(Box::new(other)))
        }
    })
}

fn classify_set(set: Set) -> Result<Statement, QueryError> {
    Ok(match set {
        Set::SingleAssignment { variable, values, .. } => {
            let name = variable.to_string().trim_matches('"').to_string();
            let value = match values.as_slice() {
                [Expr::Identifier(id)] if id.value.eq_ignore_ascii_case("default") => None,
                _ => Some(values.iter().map(expr_text).collect::<Vec<_>>().join(", ")),
            };
            Statement::Set { name, value, tag: "SET" }
        }
        Set::SetTimeZone { value, .. } => {
            Statement::Set { name: "TimeZone".into(), value: Some(expr_text(&value)), tag: "SET" }
        }
        Set::SetNames { charset_name, .. } => {
            Statement::Set { name: "client_encoding".into(), value: Some(charset_name.to_string()), tag: "SET" }
        }
        Set::SetNamesDefault {} => Statement::Set { name: "client_encoding".into(), value: None, tag: "SET" },
        // SET TRANSACTION / SET SESSION CHARACTERISTICS / SET ROLE...: no-ops,
        // like the transactions they qualify.
        _ => Statement::NoOp("SET"),
    })
}

/// A SET value as text: string literals unquoted, everything else as written.
fn expr_text(expr: &Expr) -> String {
    match expr {
        Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(s), .. })
        | Expr::Value(ValueWithSpan { value: Value::DoubleQuotedString(s), .. }) => s.clone(),
        Expr::Identifier(id) => id.value.clone(),
        other => other.to_string(),
    }
}
