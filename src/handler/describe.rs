//! `DESCRIBE t`: columns, their SQL types and nullability.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key, text_batch, text_schema};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::types::sql_type_name;

pub fn schema() -> SchemaRef {
    text_schema(&["column_name", "data_type", "is_nullable"])
}

pub async fn handle(engine: &Engine, name: &ObjectName) -> Result<Output, QueryError> {
    let key = table_key(name)?;
    if !engine.context().table_exist(key.as_str())? {
        return Err(CatalogError::UnknownTable(key).into());
    }
    let provider = engine.context().table_provider(key.as_str()).await?;
    let rows = provider
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let nullable = if f.is_nullable() { "YES" } else { "NO" };
            vec![f.name().clone(), sql_type_name(f.data_type()), nullable.to_string()]
        })
        .collect();
    Ok(Output::batch(text_batch(schema(), rows)?))
}
