//! Query results as Flight streams: an output's batches in their wire types
//! (a command's affected-row count as one row), encoded as Arrow IPC and run
//! a bounded distance ahead of the client.

use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use futures::{StreamExt, TryStreamExt};
use tonic::{Response, Status};

use super::{BoxStream, status, wire_types};
use crate::error::QueryError;
use crate::handler::Output;

/// An output as Arrow batches in their wire types: rows as they stream, a
/// command as one row holding its affected-row count.
pub(super) fn output_batches(output: Output) -> (SchemaRef, BoxStream<RecordBatch>) {
    let rows = match output {
        Output::Rows { schema, stream } => {
            let wire = wire_types::wire_schema(&schema);
            let batch_schema = wire.clone();
            let batches = stream.map(move |batch| {
                let batch = batch.map_err(|e| status(&QueryError::from(e)))?;
                wire_types::to_wire(batch, &batch_schema).map_err(|e| Status::internal(e.to_string()))
            });
            return (wire, Box::pin(batches));
        }
        Output::Command { rows, .. } => rows.unwrap_or(0),
        Output::Transaction(_) => 0,
    };
    let (schema, batch) = affected_rows(rows);
    let batch = batch.map_err(|e| Status::internal(e.to_string()));
    (schema, Box::pin(futures::stream::once(async move { batch })))
}

/// A DoGet response streaming `output` as Arrow IPC.
pub(super) fn stream_output(output: Output) -> Response<BoxStream<arrow_flight::FlightData>> {
    let (schema, batches) = output_batches(output);
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches.map_err(|s| FlightError::Tonic(Box::new(s))))
        .map_err(Status::from);
    Response::new(read_ahead(Box::pin(flight)))
}

/// Encoded messages a DoGet may have ready before the client asks for them.
const READ_AHEAD_MESSAGES: usize = 4;

/// Runs `messages` in a task of its own, up to `READ_AHEAD_MESSAGES` ahead
/// of the client. The response body is only polled while the client's
/// HTTP/2 flow-control window is open; without this, the query would sit
/// idle each time the window closed instead of decoding the next batches.
/// The task stops when the client goes away.
fn read_ahead(mut messages: BoxStream<arrow_flight::FlightData>) -> BoxStream<arrow_flight::FlightData> {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_MESSAGES);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = tx.closed() => return,
            };
            let Some(message) = next else { return };
            let failed = message.is_err();
            if tx.send(message).await.is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }))
}

pub(super) fn affected_rows(n: usize) -> (SchemaRef, Result<RecordBatch, datafusion::arrow::error::ArrowError>) {
    let schema = Arc::new(Schema::new(vec![Field::new("rows", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![n as i64]))]);
    (schema, batch)
}

/// A one-batch DoGet response (catalog listings).
pub(super) fn single_batch(
    schema: SchemaRef,
    batch: Result<RecordBatch, FlightError>,
) -> Response<BoxStream<arrow_flight::FlightData>> {
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { batch }))
        .map_err(Status::from);
    Response::new(Box::pin(flight))
}

/// All of an output's batches, for the responses that carry them in one message.
pub(super) async fn collect_output(output: Output) -> Result<(SchemaRef, Vec<RecordBatch>), Status> {
    let (schema, batches) = output_batches(output);
    Ok((schema, batches.try_collect().await?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow_flight::FlightData;
    use futures::StreamExt;
    use tonic::Status;

    use super::{BoxStream, READ_AHEAD_MESSAGES, read_ahead};

    /// An endless source that counts how many messages were taken from it.
    fn counted() -> (Arc<AtomicUsize>, BoxStream<FlightData>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let source = futures::stream::repeat_with(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(FlightData::default())
        });
        (pulled, Box::pin(source))
    }

    #[tokio::test]
    async fn runs_a_bounded_distance_ahead_and_stops_when_the_client_leaves() {
        let (pulled, source) = counted();
        let mut messages = read_ahead(source);
        for _ in 0..3 {
            messages.next().await.unwrap().unwrap();
        }
        // The task fills the channel, however long the scheduler takes to run it.
        while pulled.load(Ordering::SeqCst) < 3 + READ_AHEAD_MESSAGES {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let ahead = pulled.load(Ordering::SeqCst);
        assert!(ahead <= 3 + READ_AHEAD_MESSAGES + 1, "it should stop at the bound, pulled {ahead}");
        drop(messages);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let after = pulled.load(Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(pulled.load(Ordering::SeqCst), after, "the task must stop once the client is gone");
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_after_it_is_delivered() {
        let source = futures::stream::iter(vec![
            Ok(FlightData::default()),
            Err(Status::internal("disk gone")),
            Ok(FlightData::default()),
        ]);
        let got: Vec<_> = read_ahead(Box::pin(source)).collect().await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap_err().message(), "disk gone");
    }
}
