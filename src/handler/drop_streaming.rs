//! `DROP STREAM | SINK | MATERIALIZED VIEW [IF EXISTS] name, ...`: checks
//! every name first (a missing one drops nothing), then the stream manager
//! stops and forgets each (see `stream::lifecycle`).

use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key};
use crate::catalog::RelationKind;
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sql::StreamingKind;

pub async fn handle(
    engine: &Engine,
    kind: StreamingKind,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<Output, QueryError> {
    let wanted = match kind {
        StreamingKind::Stream => RelationKind::Stream,
        StreamingKind::Sink => RelationKind::Sink,
        StreamingKind::MaterializedView => RelationKind::MaterializedView,
    };
    let mut defs = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        let key = table_key(name)?;
        match engine.catalog.get(&key)? {
            Some(def) if def.kind == wanted => defs.push(def),
            Some(def) => {
                return Err(QueryError::WrongObjectType(format!(
                    "'{key}' is {}, not a {}",
                    def.kind.described(),
                    kind.sql_name().to_lowercase()
                )));
            }
            None if if_exists => missing.push(key),
            None => return Err(CatalogError::UnknownRelation { kind: kind.sql_name().to_lowercase(), name: key }.into()),
        }
    }
    if !cascade {
        for def in &defs {
            // Refused before anything is dropped.
            crate::views::drop_dependents(&engine.catalog, &kind.sql_name().to_lowercase(), &def.name, false).await?;
        }
    }
    for def in defs {
        crate::views::drop_dependents(&engine.catalog, &kind.sql_name().to_lowercase(), &def.name, cascade).await?;
        match wanted {
            RelationKind::Stream => engine.streams.drop_stream(&def.name).await?,
            _ => engine.streams.drop_query(&def).await?,
        }
    }
    Ok(Output::missing_skipping(&format!("DROP {}", kind.sql_name()), &kind.sql_name().to_lowercase(), &missing))
}
