//! `CREATE [OR REPLACE] EXTERNAL TABLE [IF NOT EXISTS] ...`: a schema-on-read
//! table over files, remembered by the catalog.

use datafusion::sql::parser::CreateExternalTable;

use super::{Output, table_key};
use crate::catalog::{RelationDef, RelationKind, tables};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};

pub async fn handle(engine: &Engine, mut cmd: CreateExternalTable) -> Result<Output, QueryError> {
    let name = table_key(&cmd.name)?;
    if cmd.temporary {
        return Err(QueryError::Unsupported("CREATE TEMPORARY EXTERNAL TABLE".into()));
    }
    if engine.catalog.get(&name)?.is_some() {
        if cmd.if_not_exists {
            return Ok(Output::exists_skipping("CREATE EXTERNAL TABLE", &name));
        }
        if !cmd.or_replace {
            return Err(CatalogError::DuplicateTable(name).into());
        }
        super::drop_table::drop_one(engine, &name).await?;
    } else if engine.context().table_exist(name.as_str())? {
        // Not ours but visible (e.g. a built-in); never shadow it silently.
        return Err(CatalogError::DuplicateTable(name).into());
    }

    // Without declared columns the schema comes from the files, so there
    // must be files: a missing directory is an error, not an empty table.
    let create_missing = !cmd.columns.is_empty();
    let mut resolved = Vec::with_capacity(cmd.locations.len());
    for location in &cmd.locations {
        resolved.push(tables::resolve_any(&engine.sandbox, location, create_missing, &cmd.options).await?);
    }
    cmd.locations = resolved;
    cmd.if_not_exists = false;
    cmd.or_replace = false;
    let definition = tables::canonical_ddl(&cmd);
    let def = RelationDef {
        name: name.clone(),
        kind: RelationKind::ExternalTable,
        definition,
        location: cmd.locations.join(", "),
        format: cmd.file_type.to_uppercase(),
        partition_columns: tables::partition_columns(&cmd),
    };

    let table = tables::build(&engine.context().state(), cmd).await?;
    engine.catalog.create(def, Some(table)).await?;
    Ok(Output::command("CREATE EXTERNAL TABLE"))
}
