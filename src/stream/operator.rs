//! The operator a continuous query runs: the one place the runtime differs
//! by what a query does. The epoch loop hands it each chunk, tells it when
//! an epoch ends (after the watermarks moved), and asks it for the state to
//! commit or gives it the state to restore; it never asks which kind it
//! holds. The shape follows Arroyo's `ArrowOperator` (`process_batch`,
//! `handle_watermark`, `handle_checkpoint`), with an epoch end in place of
//! a watermark message: weir's watermarks move once per epoch.
//!
//! The implementations live next to their logic: `stateless` (the plan
//! over each chunk), `aggregate::AggregateOperator` (incremental state per
//! group), `join::state::JoinOperator` (stream-stream join buffers) and
//! `aligned::state::AlignedOperator` (queries evaluated window by window).

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;

use super::ready_query::Instance;
use super::runner::RunError;
use crate::sink::{EpochSink, SinkError};

type DFResult<T> = datafusion::error::Result<T>;

#[async_trait]
pub(super) trait Operator: Send + Sync {
    /// One chunk of input `input` (0, or 1 for the right stream of two),
    /// as read: rows behind the watermark are the operator's to split off
    /// ([`Instance::admit`]). Rows it can produce now go to `out`.
    async fn process(
        &mut self,
        query: &Instance,
        input: usize,
        batches: Vec<RecordBatch>,
        out: &mut Output,
    ) -> Result<(), RunError>;

    /// The epoch ends and each input's watermark has moved: writes what
    /// that closes (windows, unmatched join rows, a view's new version).
    /// Returns the watermark the output is complete up to, for progress.
    async fn end_epoch(&mut self, query: &Instance, out: &mut Output) -> Result<Option<i64>, RunError>;

    /// The state the epoch's commit records, taken after [`Self::end_epoch`];
    /// `watermarks` are the inputs' (kept in the snapshot where the state
    /// restores them).
    fn snapshot(&self, watermarks: &[Option<i64>]) -> DFResult<Snapshot>;

    /// Restores what [`Self::snapshot`] recorded. Returns the inputs whose
    /// watermark the snapshot carried, with it.
    fn restore(&mut self, bytes: &[u8]) -> DFResult<Vec<(usize, Option<i64>)>>;
}

/// Kept state as the commit records it.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) bytes: Vec<u8>,
    /// Rows and bytes held, for progress; None for a stateless query.
    pub(super) size: Option<(usize, usize)>,
}

/// Where an operator's rows go during one epoch.
pub(super) struct Output {
    pub(super) sink: Box<dyn EpochSink>,
    /// `<query>_late`, with `late_rows = 'table'`.
    pub(super) late: Option<Box<dyn EpochSink>>,
    /// Rows written to the sink.
    pub(super) rows: u64,
    /// Rows dropped for being older than the watermark.
    pub(super) late_rows: u64,
}

impl Output {
    pub(super) async fn write(&mut self, batch: &RecordBatch) -> Result<(), RunError> {
        self.rows += batch.num_rows() as u64;
        self.sink.write(batch).await.map_err(sink_failure("writing the output"))
    }

    /// Rows behind the watermark: counted, and kept when there is a table for them.
    pub(super) async fn late(&mut self, late: &[RecordBatch]) -> Result<(), RunError> {
        if let Some(sink) = self.late.as_mut() {
            for batch in late {
                sink.write(batch).await.map_err(sink_failure("writing late rows"))?;
            }
        }
        Ok(())
    }
}

/// A sink's failure as the runner treats it: a target that cannot work
/// fails the query; anything else is retried from the last commit.
pub(super) fn sink_failure(what: &str) -> impl Fn(SinkError) -> RunError + '_ {
    move |e| match e {
        SinkError::Config(m) => RunError::Fatal(m),
        other => RunError::Transient(format!("{what}: {other}")),
    }
}
