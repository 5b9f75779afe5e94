//! `weir produce`: writes stdin to a Kafka topic, one record per line, for demo scripts and tests.
//!
//! Each line (without its line ending) becomes one record value with no key;
//! blank lines are skipped. Records go to the partition given with
//! `--partition`, otherwise librdkafka's default partitioner spreads them.
//! The broker is checked first, so an unreachable broker or a missing topic
//! is a clear error after the timeout rather than a hang.

use std::io::BufRead;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// What `weir produce` was asked to do.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// Comma-separated `host:port` list, as librdkafka's `bootstrap.servers`.
    pub bootstrap_servers: String,
    pub topic: String,
    /// Send every record to this partition instead of letting the partitioner pick.
    pub partition: Option<i32>,
    /// How long to wait for the broker: to answer at first, and to acknowledge each record.
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot reach a Kafka broker at {servers} within {timeout:?}: {reason}")]
    Unreachable { servers: String, timeout: Duration, reason: String },
    #[error("topic '{topic}' does not exist on {servers} ({reason}); create it first")]
    UnknownTopic { topic: String, servers: String, reason: String },
    #[error("topic '{topic}' has {partitions} partition(s); there is no partition {partition}")]
    UnknownPartition { topic: String, partitions: usize, partition: i32 },
    #[error("cannot create a Kafka producer: {0}")]
    Client(String),
    #[error("cannot read stdin: {0}")]
    Input(#[from] std::io::Error),
    #[error("cannot queue record {record} for '{topic}': {reason}")]
    Enqueue { topic: String, record: u64, reason: String },
    #[error("{failed} of {total} record(s) were not delivered to '{topic}': {first_error}")]
    Delivery { topic: String, failed: u64, total: u64, first_error: String },
}

/// Counts acknowledgements and remembers the first delivery failure and the
/// first client-level error (such as "Connect to ipv4#127.0.0.1:9092 failed:
/// Connection refused"), which explain a failure better than what follows.
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    first_client_error: Mutex<Option<String>>,
}

impl Tally {
    fn remember_first(slot: &Mutex<Option<String>>, message: String) {
        if let Ok(mut slot) = slot.lock()
            && slot.is_none()
        {
            *slot = Some(message);
        }
    }

    fn take(slot: &Mutex<Option<String>>) -> Option<String> {
        slot.lock().ok().and_then(|mut s| s.take())
    }
}

impl ClientContext for Tally {
    // librdkafka's own log lines are noise on a CLI; its errors are reported
    // through `error` below and end up in our error messages.
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _message: &str) {}

    fn error(&self, _error: KafkaError, reason: &str) {
        Tally::remember_first(&self.first_client_error, reason.to_string());
    }
}

impl ProducerContext for Tally {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Tally::remember_first(&self.first_failure, error.to_string());
            }
        }
    }
}

/// Sends every non-blank line of `input` as one record and waits until the
/// broker has acknowledged all of them. Returns how many were delivered.
pub fn run(options: &ProduceOptions, mut input: impl BufRead) -> Result<u64, ProduceError> {
    // Not generic below here: the producer is compiled once, in this crate.
    run_lines(options, &mut input)
}

