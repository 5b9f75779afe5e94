//! The Kafka sink: a continuous query's rows as JSON records on a topic.
//!
//! At least once: an epoch's records are produced and acknowledged by the
//! broker before the epoch (and so the source offsets) is committed. A crash
//! between the two re-produces that epoch after the restart. Exactly-once
//! would need Kafka transactions tied to the commit; tansu, the broker the
//! tests run, has no transactions (EndTxn), so weir does not claim it.
//! Aggregations in update/complete mode key each record by its group.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::json::LineDelimitedWriter;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use super::{EpochSink, PreCommit, Sink, SinkError};
use crate::sql::Options;

pub const OPTIONS: &[&str] = &["bootstrap_servers", "topic", "format", "properties."];

/// How long a record may wait for its acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct KafkaOut {
    producer: FutureProducer,
    topic: String,
    /// Columns whose values form the record key (the group key), if any.
    key_columns: Vec<usize>,
    /// Sent, not yet acknowledged: awaited before the epoch commits.
    pending: Mutex<Vec<DeliveryFuture>>,
}

impl std::fmt::Debug for KafkaOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaOut").field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// Checks the target options; the error names what is wrong.
pub fn check(options: &Options) -> Result<(), String> {
    let Some(topic) = options.get("topic") else {
        return Err("a Kafka sink needs topic = '...'".into());
    };
    crate::source::kafka::check_topic(topic)?;
    match options.get("format").map(|f| f.to_ascii_lowercase()) {
        None => Ok(()),
        Some(f) if f == "json" => Ok(()),
        Some(other) => Err(format!("format '{other}' for a Kafka sink (it writes json)")),
    }
}

impl KafkaOut {
    pub fn new(options: &Options, key_columns: Vec<usize>) -> Result<KafkaOut, String> {
        check(options)?;
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", options.get("bootstrap_servers").map(String::as_str).unwrap_or("127.0.0.1:9092"))
            .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string());
        for (key, value) in options {
            if let Some(property) = key.strip_prefix("properties.") {
                config.set(property, value);
            }
        }
        let producer: FutureProducer = config.create().map_err(|e| format!("kafka producer: {e}"))?;
        let topic = options.get("topic").cloned().unwrap_or_default();
        Ok(KafkaOut { producer, topic, key_columns, pending: Mutex::new(Vec::new()) })
    }

    /// Queues `batch` as JSON records (one per row).
    pub async fn send(&self, batch: &RecordBatch) -> Result<(), String> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let values = json_lines(batch)?;
        let keys = if self.key_columns.is_empty() {
            None
        } else {
            Some(json_lines(&batch.project(&self.key_columns).map_err(|e| e.to_string())?)?)
        };
        for (i, value) in values.iter().enumerate() {
            let mut record = FutureRecord::to(&self.topic).payload(value.as_slice());
            if let Some(keys) = &keys {
                record = record.key(keys[i].as_slice());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(future) => {
                        if let Ok(mut pending) = self.pending.lock() {
                            pending.push(future);
                        }
                        break;
                    }
                    // The local queue is full: let librdkafka drain it.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(format!("producing to '{}': {e}", self.topic)),
                }
            }
        }
        Ok(())
    }

    /// Waits until the broker acknowledged everything sent so far.
    pub async fn flush(&self) -> Result<(), String> {
        let pending = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return Err("kafka sink state poisoned".into()),
        };
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(format!("Kafka did not take a record for '{}': {e}", self.topic)),
                Err(_) => return Err(format!("delivery to '{}' was cancelled", self.topic)),
            }
        }
        let _ = self.producer.flush(Duration::from_secs(0));
        Ok(())
    }
}

/// A topic behind the sink traits. An epoch's records are sent as they
/// come and acknowledged in `prepare`, before the catalog commit; there is
/// nothing to publish afterwards, and nothing to take back on abort (a
/// retried epoch sends its records again: at least once).
pub struct KafkaSink {
    out: Arc<KafkaOut>,
}

impl KafkaSink {
    pub fn new(options: &Options, key_columns: Vec<usize>) -> Result<KafkaSink, SinkError> {
        Ok(KafkaSink { out: Arc::new(KafkaOut::new(options, key_columns).map_err(SinkError::Config)?) })
    }
}

struct KafkaEpoch {
    out: Arc<KafkaOut>,
}

#[async_trait]
impl Sink for KafkaSink {
    fn begin(&self, _batch_id: i64) -> Box<dyn EpochSink> {
        Box::new(KafkaEpoch { out: self.out.clone() })
    }

    async fn commit(&self, _pre_commit: &PreCommit) -> Result<(), SinkError> {
        Ok(())
    }

    async fn recover(&self, _last: &PreCommit) -> Result<(), SinkError> {
        Ok(())
    }
}

#[async_trait]
impl EpochSink for KafkaEpoch {
    async fn write(&mut self, batch: &RecordBatch) -> Result<(), SinkError> {
        self.out.send(batch).await.map_err(SinkError::Delivery)
    }

    async fn prepare(self: Box<Self>) -> Result<PreCommit, SinkError> {
        self.out.flush().await.map_err(SinkError::Delivery)?;
        Ok(PreCommit::default())
    }

    fn abort(self: Box<Self>) {}
}

/// One JSON object per row.
fn json_lines(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, String> {
    let mut buffer = Vec::new();
    {
        let mut writer = LineDelimitedWriter::new(&mut buffer);
        writer.write(batch).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(buffer.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
}
