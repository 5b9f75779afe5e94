//! `CREATE SINK name INTO table AS SELECT ...` and `CREATE MATERIALIZED
//! VIEW name AS SELECT ...`: continuous queries. A sink appends to an
//! existing Parquet table; a view creates and owns its table under the
//! warehouse, queryable by the view's name. The stream manager plans,
//! records and starts them.

use super::{Output, table_key};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sql::{CreateContinuousQuery, SinkTarget};

pub async fn handle(engine: &Engine, cq: CreateContinuousQuery) -> Result<Output, QueryError> {
    let tag = match cq.target {
        SinkTarget::Table(_) | SinkTarget::Kafka(_) => "CREATE SINK",
        SinkTarget::OwnTable => "CREATE MATERIALIZED VIEW",
    };
    let name = table_key(&cq.name)?;
    if engine.catalog.get(&name)?.is_some() || engine.context().table_exist(name.as_str())? {
        if cq.if_not_exists {
            return Ok(Output::exists_skipping(tag, &name));
        }
        return Err(CatalogError::DuplicateTable(name).into());
    }
    engine.streams.create_query(&name, &cq).await?;
    Ok(Output::command(tag))
}
