//! A Delta table as DataFusion reads it, and the factory behind
//! `CREATE EXTERNAL TABLE ... STORED AS DELTA`.
//!
//! Each query reads the version that is latest when it is planned (or the
//! version the table was pinned to with `OPTIONS ('version' ...)`): the
//! scan opens the log afresh, so commits made since the table was declared
//! are seen, and a commit made while the query runs is not half-seen.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::DataFusionError;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::{CreateExternalTable, Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use super::{DeltaError, TableDir};

/// The option that pins a table to one version (time travel).
pub const VERSION_OPTION: &str = "version";

#[derive(Debug)]
pub struct DeltaProvider {
    dir: TableDir,
    schema: SchemaRef,
    version: Option<i64>,
}

impl DeltaProvider {
    /// The table at `dir`, its columns as its log says at `version` (or now).
    pub async fn open(dir: &TableDir, version: Option<i64>) -> Result<DeltaProvider, DeltaError> {
        let table = super::open(dir, version).await?;
        // The columns as the crate's scan produces them (strings as views,
        // for one), so that plans over this provider match its batches.
        let scan = table.table_provider().await.map_err(|e| DeltaError::at(dir, e))?;
        Ok(DeltaProvider { dir: dir.clone(), schema: scan.schema(), version })
    }

    pub fn dir(&self) -> &TableDir {
        &self.dir
    }
}

#[async_trait]
impl TableProvider for DeltaProvider {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        // The snapshot's scan prunes files with them; DataFusion still
        // filters the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let table = super::open(&self.dir, self.version).await.map_err(external)?;
        let snapshot = table.table_provider().await?;
        // Columns by name: the table may have gained columns since it was
        // declared; the declared ones keep their place.
        let inner = snapshot.schema();
        let projection = match projection {
            Some(indices) => Some(
                indices
                    .iter()
                    .map(|&i| {
                        let name = self.schema.field(i).name();
                        inner.index_of(name).map_err(|_| {
                            DataFusionError::Plan(format!(
                                "column '{name}' is no longer in the Delta table at '{}'",
                                self.dir
                            ))
                        })
                    })
                    .collect::<Result<Vec<usize>>>()?,
            ),
            None => Some(
                self.schema
                    .fields()
                    .iter()
                    .map(|f| inner.index_of(f.name()).map_err(|e| DataFusionError::ArrowError(Box::new(e), None)))
                    .collect::<Result<Vec<usize>>>()?,
            ),
        };
        snapshot.scan(state, projection.as_ref(), filters, limit).await
    }
}

/// A Delta error as DataFusion carries weir's own errors (see `crate::error`).
fn external(e: DeltaError) -> DataFusionError {
    DataFusionError::External(Box::new(crate::error::QueryError::from(e)))
}

/// `STORED AS DELTA`: an existing table at the location, or, when columns
/// are declared and the location has no log yet, a new empty table.
#[derive(Debug, Default)]
pub struct TableFactory;

#[async_trait]
impl TableProviderFactory for TableFactory {
    async fn create(&self, _state: &dyn Session, cmd: &CreateExternalTable) -> Result<Arc<dyn TableProvider>> {
        let [location] = cmd.locations.as_slice() else {
            return Err(DataFusionError::Plan("a Delta table has one LOCATION".into()));
        };
        let dir = TableDir::from_location(location).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let version = match cmd.options.iter().find(|(k, _)| k.rsplit('.').next() == Some(VERSION_OPTION)) {
            Some((_, v)) => Some(v.parse::<i64>().map_err(|_| {
                DataFusionError::Plan(format!("option '{VERSION_OPTION}' must be a table version number, not '{v}'"))
            })?),
            None => None,
        };
        let declared: Schema = cmd.schema.as_arrow().clone();
        if !super::is_table(&dir).await.map_err(external)? && !declared.fields().is_empty() && version.is_none() {
            super::create(&dir, &declared).await.map_err(external)?;
        }
        let provider = DeltaProvider::open(&dir, version).await.map_err(external)?;
        if !declared.fields().is_empty() {
            for field in declared.fields() {
                if provider.schema.field_with_name(field.name()).is_err() {
                    return Err(DataFusionError::Plan(format!(
                        "column '{}' is not in the Delta table at '{}' (its columns: {})",
                        field.name(),
                        dir,
                        provider.schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        Ok(Arc::new(provider))
    }
}
