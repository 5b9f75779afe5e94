//! Parsing: SQL text in, weir statements out. Our own DDL is recognised
//! here; everything else is DataFusion's and passes through untouched.

mod classify;
mod client_compat;
mod column_names;
pub mod limits;
mod maintenance;
mod parser;
pub mod scalar_subqueries;
pub mod search_path;
pub mod streaming;

pub use classify::{Statement, TransactionKind};
pub use maintenance::Maintenance;
pub use parser::Parser;
pub use streaming::{AlterAction, CreateContinuousQuery, CreateStream, Options, SinkTarget, StreamingKind};

/// The catalog key of a table name: the last identifier, normalised like
/// DataFusion does (unquoted → lower case). Only `weir.public` is valid as
/// a qualifier.
pub fn table_key(name: &datafusion::sql::sqlparser::ast::ObjectName) -> Result<String, crate::error::QueryError> {
    let idents: Vec<String> = name
        .0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() })
        .collect();
    match idents.as_slice() {
        [table] => Ok(table.clone()),
        [schema, table] if schema == crate::catalog::SCHEMA => Ok(table.clone()),
        [db, schema, table] if db == crate::catalog::DATABASE && schema == crate::catalog::SCHEMA => Ok(table.clone()),
        _ => Err(crate::error::QueryError::Catalog(crate::error::CatalogError::UnknownTable(name.to_string()))),
    }
}
