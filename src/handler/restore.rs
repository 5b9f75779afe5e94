//! Start-up restore: streams and continuous queries come back from the
//! catalog. The server calls this once, after `Engine::open` and before it
//! accepts clients; it goes through the same `define` and `start` as
//! `CREATE STREAM` and `CREATE SINK`, so a restored object passes the same
//! checks (sandbox, options) as a new one.

use crate::catalog::{QueryStatusRow, RelationKind};
use crate::engine::Engine;
use crate::error::QueryError;
use crate::sql::Statement;
use crate::stream::Status;

/// Re-creates streams and restarts continuous queries from the catalog, in
/// creation order (a query's stream and target exist before it). A query
/// that cannot be restored is marked failed with the reason, not fatal.
pub async fn streaming(engine: &Engine) -> Result<(), QueryError> {
    for def in engine.catalog.list()? {
        if def.kind == RelationKind::ExternalTable {
            continue;
        }
        let parsed = engine.parser.parse(&def.definition);
        let result = match (def.kind, parsed.map(|mut v| v.pop())) {
            (RelationKind::Stream, Ok(Some(Statement::CreateStream(ddl)))) => {
                match super::create_stream::define(engine, &def.name, &ddl).await {
                    Ok(stream) => engine.streams.register_stream(stream),
                    Err(e) => Err(e),
                }
            }
            (RelationKind::Sink | RelationKind::MaterializedView, Ok(Some(Statement::CreateContinuousQuery(cq)))) => {
                let finished = super::create_query::recorded_status(engine, &def.name).await == Some(Status::Finished);
                super::create_query::start(engine, &def.name, &cq, Some(&def), finished).await
            }
            (_, Err(e)) => Err(e),
            _ => Err(QueryError::Unsupported(format!("stored definition of '{}'", def.name))),
        };
        if let Err(e) = result {
            tracing::error!(relation = %def.name, "not restored: {}", e.message());
            let row = QueryStatusRow {
                query: def.name.clone(),
                status: "failed".into(),
                error: Some(format!("not restored at start-up: {}", e.message())),
            };
            let _ = engine.catalog.store().set_status(row).await;
        }
    }
    Ok(())
}
