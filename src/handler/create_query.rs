//! `CREATE SINK name INTO table AS SELECT ...` and `CREATE MATERIALIZED
//! VIEW name AS SELECT ...`: continuous queries. A sink appends to an
//! existing Parquet table; a view creates and owns its table under the
//! warehouse, queryable by the view's name. The stream manager plans,
//! records and starts them. `CREATE OR REPLACE` of an existing one of the
//! same kind replaces it (`stream::replace`).

use super::{Output, table_key};
use crate::catalog::RelationKind;
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sql::{CreateContinuousQuery, SinkTarget};

pub async fn handle(engine: &Engine, cq: CreateContinuousQuery) -> Result<Output, QueryError> {
    let tag = match cq.target {
        SinkTarget::Table(_) | SinkTarget::Kafka(_) => "CREATE SINK",
        SinkTarget::OwnTable => "CREATE MATERIALIZED VIEW",
    };
    let name = table_key(&cq.name)?;
    let kind = match cq.target {
        SinkTarget::Table(_) | SinkTarget::Kafka(_) => RelationKind::Sink,
        SinkTarget::OwnTable => RelationKind::MaterializedView,
    };
    let existing = engine.catalog.get(&name)?;
    if cq.or_replace
        && let Some(def) = &existing
    {
        if def.kind != kind {
            return Err(QueryError::WrongObjectType(format!(
                "\"{name}\" is {}, not a {}",
                def.kind.described(),
                kind.as_str().replace('_', " ")
            )));
        }
        engine.streams.replace_query(def, &cq).await?;
        return Ok(Output::command(tag));
    }
    if existing.is_some() || engine.context().table_exist(name.as_str())? {
        if cq.if_not_exists {
            return Ok(Output::exists_skipping(tag, &name));
        }
        return Err(CatalogError::DuplicateTable(name).into());
    }
    let mut cq = cq;
    if cq.or_replace {
        // Nothing to replace: a plain CREATE, recorded without OR REPLACE.
        crate::stream::replace::split_reset_state(&cq.options)?;
        cq.options.remove(crate::stream::replace::RESET_STATE);
        cq.or_replace = false;
        cq.text = cq.render(&cq.options);
    }
    engine.streams.create_query(&name, &cq).await?;
    Ok(Output::command(tag))
}
