//! Read-only tables whose rows are computed when a query scans them
//! (`weir.query_progress`, `weir.queries`): always current, free while
//! nobody looks.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

type Rows = dyn Fn() -> DFResult<RecordBatch> + Send + Sync;

pub struct SystemTable {
    schema: SchemaRef,
    /// Computed on the blocking pool: it may read the metastore.
    rows: Arc<Rows>,
}

impl SystemTable {
    pub fn new(schema: SchemaRef, rows: impl Fn() -> DFResult<RecordBatch> + Send + Sync + 'static) -> SystemTable {
        SystemTable { schema, rows: Arc::new(rows) }
    }
}

impl std::fmt::Debug for SystemTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemTable").field("schema", &self.schema).finish_non_exhaustive()
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let rows = self.rows.clone();
        let batch = tokio::task::spawn_blocking(move || rows())
            .await
            .map_err(|e| datafusion::error::DataFusionError::Execution(format!("system table not computed: {e}")))??;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema.clone(), projection.cloned())?)
    }
}
