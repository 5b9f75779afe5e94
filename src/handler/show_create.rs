//! `SHOW CREATE TABLE t`: the DDL that recreates the table, as stored
//! (secret options masked).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key, text_batch, text_schema};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};

pub fn schema() -> SchemaRef {
    text_schema(&["name", "create_sql"])
}

pub fn handle(engine: &Engine, name: &ObjectName) -> Result<Output, QueryError> {
    let key = table_key(name)?;
    let def = engine.catalog.get(&key)?.ok_or(CatalogError::UnknownTable(key))?;
    Ok(Output::batch(text_batch(schema(), vec![vec![def.name, crate::catalog::tables::shown_definition(&def.definition)]])?))
}
