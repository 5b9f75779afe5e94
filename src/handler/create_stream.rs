//! `CREATE STREAM name (...) WITH (connector = ...)`: declares a source.
//! Nothing is read until a continuous query reads the stream; options are
//! checked now (by the stream manager), so a typo fails here and not at
//! three in the morning.

use super::{Output, table_key};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sql::CreateStream;

pub async fn handle(engine: &Engine, ddl: CreateStream) -> Result<Output, QueryError> {
    let name = table_key(&ddl.name)?;
    if engine.catalog.get(&name)?.is_some() || engine.context().table_exist(name.as_str())? {
        if ddl.if_not_exists {
            return Ok(Output::exists_skipping("CREATE STREAM", &name));
        }
        return Err(CatalogError::DuplicateTable(name).into());
    }
    engine.streams.create_stream(&name, &ddl).await?;
    Ok(Output::command("CREATE STREAM"))
}
