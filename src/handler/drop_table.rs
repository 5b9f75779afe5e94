//! `DROP TABLE [IF EXISTS] a, b`: forgets the definitions. The files under
//! the table's location are the user's data and are never touched.

use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};

pub fn handle(engine: &Engine, names: &[ObjectName], if_exists: bool) -> Result<Output, QueryError> {
    // Check all names first so that a missing one drops nothing.
    let mut keys = Vec::with_capacity(names.len());
    for name in names {
        let key = table_key(name)?;
        if engine.catalog.get(&key)?.is_none() {
            if if_exists {
                continue;
            }
            return Err(CatalogError::UnknownTable(key).into());
        }
        keys.push(key);
    }
    for key in keys {
        drop_one(engine, &key)?;
    }
    Ok(Output::command("DROP TABLE"))
}

/// Removes one table: catalog first (the durable truth), then DataFusion.
pub fn drop_one(engine: &Engine, key: &str) -> Result<(), QueryError> {
    engine.catalog.store().remove(key)?;
    engine.context().deregister_table(key)?;
    Ok(())
}
