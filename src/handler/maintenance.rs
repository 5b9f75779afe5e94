//! `OPTIMIZE`, `VACUUM` and `DESCRIBE HISTORY` of a Delta table (an
//! external table `STORED AS DELTA`); the work is `delta::maintenance`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::{Output, table_key, text_batch, text_schema};
use crate::catalog::RelationKind;
use crate::delta::maintenance;
use crate::engine::Engine;
use crate::error::{CatalogError, QueryError};
use crate::sql::Maintenance;

pub fn schema(statement: &Maintenance) -> SchemaRef {
    match statement {
        Maintenance::Optimize { .. } => optimize_schema(),
        Maintenance::Vacuum { .. } => text_schema(&["path"]),
        Maintenance::DescribeHistory { .. } => history_schema(),
    }
}

fn optimize_schema() -> SchemaRef {
    let column = |name| Field::new(name, DataType::Int64, false);
    Arc::new(Schema::new(vec![
        column("files_removed"),
        column("files_added"),
        column("bytes_removed"),
        column("bytes_added"),
    ]))
}

fn history_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("version", DataType::Int64, false),
        Field::new("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())), true),
        Field::new("operation", DataType::Utf8, true),
        Field::new("operation_parameters", DataType::Utf8, true),
        Field::new("query", DataType::Utf8, true),
        Field::new("epoch", DataType::Int64, true),
    ]))
}

pub async fn handle(engine: &Engine, statement: Maintenance) -> Result<Output, QueryError> {
    match &statement {
        Maintenance::Optimize { name, target_size } => {
            let dir = delta_dir(engine, name, "OPTIMIZE")?;
            let target = match target_size {
                Some(size) => Some(
                    crate::stream::parse_size(size)
                        .map_err(|reason| QueryError::InvalidOptionValue { option: "target_size".into(), reason })?,
                ),
                None => None,
            };
            let done = maintenance::optimize(&dir, target).await?;
            let columns: Vec<ArrayRef> =
                [done.files_removed as i64, done.files_added as i64, done.bytes_removed, done.bytes_added]
                    .into_iter()
                    .map(|n| Arc::new(Int64Array::from(vec![n])) as ArrayRef)
                    .collect();
            Ok(Output::batch(
                RecordBatch::try_new(optimize_schema(), columns).map_err(datafusion::error::DataFusionError::from)?,
            ))
        }
        Maintenance::Vacuum { name, retain_hours, dry_run } => {
            let dir = delta_dir(engine, name, "VACUUM")?;
            let deleted = maintenance::vacuum(&dir, *retain_hours, *dry_run).await?;
            let rows = deleted.into_iter().map(|path| vec![path]).collect();
            Ok(Output::batch(text_batch(schema(&statement), rows)?))
        }
        Maintenance::DescribeHistory { name, limit } => {
            let dir = delta_dir(engine, name, "DESCRIBE HISTORY")?;
            let commits = maintenance::history(&dir, *limit).await?;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(commits.iter().map(|c| c.version).collect::<Vec<_>>())),
                Arc::new(
                    TimestampMillisecondArray::from(commits.iter().map(|c| c.timestamp).collect::<Vec<_>>())
                        .with_timezone("+00:00"),
                ),
                Arc::new(StringArray::from(commits.iter().map(|c| Some(c.operation.as_str())).collect::<Vec<_>>())),
                Arc::new(StringArray::from(commits.iter().map(|c| Some(c.parameters.as_str())).collect::<Vec<_>>())),
                Arc::new(StringArray::from(commits.iter().map(|c| c.query.as_deref()).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(commits.iter().map(|c| c.epoch).collect::<Vec<_>>())),
            ];
            Ok(Output::batch(
                RecordBatch::try_new(history_schema(), columns).map_err(datafusion::error::DataFusionError::from)?,
            ))
        }
    }
}

/// The directory of the Delta table `name` (an external table or a
/// materialized view stored as Delta): 42P01 when there is no such
/// relation, 42809 when it is not a Delta table.
fn delta_dir(
    engine: &Engine,
    name: &datafusion::sql::sqlparser::ast::ObjectName,
    statement: &str,
) -> Result<crate::delta::TableDir, QueryError> {
    let key = table_key(name)?;
    let def = engine.catalog.get(&key)?.ok_or_else(|| CatalogError::UnknownTable(key.clone()))?;
    let table_like = matches!(def.kind, RelationKind::ExternalTable | RelationKind::MaterializedView);
    if !table_like || !def.format.eq_ignore_ascii_case("delta") {
        let what = if table_like { format!("a table stored as {}", def.format) } else { def.kind.described().to_string() };
        return Err(QueryError::WrongObjectType(format!("{statement} needs a Delta table; '{key}' is {what}")));
    }
    crate::delta::TableDir::from_location(&def.location)
}
