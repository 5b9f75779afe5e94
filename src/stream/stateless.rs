//! The operator of a query that keeps nothing across chunks (filters,
//! projections, joins with tables): its plan runs over each chunk and every
//! row it produces is written at once.

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;

use super::operator::{Operator, Output, Snapshot};
use super::ready_query::Instance;
use super::runner::RunError;

type DFResult<T> = datafusion::error::Result<T>;

pub(super) struct Stateless;

#[async_trait]
impl Operator for Stateless {
    async fn process(
        &mut self,
        query: &Instance,
        input: usize,
        batches: Vec<RecordBatch>,
        out: &mut Output,
    ) -> Result<(), RunError> {
        query.fill(input, batches)?;
        query.execute(&query.plan.plan, out).await
    }

    async fn end_epoch(&mut self, _query: &Instance, _out: &mut Output) -> Result<Option<i64>, RunError> {
        // No watermark is tracked: nothing waits for one.
        Ok(None)
    }

    fn snapshot(&self, _watermarks: &[Option<i64>]) -> DFResult<Snapshot> {
        Ok(Snapshot::default())
    }

    fn restore(&mut self, _bytes: &[u8]) -> DFResult<Vec<(usize, Option<i64>)>> {
        Ok(Vec::new())
    }
}