fn run_lines(options: &ProduceOptions, input: &mut dyn BufRead) -> Result<u64, ProduceError> {
    let timeout_ms = options.timeout.as_millis().clamp(1, i32::MAX as u128).to_string();
    let producer: ThreadedProducer<Tally> = ClientConfig::new()
        .set("bootstrap.servers", &options.bootstrap_servers)
        // A record not acknowledged within the timeout fails instead of
        // being retried forever.
        .set("message.timeout.ms", &timeout_ms)
        .set("socket.connection.setup.timeout.ms", &timeout_ms)
        // One record per batch. Slower, but brokers that store whole batches
        // (tansu 0.6) then serve reads from any offset and report exact
        // watermarks; demo volumes do not notice.
        .set("batch.num.messages", "1")
        .create_with_context(Tally::default())
        .map_err(|e| ProduceError::Client(e.to_string()))?;

    check_topic(&producer, options)?;

    let mut total = 0u64;
    for line in input.lines() {
        let line = line?;
        let value = line.strip_suffix('\r').unwrap_or(&line);
        if value.trim().is_empty() {
            continue;
        }
        total += 1;
        send(&producer, options, value.as_bytes(), total)?;
    }

    // Every record is either acknowledged or failed once message.timeout.ms
    // has passed; the extra second lets the last callbacks arrive.
    let flushed = producer.flush(options.timeout + Duration::from_secs(1));
    let tally = producer.context();
    let failed = tally.failed.load(Ordering::Relaxed);
    let delivered = tally.delivered.load(Ordering::Relaxed);
    let undelivered = total.saturating_sub(delivered);
    if failed > 0 || undelivered > 0 || flushed.is_err() {
        let first_error = Tally::take(&tally.first_failure)
            .or_else(|| Tally::take(&tally.first_client_error))
            .or_else(|| flushed.err().map(|e| e.to_string()))
            .unwrap_or_else(|| "no acknowledgement from the broker".to_string());
        return Err(ProduceError::Delivery {
            topic: options.topic.clone(),
            failed: undelivered.max(failed),
            total,
            first_error,
        });
    }
    Ok(delivered)
}

/// Asks the broker for the topic's metadata: proves it is reachable, that the
/// topic exists and, with `--partition`, that the partition does.
fn check_topic(producer: &ThreadedProducer<Tally>, options: &ProduceOptions) -> Result<(), ProduceError> {
    let unreachable = |reason: String| ProduceError::Unreachable {
        servers: options.bootstrap_servers.clone(),
        timeout: options.timeout,
        reason,
    };
    let unknown = |reason: String| ProduceError::UnknownTopic {
        topic: options.topic.clone(),
        servers: options.bootstrap_servers.clone(),
        reason,
    };
    let deadline = Instant::now() + options.timeout;
    loop {
        let metadata = producer
            .client()
            .fetch_metadata(Some(&options.topic), deadline.saturating_duration_since(Instant::now()))
            .map_err(|e| {
                let reason = Tally::take(&producer.context().first_client_error).unwrap_or_else(|| e.to_string());
                unreachable(reason)
            })?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == options.topic) else {
            return Err(unknown("not in the broker's metadata".to_string()));
        };
        match topic.error().map(RDKafkaErrorCode::from) {
            None => {
                if let Some(partition) = options.partition
                    && !topic.partitions().iter().any(|p| p.id() == partition)
                {
                    return Err(ProduceError::UnknownPartition {
                        topic: options.topic.clone(),
                        partitions: topic.partitions().len(),
                        partition,
                    });
                }
                return Ok(());
            }
            // A topic being created (or auto-created by this very request)
            // has no leader for a moment.
            Some(RDKafkaErrorCode::LeaderNotAvailable) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(code) => return Err(unknown(code.to_string())),
        }
    }
}

/// Enqueues record number `number` (from 1), waiting for room while
/// librdkafka's local queue is full.
fn send(
    producer: &ThreadedProducer<Tally>,
    options: &ProduceOptions,
    value: &[u8],
    number: u64,
) -> Result<(), ProduceError> {
    let mut record = BaseRecord::<[u8], [u8]>::to(&options.topic).payload(value);
    if let Some(partition) = options.partition {
        record = record.partition(partition);
    }
    let deadline = Instant::now() + options.timeout;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) if Instant::now() < deadline => {
                // The producer's thread drains the queue; give it a moment.
                record = returned;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((error, _)) => {
                let reason = Tally::take(&producer.context().first_failure).unwrap_or_else(|| error.to_string());
                return Err(ProduceError::Enqueue { topic: options.topic.clone(), record: number, reason });
            }
        }
    }
}
