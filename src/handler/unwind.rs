//! A panic inside one statement becomes an error for that statement's
//! client (XX000), never a dropped connection. DataFusion re-raises a panic
//! of one of its tasks in whoever polls the result (`SpawnedTask::join_unwind`),
//! and a crafted Parquet footer is enough to cause one (parquet's push
//! decoder indexes past the end of a footer whose length field lies), so
//! every future and stream a statement hands to the wire is polled through
//! here.
//!
//! Upstream: the parquet reader's panics on corrupt input are reported as
//! apache/arrow-rs#9705 (truncated footers) and #10563 (a pushed buffer
//! shorter than its range, fixed by #10564 after the parquet 59 that weir
//! builds with). This guard stays after those land: it is about any panic.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::{FutureExt, Stream};

use crate::error::QueryError;

/// Runs `work`; a panic while it runs is returned as [`QueryError::Internal`],
/// described by `explain` (which may name the file that caused it).
pub async fn catch<T>(
    work: impl Future<Output = Result<T, QueryError>>,
    explain: impl FnOnce(String) -> QueryError,
) -> Result<T, QueryError> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(explain(panic_message(payload.as_ref()))),
    }
}

/// `stream`, with a panic while it is polled turned into one error item
/// (described by `explain`), after which the stream ends.
pub fn guard_stream(
    stream: SendableRecordBatchStream,
    explain: impl Fn(String) -> QueryError + Send + 'static,
) -> SendableRecordBatchStream {
    Box::pin(Guarded { schema: stream.schema(), inner: Some(stream), explain: Box::new(explain) })
}

/// Turns a statement that panicked into its client's error.
pub fn internal(message: String) -> QueryError {
    QueryError::Internal(format!("the statement failed inside the engine ({message}); the session is still usable"))
}

struct Guarded {
    schema: SchemaRef,
    /// `None` once the inner stream panicked: its state is unknown after
    /// that, so it is dropped and never polled again.
    inner: Option<SendableRecordBatchStream>,
    explain: Box<dyn Fn(String) -> QueryError + Send>,
}

impl Stream for Guarded {
    type Item = DFResult<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll_next(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                self.inner = None;
                let error = (self.explain)(panic_message(payload.as_ref()));
                Poll::Ready(Some(Err(DataFusionError::External(Box::new(error)))))
            }
        }
    }
}

impl RecordBatchStream for Guarded {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::StreamExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_panicking_future_is_an_internal_error() {
        let result: Result<(), QueryError> = catch(async { panic!("boom") }, internal).await;
        let err = result.unwrap_err();
        assert_eq!(err.sqlstate(), "XX000");
        assert!(err.message().contains("boom"), "{}", err.message());
    }

    #[tokio::test]
    async fn a_panicking_stream_yields_one_error_then_ends() {
        let schema = Arc::new(Schema::empty());
        let items = futures::stream::iter(0..3).map(|i| -> DFResult<RecordBatch> {
            if i == 1 {
                panic!("bad page");
            }
            Ok(RecordBatch::new_empty(Arc::new(Schema::empty())))
        });
        let stream: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(schema, items));
        let results: Vec<_> = guard_stream(stream, internal).collect().await;
        assert_eq!(results.len(), 2, "one batch, one error, then the end");
        assert!(results[0].is_ok());
        let err = QueryError::from(results.into_iter().nth(1).unwrap().unwrap_err());
        assert_eq!(err.sqlstate(), "XX000");
        assert!(err.message().contains("bad page"));
    }
}
