//! `DROP STREAM | SINK | MATERIALIZED VIEW [IF EXISTS] name, ...`. Dropping
//! a continuous query stops it cleanly (an epoch in flight is abandoned,
//! committed files stay). A view's table is its own and goes with it; a
//! sink's target table is the user's and stays.

use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key};
use crate::catalog::RelationKind;
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sql::StreamingKind;

pub async fn handle(engine: &Engine, kind: StreamingKind, names: &[ObjectName], if_exists: bool) -> Result<Output, QueryError> {
    let wanted = match kind {
        StreamingKind::Stream => RelationKind::Stream,
        StreamingKind::Sink => RelationKind::Sink,
        StreamingKind::MaterializedView => RelationKind::MaterializedView,
    };
    let mut defs = Vec::new();
    for name in names {
        let key = table_key(name)?;
        match engine.catalog.get(&key)? {
            Some(def) if def.kind == wanted => defs.push(def),
            Some(def) => {
                return Err(QueryError::WrongObjectType(format!(
                    "'{key}' is a {}, not a {}",
                    def.kind.as_str().replace('_', " "),
                    kind.sql_name().to_lowercase()
                )));
            }
            None if if_exists => {}
            None => return Err(CatalogError::UnknownRelation { kind: kind.sql_name().to_lowercase(), name: key }.into()),
        }
    }
    for def in defs {
        let key = def.name.as_str();
        match wanted {
            RelationKind::Stream => {
                engine.streams.unregister_stream(key)?;
                engine.catalog.drop(key).await?;
            }
            _ => {
                engine.streams.stop(key).await?;
                // The view's table goes with its definition.
                engine.catalog.drop(key).await?;
                if wanted == RelationKind::MaterializedView {
                    // Only the directory the catalog recorded for the view,
                    // and only if it lies in the warehouse.
                    let dir = std::path::PathBuf::from(def.location.trim_end_matches('/'));
                    if let Err(e) = engine.warehouse.remove_dir(&dir) {
                        tracing::warn!(view = %key, "view files not removed: {e}");
                    }
                }
            }
        }
    }
    Ok(Output::command(&format!("DROP {}", kind.sql_name())))
}
