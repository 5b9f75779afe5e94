//! A view whose every epoch is a new version (output modes update and
//! complete): readers see exactly one committed version directory, the one
//! the runner pointed to after its last commit, never a mix of two. This is
//! the reading side; `sink::versioned` writes the versions and deletes the
//! older ones.
//!
//! A scan holds its version ([`VersionHold`]) for as long as its plan or
//! any of its streams lives, so the commit that retires the version cannot
//! delete files the query has yet to open.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ChildStats, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, StatisticsArgs};
use futures::StreamExt;

use crate::sink::{VersionHold, Versions};

#[derive(Debug)]
pub struct VersionedTable {
    pub schema: SchemaRef,
    pub versions: Arc<Versions>,
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
        let Some(hold) = self.versions.hold() else {
            return Ok(MemorySourceConfig::try_new_exec(&[vec![]], self.schema.clone(), projection.cloned())?);
        };
        let url = ListingTableUrl::parse(format!("{}/", hold.dir().display()))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(self.schema.clone());
        let input = ListingTable::try_new(config)?.scan(state, projection, filters, limit).await?;
        Ok(Arc::new(HoldingExec { input, hold: Arc::new(hold) }))
    }
}

/// Passes its input through, holding the version the input reads.
#[derive(Debug, Clone)]
struct HoldingExec {
    input: Arc<dyn ExecutionPlan>,
    hold: Arc<VersionHold>,
}

impl DisplayAs for HoldingExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ViewVersionExec: {}", self.hold.dir().display())
    }
}

impl ExecutionPlan for HoldingExec {
    fn name(&self) -> &str {
        "ViewVersionExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(datafusion::error::DataFusionError::Internal(format!(
                "ViewVersionExec takes one input, got {}",
                children.len()
            )));
        }
        Ok(Arc::new(HoldingExec { input: children.swap_remove(0), hold: self.hold.clone() }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DFResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let hold = self.hold.clone();
        // The stream may outlive the plan (a portal, a Flight ticket): it
        // holds the version too.
        let batches = input.map(move |batch| {
            let _holding = &hold;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    // Statistics and filters pass through, so a view's scan is planned as
    // well as a plain table's (join order, dynamic filters).
    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(&self, input_stats: &[Arc<Statistics>], _args: &StatisticsArgs) -> DFResult<Arc<Statistics>> {
        Ok(input_stats[0].clone())
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> DFResult<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> DFResult<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}
