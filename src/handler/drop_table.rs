//! `DROP TABLE [IF EXISTS] a, b`: forgets the definitions. The files under
//! the table's location are the user's data and are never touched.

use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};

pub async fn handle(engine: &Engine, names: &[ObjectName], if_exists: bool, cascade: bool) -> Result<Output, QueryError> {
    // Check all names first so that a missing one drops nothing.
    let mut keys = Vec::with_capacity(names.len());
    let mut missing = Vec::new();
    for name in names {
        let key = table_key(name)?;
        match engine.catalog.get(&key)? {
            None if if_exists => {
                missing.push(key);
                continue;
            }
            None => return Err(CatalogError::UnknownTable(key).into()),
            Some(def) if def.kind != crate::catalog::RelationKind::ExternalTable => {
                let kind = def.kind.as_str().replace('_', " ");
                return Err(QueryError::WrongObjectType(format!(
                    "'{key}' is {}, not a table; use DROP {}",
                    def.kind.described(),
                    kind.to_uppercase()
                )));
            }
            Some(_) => {}
        }
        if let Some(writer) = engine.streams.writer_of(&key) {
            return Err(QueryError::DependentObjects(format!(
                "cannot drop table '{key}': sink '{writer}' writes into it; drop the sink first"
            )));
        }
        keys.push(key);
    }
    if !cascade {
        for key in &keys {
            // Refused before anything is dropped.
            crate::views::drop_dependents(&engine.catalog, "table", key, false).await?;
        }
    }
    for key in keys {
        crate::views::drop_dependents(&engine.catalog, "table", &key, cascade).await?;
        drop_one(engine, &key).await?;
    }
    Ok(Output::missing_skipping("DROP TABLE", "table", &missing))
}

/// Removes one table's definition and its live table, in one catalog call.
pub async fn drop_one(engine: &Engine, key: &str) -> Result<(), QueryError> {
    engine.catalog.drop(key).await?;
    Ok(())
}
