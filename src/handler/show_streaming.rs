//! `SHOW STREAMS`, `SHOW SINKS`, `SHOW MATERIALIZED VIEWS` and
//! `SHOW CREATE STREAM | SINK | MATERIALIZED VIEW name`.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Output, table_key, text_batch, text_schema};
use crate::catalog::RelationKind;
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sql::StreamingKind;

pub fn schema(kind: StreamingKind) -> SchemaRef {
    match kind {
        StreamingKind::Stream => text_schema(&["name", "connector", "format", "location", "on_error"]),
        StreamingKind::Sink => {
            text_schema(&["name", "stream", "target", "trigger", "status", "last_batch_id", "last_error"])
        }
        StreamingKind::MaterializedView => {
            text_schema(&["name", "stream", "location", "trigger", "status", "last_batch_id", "last_error"])
        }
    }
}

pub fn handle(engine: &Engine, kind: StreamingKind) -> Result<Output, QueryError> {
    let rows = match kind {
        StreamingKind::Stream => {
            let defs = engine.catalog.list()?;
            engine
                .streams
                .streams()
                .into_iter()
                .map(|s| {
                    let location = defs.iter().find(|d| d.name == s.name).map(|d| d.location.clone()).unwrap_or_default();
                    vec![
                        s.name.clone(),
                        s.connector.name().to_string(),
                        s.spec.options.get("format").cloned().unwrap_or_default(),
                        location,
                        format!("{:?}", s.on_error).to_lowercase().replace("deadletter", "dead_letter"),
                    ]
                })
                .collect()
        }
        StreamingKind::Sink | StreamingKind::MaterializedView => {
            let defs = engine.catalog.list()?;
            let wanted = if kind == StreamingKind::Sink { RelationKind::Sink } else { RelationKind::MaterializedView };
            engine
                .streams
                .queries()
                .into_iter()
                .filter(|q| q.kind == wanted)
                .map(|q| {
                    let target = if kind == StreamingKind::Sink {
                        q.target.clone()
                    } else {
                        defs.iter().find(|d| d.name == q.name).map(|d| d.location.clone()).unwrap_or_default()
                    };
                    vec![
                        q.name,
                        q.stream,
                        target,
                        q.trigger,
                        q.state.status.as_str().to_string(),
                        q.state.last_batch_id.map(|b| b.to_string()).unwrap_or_default(),
                        q.state.error.unwrap_or_default(),
                    ]
                })
                .collect()
        }
    };
    Ok(Output::batch(text_batch(schema(kind), rows)?))
}

pub fn show_create_schema() -> SchemaRef {
    text_schema(&["name", "create_sql"])
}

pub fn show_create(engine: &Engine, kind: StreamingKind, name: &ObjectName) -> Result<Output, QueryError> {
    let key = table_key(name)?;
    let wanted = match kind {
        StreamingKind::Stream => RelationKind::Stream,
        StreamingKind::Sink => RelationKind::Sink,
        StreamingKind::MaterializedView => RelationKind::MaterializedView,
    };
    let def = engine
        .catalog
        .get(&key)?
        .filter(|d| d.kind == wanted)
        .ok_or_else(|| CatalogError::UnknownRelation { kind: kind.sql_name().to_lowercase(), name: key.clone() })?;
    Ok(Output::batch(text_batch(show_create_schema(), vec![vec![def.name, def.definition]])?))
}
