//! A real Kafka-protocol broker for tests: tansu (in-memory storage) as a
//! child process on a free loopback port, plus blocking helpers to create
//! topics and produce records through librdkafka.
//!
//! The binary comes from `WEIR_TANSU` (exported by `scripts/test.sh`), else
//! `~/.cache/weir/tansu/bin/tansu`. Every helper blocks the calling thread and
//! needs no async runtime, so it works from plain `#[test]`s and from inside
//! `#[tokio::test]`s alike (librdkafka's own threads complete the work).
//!
//! The storage is in memory: [`Broker::stop`] (or a crash) loses every topic
//! and record. [`Broker::pause`] freezes the broker instead (SIGSTOP): clients
//! see a broker that stopped answering, and nothing is lost on
//! [`Broker::resume`].
#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// How long a fresh broker may take to answer a metadata request.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Limit for one admin or produce round trip.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// A running tansu broker, killed on drop.
///
/// A broker kept in a `static` is never dropped; a watchdog process kills
/// tansu when the test process exits, however it exits.
pub struct Broker {
    child: Option<Child>,
    /// `sh` waiting on a pipe from this process; when the pipe closes (this
    /// process exited), it kills tansu.
    watchdog: Option<Child>,
    port: u16,
    binary: PathBuf,
    /// Holds `tansu.log` (stdout and stderr of every run of this broker).
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker on a free loopback port and waits until it answers.
    pub fn start() -> Broker {
        let binary = tansu_binary();
        let dir = tempfile::Builder::new().prefix("weir-tansu-").tempdir().expect("temp dir for tansu");
        // The port is free when we look; another process may take it before
        // tansu binds it, so a broker that exits at once gets a new port.
        let mut broker = Broker { child: None, watchdog: None, port: free_port(), binary, dir };
        let mut last_failure = String::new();
        for _ in 0..3 {
            match broker.spawn_and_wait() {
                Ok(()) => return broker,
                Err(failure) => {
                    last_failure = failure;
                    broker.kill();
                    broker.port = free_port();
                }
            }
        }
        panic!("{last_failure}");
    }

