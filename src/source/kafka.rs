//! The Kafka connector: every partition of one topic, read with rdkafka
//! from offsets weir's own checkpoint holds (no consumer-group commits), and
//! decoded in chunks straight to Arrow, with `_partition`, `_offset`,
//! `_timestamp` and `_key` beside the declared columns.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{BadRecord, Bound, Chunk, DATA_LOSS_HINT, OnDataLoss, Poll, RecordDecoder, Source, SourceError, SourceSpec};

/// Connector options; `properties.*` pass through to librdkafka.
pub const OPTIONS: &[&str] = &["bootstrap_servers", "topic", "startup_mode", "properties."];

/// How long a metadata or offsets request may take before the broker
/// counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Lag is refreshed from the broker at most this often.
const LAG_REFRESH: Duration = Duration::from_secs(2);

pub fn metadata_fields() -> Vec<Field> {
    vec![
        Field::new("_partition", DataType::Int32, true),
        Field::new("_offset", DataType::Int64, true),
        Field::new("_timestamp", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new("_key", DataType::Utf8, true),
    ]
}

/// Where a first start begins (`startup_mode`).
#[derive(Debug, Clone, PartialEq)]
enum Startup {
    Earliest,
    Latest,
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

/// Remembers the last client-level error (e.g. all brokers down), which
/// librdkafka reports through a callback rather than through `recv`.
#[derive(Clone, Default)]
struct ErrorSlot(Arc<Mutex<Option<String>>>);

impl ClientContext for ErrorSlot {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if let Ok(mut slot) = self.0.lock() {
                *slot = Some(format!("Kafka brokers unreachable: {reason}"));
            }
        } else {
            tracing::debug!("kafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ErrorSlot {}

pub struct KafkaSource {
    spec: SourceSpec,
    topic: String,
    bootstrap: String,
    startup: Startup,
    consumer: Option<Arc<StreamConsumer<ErrorSlot>>>,
    errors: ErrorSlot,
    /// Next offset to read, per partition: the checkpoint.
    positions: BTreeMap<i32, i64>,
    /// With a bounded trigger: the high watermarks at restore.
    end: Option<BTreeMap<i32, i64>>,
    high_watermarks: BTreeMap<i32, i64>,
    lag_checked: Option<Instant>,
    decoder: RecordDecoder,
    on_loss: OnDataLoss,
    /// Loss found and skipped, not yet reported.
    lost: Vec<String>,
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or
/// `..`. Checked at CREATE, because librdkafka answers any other name with
/// a null topic handle that rdkafka 0.39 unwraps (`Client::native_topic`),
/// a panic in the query's task.
pub fn check_topic(topic: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." || !topic.chars().all(legal) {
        return Err(format!(
            "'{topic}' is not a valid Kafka topic name: use 1 to 249 letters, digits, '.', '_' or '-' (not '.' or '..')"
        ));
    }
    Ok(())
}

impl KafkaSource {
    pub fn new(spec: SourceSpec, on_loss: OnDataLoss) -> Result<KafkaSource, SourceError> {
        let option = |k: &str| spec.options.get(k).cloned();
        let bootstrap = option("bootstrap_servers").unwrap_or_else(|| "127.0.0.1:9092".into());
        let topic = option("topic").ok_or_else(|| SourceError::Fatal("a kafka stream needs topic = '...'".into()))?;
        check_topic(&topic).map_err(SourceError::Fatal)?;
        let startup = match option("startup_mode").map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("latest") => Startup::Latest,
            Some("earliest") => Startup::Earliest,
            Some(other) if other.starts_with("timestamp:") => {
                let text = &other["timestamp:".len()..];
                let parsed = chrono_like_parse(text)
                    .ok_or_else(|| SourceError::Fatal(format!("startup_mode 'timestamp:{text}' needs an RFC 3339 time")))?;
                Startup::Timestamp(parsed)
            }
            Some(other) => {
                return Err(SourceError::Fatal(format!(
                    "unknown startup_mode '{other}'; expected earliest, latest or timestamp:<rfc3339>"
                )));
            }
        };
        let decoder = RecordDecoder::new(spec.value_schema.clone(), spec.format.clone());
        Ok(KafkaSource {
            spec,
            topic,
            bootstrap,
            startup,
            consumer: None,
            errors: ErrorSlot::default(),
            positions: BTreeMap::new(),
            end: None,
            high_watermarks: BTreeMap::new(),
            lag_checked: None,
            decoder,
            on_loss,
            lost: Vec::new(),
        })
    }

    fn create_consumer(&self) -> Result<StreamConsumer<ErrorSlot>, SourceError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", format!("weir-{}", self.spec.stream))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // An assigned offset that no longer exists (retention, a
            // recreated topic) is an error, not a silent jump: the retry's
            // `restore` then finds the loss and applies `fail_on_data_loss`.
            .set("auto.offset.reset", "error")
            .set("socket.timeout.ms", "10000");
        for (key, value) in &self.spec.options {
            if let Some(property) = key.strip_prefix("properties.") {
                config.set(property, value);
            }
        }
        config
            .create_with_context(self.errors.clone())
            .map_err(|e| SourceError::Fatal(format!("kafka client configuration: {e}")))
    }

    /// Runs a blocking librdkafka call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StreamConsumer<ErrorSlot>) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, SourceError> {
        let Some(consumer) = self.consumer.clone() else {
            return Err(SourceError::Fatal("kafka source used before restore".into()));
        };
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || f(&consumer))
            .await
            .map_err(|e| SourceError::Transient(format!("kafka request task: {e}")))?
            .map_err(|e| SourceError::Transient(format!("Kafka at {bootstrap} did not answer: {e}")))
    }

    async fn refresh_lag(&mut self) {
        if self.lag_checked.is_some_and(|t| t.elapsed() < LAG_REFRESH) {
            return;
        }
        self.lag_checked = Some(Instant::now());
        let topic = self.topic.clone();
        let partitions: Vec<i32> = self.positions.keys().copied().collect();
        let result = self
            .blocking(move |c| {
                partitions
                    .into_iter()
                    .map(|p| c.fetch_watermarks(&topic, p, Duration::from_secs(1)).map(|(_, high)| (p, high)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        if let Ok(highs) = result {
            self.high_watermarks = highs.into_iter().collect();
        }
    }

    fn finished(&self) -> bool {
        match &self.end {
            Some(end) => end.iter().all(|(p, high)| self.positions.get(p).is_some_and(|pos| pos >= high)),
            None => false,
        }
    }
}

/// RFC 3339 → milliseconds since the epoch, through Arrow's own parser.
fn chrono_like_parse(text: &str) -> Option<i64> {
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text).ok().map(|n| n / 1_000_000)
}

#[async_trait::async_trait]
impl Source for KafkaSource {
    async fn restore(&mut self, committed: &[serde_json::Value], bound: Bound) -> Result<(), SourceError> {
        self.consumer = Some(Arc::new(self.create_consumer()?));
        let topic = self.topic.clone();
        let metadata = self.blocking(move |c| c.fetch_metadata(Some(&topic), REQUEST_TIMEOUT)).await?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(SourceError::Transient(format!(
                "topic '{}' does not exist on {} (yet)",
                self.topic, self.bootstrap
            )));
        }

        // Committed positions first; partitions without one start by
        // `startup_mode`, resolved to numbers now so the first checkpoint
        // pins them (a later restart must not re-resolve 'latest').
        let saved: BTreeMap<i32, i64> = committed
            .last()
            .and_then(|c| c.get("offsets"))
            .and_then(|o| o.as_object())
            .map(|o| o.iter().filter_map(|(p, v)| Some((p.parse().ok()?, v.as_i64()?))).collect())
            .unwrap_or_default();
        let topic = self.topic.clone();
        let wanted = partitions.clone();
        let watermarks = self
            .blocking(move |c| {
                wanted
                    .into_iter()
                    .map(|p| c.fetch_watermarks(&topic, p, REQUEST_TIMEOUT).map(|w| (p, w)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut by_time = BTreeMap::new();
        if let Startup::Timestamp(ms) = self.startup {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                if !saved.contains_key(p) {
                    tpl.add_partition_offset(&self.topic, *p, Offset::Offset(ms))
                        .map_err(|e| SourceError::Fatal(e.to_string()))?;
                }
            }
            let found = self.blocking(move |c| c.offsets_for_times(tpl, REQUEST_TIMEOUT)).await?;
            for e in found.elements() {
                if let Offset::Offset(o) = e.offset() {
                    by_time.insert(e.partition(), o);
                }
            }
        }
        self.positions.clear();
        let mut highs = BTreeMap::new();
        let mut lost: Vec<String> = saved
            .iter()
            .filter(|(p, _)| !partitions.contains(p))
            .map(|(p, o)| format!("partition {p} is gone (the query had read it up to offset {o})"))
            .collect();
        for (p, (low, high)) in watermarks {
            let start = match saved.get(&p) {
                Some(&o) if o > high => {
                    lost.push(format!(
                        "partition {p} ends at offset {high}, before the committed offset {o} (the topic was recreated, \
                         or the broker lost records); the query goes on from offset {low}"
                    ));
                    low
                }
                Some(&o) if o < low => {
                    lost.push(format!(
                        "partition {p}: offsets {o} to {} were deleted (retention) before they were read",
                        low - 1
                    ));
                    low
                }
                Some(&o) => o,
                None => match self.startup {
                    Startup::Earliest => low,
                    Startup::Latest => high,
                    Startup::Timestamp(_) => by_time.get(&p).copied().unwrap_or(high),
                },
            };
            self.positions.insert(p, start.max(low));
            highs.insert(p, high);
        }
        if !lost.is_empty() {
            let what = format!("input lost on topic '{}': {}", self.topic, lost.join("; "));
            if self.on_loss == OnDataLoss::Fail {
                return Err(SourceError::Fatal(format!("{what}. {DATA_LOSS_HINT}")));
            }
            tracing::warn!(stream = %self.spec.stream, "{what}; going on (fail_on_data_loss = false)");
            self.lost.push(what);
        }
        self.high_watermarks = highs.clone();
        self.end = (bound == Bound::AvailableNow).then_some(highs);

        let mut tpl = TopicPartitionList::new();
        for (p, offset) in &self.positions {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*offset))
                .map_err(|e| SourceError::Fatal(e.to_string()))?;
        }
        if let Some(consumer) = &self.consumer {
            consumer.assign(&tpl).map_err(|e| SourceError::Transient(format!("assigning partitions: {e}")))?;
        }
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<Poll, SourceError> {
        if self.finished() {
            return Ok(Poll::End);
        }
        let Some(consumer) = self.consumer.clone() else {
            return Err(SourceError::Fatal("kafka source used before restore".into()));
        };
        let deadline = Instant::now() + wait;
        // Payloads are copied into one arena so the decoder sees them together.
        let mut arena: Vec<u8> = Vec::new();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let mut meta: Vec<(i32, i64, Option<i64>, Option<String>)> = Vec::new();
        while ranges.len() < max_records {
            let remaining =
                if ranges.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
            let message = match tokio::time::timeout(remaining, consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(SourceError::Transient(format!("reading topic '{}': {e}", self.topic))),
                Ok(Ok(m)) => m,
            };
            let (p, offset) = (message.partition(), message.offset());
            let next = self.positions.get(&p).copied().unwrap_or(0);
            if offset < next {
                continue;
            }
            if let Some(end) = &self.end
                && end.get(&p).is_none_or(|high| offset >= *high)
            {
                continue;
            }
            self.positions.insert(p, offset + 1);
            let start = arena.len();
            arena.extend_from_slice(message.payload().unwrap_or_default());
            ranges.push((start, arena.len()));
            let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned());
            meta.push((p, offset, message.timestamp().to_millis(), key));
        }
        if ranges.is_empty() {
            if let Ok(mut slot) = self.errors.0.lock()
                && let Some(reason) = slot.take()
            {
                return Err(SourceError::Transient(reason));
            }
            if self.finished() {
                return Ok(Poll::End);
            }
            return Ok(Poll::Idle);
        }
        if let Ok(mut slot) = self.errors.0.lock() {
            *slot = None;
        }
        self.refresh_lag().await;

        let records: Vec<&[u8]> = ranges.iter().map(|(s, e)| &arena[*s..*e]).collect();
        let (values, bad) = self
            .decoder
            .decode(&records)
            .map_err(|e| SourceError::Fatal(format!("decoding topic '{}': {e}", self.topic)))?;
        let mut bad_records = Vec::with_capacity(bad.len());
        let mut is_bad = vec![false; records.len()];
        for (i, error) in bad {
            if let Some(flag) = is_bad.get_mut(i) {
                *flag = true;
            }
            let (p, o, _, _) = &meta[i];
            bad_records.push(BadRecord { raw: records[i].to_vec(), error, position: format!("partition {p} offset {o}") });
        }
        let good = meta.iter().zip(&is_bad).filter(|(_, bad)| !**bad).map(|(m, _)| m);
        let (mut partitions, mut offsets, mut times, mut keys) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (p, o, t, k) in good {
            partitions.push(*p);
            offsets.push(*o);
            times.push(t.map(|ms| ms * 1000));
            keys.push(k.clone());
        }
        let mut columns: Vec<ArrayRef> = values.columns().to_vec();
        columns.push(Arc::new(Int32Array::from(partitions)));
        columns.push(Arc::new(Int64Array::from(offsets)));
        columns.push(Arc::new(TimestampMicrosecondArray::from(times)));
        columns.push(Arc::new(StringArray::from(keys)));
        let batch = RecordBatch::try_new(self.spec.schema.clone(), columns)
            .map_err(|e| SourceError::Fatal(format!("assembling a chunk of '{}': {e}", self.topic)))?;
        Ok(Poll::Data(Chunk { batches: vec![batch], input_records: records.len(), bad_records }))
    }

    fn checkpoint(&mut self) -> serde_json::Value {
        let offsets: serde_json::Map<String, serde_json::Value> =
            self.positions.iter().map(|(p, o)| (p.to_string(), serde_json::Value::from(*o))).collect();
        serde_json::json!({ "topic": self.topic, "offsets": offsets })
    }

    fn take_data_loss(&mut self) -> Option<String> {
        (!self.lost.is_empty()).then(|| std::mem::take(&mut self.lost).join("; "))
    }

    fn partitions(&self) -> Vec<i32> {
        self.positions.keys().copied().collect()
    }

    fn lag(&self) -> Option<i64> {
        if self.high_watermarks.is_empty() {
            return None;
        }
        Some(
            self.high_watermarks
                .iter()
                .map(|(p, high)| (high - self.positions.get(p).copied().unwrap_or(*high)).max(0))
                .sum(),
        )
    }
}
