//! Which tables a plan reads, subqueries included: the tables a failed read
//! is diagnosed against (`handler::query`), and the streams a continuous
//! query reads (`stream`). One walk, so neither misses a subquery.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{LogicalPlan, TableScan};

/// The tables `plan` scans, in plan order and once per scan, including
/// those read only inside a subquery (`EXISTS`, `IN`, a scalar subquery).
pub fn scanned_tables(plan: &LogicalPlan) -> Vec<String> {
    scanned_tables_named(plan, |_| None)
}

/// [`scanned_tables`], where `name` may name a scan after what it really
/// reads (a table function's scan after the table it is over).
pub fn scanned_tables_named(plan: &LogicalPlan, name: impl Fn(&TableScan) -> Option<String>) -> Vec<String> {
    let mut names = Vec::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            names.push(name(scan).unwrap_or_else(|| scan.table_name.table().to_string()));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names
}