    /// `host:port` for librdkafka's `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A librdkafka configuration pointing at this broker; add settings and
    /// `create()` a client. tansu needs no protocol settings, but see
    /// [`Broker::produce`] on batches and [`Broker::consumer`] on `group.id`.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    /// Creates `name` with `partitions` partitions and waits until the
    /// broker's metadata lists all of them with a leader.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().expect("create admin client");
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_LIMIT));
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = futures::executor::block_on(admin.create_topics(&[topic], &options))
            .unwrap_or_else(|e| panic!("create topic '{name}': {e}{}", self.log_tail_note()));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("create topic '{topic}': {code}{}", self.log_tail_note());
            }
        }
        let consumer: BaseConsumer = self.client_config().create().expect("create metadata client");
        let deadline = Instant::now() + REQUEST_LIMIT;
        loop {
            let seen = consumer.fetch_metadata(Some(name), Duration::from_secs(5)).ok().and_then(|m| {
                m.topics()
                    .iter()
                    .find(|t| t.name() == name && t.error().is_none())
                    .map(|t| t.partitions().iter().filter(|p| p.leader() >= 0 && p.error().is_none()).count())
            });
            if seen == Some(partitions as usize) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "topic '{name}' did not show {partitions} partitions with leaders within {REQUEST_LIMIT:?} (saw {seen:?}){}",
                self.log_tail_note()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Deletes `name` and waits until the broker's metadata no longer lists it.
    pub fn delete_topic(&self, name: &str) {
        let admin: AdminClient<DefaultClientContext> = self.client_config().create().expect("create admin client");
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_LIMIT));
        let results = futures::executor::block_on(admin.delete_topics(&[name], &options))
            .unwrap_or_else(|e| panic!("delete topic '{name}': {e}{}", self.log_tail_note()));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("delete topic '{topic}': {code}{}", self.log_tail_note());
            }
        }
        let consumer: BaseConsumer = self.client_config().create().expect("create metadata client");
        let deadline = Instant::now() + REQUEST_LIMIT;
        while consumer.fetch_metadata(Some(name), Duration::from_secs(5)).ok().is_some_and(|m| {
            m.topics().iter().any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
        }) {
            assert!(Instant::now() < deadline, "topic '{name}' still listed after deletion{}", self.log_tail_note());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Produces `records` (key, value, partition; `None` lets the
    /// partitioner pick) and waits until the broker acknowledged every one.
    /// Returns the (partition, offset) each record was written at, in order.
    ///
    /// Every record goes in its own batch: tansu 0.6 (dynostore) fetches
    /// whole batches starting at or after the requested offset, so a read
    /// from an offset inside a multi-record batch would skip the rest of
    /// it, and its ListOffsets "latest" is the last batch's base offset + 1.
    pub fn produce(&self, topic: &str, records: &[(Option<&str>, &[u8], Option<i32>)]) -> Vec<(i32, i64)> {
        let producer: FutureProducer = self
            .client_config()
            .set("batch.num.messages", "1")
            .set("message.timeout.ms", REQUEST_LIMIT.as_millis().to_string())
            .create()
            .expect("create producer");
        let mut pending = Vec::with_capacity(records.len());
        for (key, value, partition) in records {
            let mut record = FutureRecord::<str, [u8]>::to(topic).payload(*value);
            if let Some(key) = key {
                record = record.key(*key);
            }
            if let Some(partition) = partition {
                record = record.partition(*partition);
            }
            // send_result never waits; on a full local queue, let it drain.
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("produce to '{topic}': {e}{}", self.log_tail_note()),
                }
            }
        }
        producer.flush(REQUEST_LIMIT).unwrap_or_else(|e| panic!("flush to '{topic}': {e}{}", self.log_tail_note()));
        pending
            .into_iter()
            .map(|delivery| match futures::executor::block_on(delivery) {
                Ok(Ok(d)) => (d.partition, d.offset),
                Ok(Err((e, _))) => panic!("delivery to '{topic}' failed: {e}{}", self.log_tail_note()),
                Err(_) => panic!("delivery to '{topic}' was cancelled{}", self.log_tail_note()),
            })
            .collect()
    }

    /// Produces one record per value, partitioner's choice, no keys.
    pub fn produce_values(&self, topic: &str, values: &[&str]) -> Vec<(i32, i64)> {
        let records: Vec<(Option<&str>, &[u8], Option<i32>)> = values.iter().map(|v| (None, v.as_bytes(), None)).collect();
        self.produce(topic, &records)
    }

    /// Every record of `topic` that exists now: each partition is read from
    /// its low to its high watermark (at the time of the call) with a
    /// manually assigned consumer. Ordered by partition, then offset.
    pub fn consume_all(&self, topic: &str) -> Vec<ConsumedRecord> {
        let consumer = self.consumer();
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_LIMIT)
            .unwrap_or_else(|e| panic!("metadata of '{topic}': {e}{}", self.log_tail_note()));
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut assignment = TopicPartitionList::new();
        let mut expected = 0i64;
        let mut ends = Vec::new();
        for &partition in &partitions {
            let (low, high) = self.watermarks(topic, partition);
            if high > low {
                assignment.add_partition_offset(topic, partition, Offset::Offset(low)).expect("add partition");
                ends.push((partition, high));
                expected += high - low;
            }
        }
        let mut records = Vec::with_capacity(expected as usize);
        if expected == 0 {
            return records;
        }
        consumer.assign(&assignment).expect("assign partitions");
        let deadline = Instant::now() + REQUEST_LIMIT;
        while records.len() < expected as usize {
            assert!(
                Instant::now() < deadline,
                "read {} of {expected} records of '{topic}' within {REQUEST_LIMIT:?}{}",
                records.len(),
                self.log_tail_note()
            );
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    let end = ends.iter().find(|(p, _)| *p == message.partition()).map(|(_, h)| *h);
                    if end.is_some_and(|h| message.offset() < h) {
                        records.push(ConsumedRecord::from(&message));
                    }
                }
                Some(Err(e)) => panic!("consume '{topic}': {e}{}", self.log_tail_note()),
                None => {}
            }
        }
        records.sort_by_key(|r| (r.partition, r.offset));
        records
    }

    /// A consumer for manual `assign`: no commits, no EOF events. librdkafka
    /// refuses `assign` without a `group.id` ("Local: Unknown group"), so it
    /// has one, but it never joins the group.
    pub fn consumer(&self) -> BaseConsumer {
        self.client_config()
            .set("group.id", "weir-tests")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .expect("create consumer")
    }

    /// (low, high) watermarks of one partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> (i64, i64) {
        self.consumer()
            .fetch_watermarks(topic, partition, REQUEST_LIMIT)
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e}{}", self.log_tail_note()))
    }

    /// Kills the broker (like a crash) and waits for it to exit. The
    /// in-memory storage goes with it: after [`Broker::restart`] the broker
    /// is empty and topics must be created again.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts a fresh (empty) broker on the same port after [`Broker::stop`],
    /// so clients configured with [`Broker::bootstrap`] reconnect to it.
    ///
    /// Beware: creating a topic again under the same name gives it a new
    /// topic id, and a librdkafka 2.12 consumer still assigned to the old one
    /// then crashes its whole process (SIGSEGV in the metadata cache, seen
    /// about a second after the re-creation in 4 of 5 tries). Create topics
    /// again only once such consumers are gone, or use [`Broker::pause`].
    pub fn restart(&mut self) {
        self.kill();
        if let Err(failure) = self.spawn_and_wait() {
            self.kill();
            panic!("{failure}");
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing is
    /// answered, as with a hung broker or a network partition. Data is kept.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Undoes [`Broker::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Whether the broker process is running (it may be paused).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Where tansu's stdout and stderr go.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// The last `lines` lines of the broker log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path(), lines)
    }

    /// " (tansu log tail: ...)" for panic messages.
    fn log_tail_note(&self) -> String {
        format!("\n--- tansu log tail ({}) ---\n{}", self.log_path().display(), self.log_tail(40))
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("broker is not running");
        let status = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", child.id());
    }

    fn kill(&mut self) {
        // The watchdog goes first, so it cannot signal a reused pid later.
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Spawns tansu on `self.port` and waits for a metadata answer.
    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let log_path = self.log_path();
        let log = File::options().create(true).append(true).open(&log_path).expect("open tansu log");
        let log_err = log.try_clone().expect("clone tansu log handle");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let mut command = Command::new(&self.binary);
        command
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            // tansu reads a `.env` from its working directory and upwards, and
            // these variables; neither may leak in from the developer's shell.
            .current_dir(self.dir.path())
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", std::env::var("WEIR_TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command.spawn().map_err(|e| format!("cannot start tansu ({}): {e}", self.binary.display()))?;
        let pid = child.id().to_string();
        self.child = Some(child);
        let watchdog = Command::new("sh")
            .args(["-c", "read -r _ignored; kill -9 \"$0\" 2>/dev/null", &pid])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the tansu watchdog (sh): {e}"))?;
        self.watchdog = Some(watchdog);

        let started = Instant::now();
        let deadline = started + START_LIMIT;
        // Cheap check first: is the port accepting connections?
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!(
                    "tansu exited with {status} before listening on {}{}",
                    self.bootstrap(),
                    self.log_tail_note()
                ));
            }
            if TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu did not listen on {} within {START_LIMIT:?}{}",
                    self.bootstrap(),
                    self.log_tail_note()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Then a real Kafka round trip.
        let consumer: BaseConsumer = self.client_config().create().map_err(|e| format!("create client: {e}"))?;
        loop {
            let error = match consumer.fetch_metadata(None, Duration::from_secs(2)) {
                // tansu exits when the port is taken; then whoever took it
                // answered, not our broker.
                Ok(_) if !self.is_running() => {
                    return Err(format!("tansu exited: {} is taken{}", self.bootstrap(), self.log_tail_note()));
                }
                Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
                Ok(_) => "metadata lists no brokers".to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu on {} did not answer a metadata request within {START_LIMIT:?}: {error}{}",
                    self.bootstrap(),
                    self.log_tail_note()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("{}", self.log_tail_note());
        }
        self.kill();
    }
}

