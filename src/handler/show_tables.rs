//! `SHOW TABLES`: the tables the catalog knows, with format and location;
//! logical views too (format `VIEW`, no location), as Hive lists them.

use datafusion::arrow::datatypes::SchemaRef;

use super::{Output, text_batch, text_schema};
use crate::engine::Engine;
use crate::error::QueryError;

pub fn schema() -> SchemaRef {
    text_schema(&["name", "format", "location"])
}

pub fn handle(engine: &Engine) -> Result<Output, QueryError> {
    let mut defs = engine.catalog.list()?;
    // Tables and views are queryable; streams and sinks have their own SHOW.
    defs.retain(|d| {
        use crate::catalog::RelationKind::*;
        matches!(d.kind, ExternalTable | MaterializedView | View)
    });
    defs.sort_by(|a, b| a.name.cmp(&b.name));
    let rows = defs.into_iter().map(|d| vec![d.name, d.format, d.location]).collect();
    Ok(Output::batch(text_batch(schema(), rows)?))
}
