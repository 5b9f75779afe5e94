//! `CREATE [OR REPLACE] VIEW name [(columns)] AS SELECT ...` and `DROP VIEW
//! [IF EXISTS] name, ... [CASCADE]`: logical views kept in the catalog
//! (see `crate::views`).

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{CreateView, ObjectName};

use super::{Output, table_key};
use crate::catalog::{RelationDef, RelationKind};
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::views::LogicalView;

pub async fn create(engine: &Engine, view: CreateView) -> Result<Output, QueryError> {
    let name = table_key(&view.name)?;
    let existing = engine.catalog.get(&name)?;
    let replacing = match &existing {
        Some(def) if view.or_replace && def.kind == RelationKind::View => true,
        Some(def) if view.or_replace => {
            return Err(QueryError::WrongObjectType(format!("\"{name}\" is {}, not a view", def.kind.described())));
        }
        Some(_) if view.if_not_exists => return Ok(Output::exists_skipping("CREATE VIEW", &name)),
        Some(_) => return Err(CatalogError::DuplicateTable(name).into()),
        None if engine.context().table_exist(name.as_str())? => {
            return Err(CatalogError::DuplicateTable(name).into());
        }
        None => false,
    };
    if crate::views::reads(&engine.catalog, &view.query, &name)? {
        return Err(QueryError::DependentObjects(format!("view \"{name}\" would read itself")));
    }
    let logical = LogicalView::new(&engine.context().state(), &name, &view).await?;
    let definition = datafusion::catalog::TableProvider::get_table_definition(&logical).unwrap_or_default().to_string();
    if replacing {
        engine.catalog.redefine(&name, &definition, false).await?;
        engine.catalog.attach(&name, Arc::new(logical))?;
    } else {
        let def = RelationDef {
            name: name.clone(),
            kind: RelationKind::View,
            definition,
            location: String::new(),
            format: "VIEW".into(),
            partition_columns: Vec::new(),
        };
        engine.catalog.create(def, Some(Arc::new(logical))).await?;
    }
    Ok(Output::command("CREATE VIEW"))
}

pub async fn drop(engine: &Engine, names: &[ObjectName], if_exists: bool, cascade: bool) -> Result<Output, QueryError> {
    // Check all names first so that a missing one drops nothing.
    let mut keys = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        let key = table_key(name)?;
        match engine.catalog.get(&key)? {
            Some(def) if def.kind == RelationKind::View => keys.push(key),
            Some(def) => {
                let kind = def.kind.as_str().replace('_', " ");
                return Err(QueryError::WrongObjectType(format!(
                    "'{key}' is {}, not a view; use DROP {}",
                    def.kind.described(),
                    if def.kind == RelationKind::ExternalTable { "TABLE".to_string() } else { kind.to_uppercase() }
                )));
            }
            None if if_exists => missing.push(key),
            None => return Err(CatalogError::UnknownRelation { kind: "view".into(), name: key }.into()),
        }
    }
    for key in keys {
        crate::views::drop_dependents(&engine.catalog, "view", &key, cascade).await?;
        engine.catalog.drop(&key).await?;
    }
    Ok(Output::missing_skipping("DROP VIEW", "view", &missing))
}