/// One record read back by [`Broker::consume_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Milliseconds since the epoch (create or log-append time).
    pub timestamp: Option<i64>,
}

impl ConsumedRecord {
    /// The value as UTF-8 (lossy); "" for a null value.
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(self.value.as_deref().unwrap_or_default()).into_owned()
    }
}

impl From<&BorrowedMessage<'_>> for ConsumedRecord {
    fn from(m: &BorrowedMessage<'_>) -> ConsumedRecord {
        ConsumedRecord {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp: m.timestamp().to_millis(),
        }
    }
}

/// The tansu binary: `WEIR_TANSU`, else the cache `scripts/test.sh` installs
/// into. Panics, naming the set-up command, when it is missing.
pub fn tansu_binary() -> PathBuf {
    let path = match std::env::var_os("WEIR_TANSU") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            let cache =
                std::env::var_os("WEIR_CACHE").map(PathBuf::from).unwrap_or_else(|| Path::new(&home).join(".cache/weir"));
            cache.join("tansu/bin/tansu")
        }
    };
    assert!(
        path.is_file(),
        "the tansu Kafka broker is not installed at {}: run `bash scripts/test.sh --setup-only` \
         (it installs tansu and exports WEIR_TANSU), or point WEIR_TANSU at a tansu binary",
        path.display()
    );
    path
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("find a free port")
}

/// The last `lines` lines of a file (at most its last 64 KiB).
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return "(no log)".to_string();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
