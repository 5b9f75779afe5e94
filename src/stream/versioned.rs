//! A view whose every epoch is a new version (output modes update and
//! complete): readers see exactly one committed version directory, the one
//! the runner pointed to after its last commit, never a mix of two. This is
//! the reading side; `sink::versioned` writes the versions.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

#[derive(Debug)]
pub struct VersionedTable {
    pub schema: SchemaRef,
    /// The committed version directory; `None` before the first commit.
    pub current: Arc<RwLock<Option<PathBuf>>>,
}

#[async_trait]
impl TableProvider for VersionedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let current = self.current.read().map_err(|_| DataFusionError::Internal("version pointer poisoned".into()))?.clone();
        let Some(dir) = current else {
            return Ok(MemorySourceConfig::try_new_exec(&[vec![]], self.schema.clone(), projection.cloned())?);
        };
        let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(self.schema.clone());
        ListingTable::try_new(config)?.scan(state, projection, filters, limit).await
    }
}
