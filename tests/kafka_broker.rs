//! The Kafka test infrastructure works against a real broker (tansu): topics
//! with partitions, produce and read back with manually assigned offsets,
//! watermarks, offsets by time, pausing and restarting the broker, and the
//! `weir produce` command.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::kafka::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const LIMIT: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// Polls `consumer` until `count` records arrived; returns
/// (partition, offset) -> (key, value).
fn read(consumer: &BaseConsumer, count: usize) -> BTreeMap<(i32, i64), (Option<String>, String)> {
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + LIMIT;
    while got.len() < count {
        assert!(Instant::now() < deadline, "read {} of {count} records within {LIMIT:?}", got.len());
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                let previous = got.insert((m.partition(), m.offset()), (key, value));
                assert!(previous.is_none(), "record {}/{} delivered twice", m.partition(), m.offset());
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    // Nothing beyond what was asked for may follow.
    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
        panic!("unexpected extra record at {}/{}", m.partition(), m.offset());
    }
    got
}

#[test]
fn produce_and_read_back_with_assigned_offsets() {
    let broker = Broker::start();
    let topic = "events";
    broker.create_topic(topic, 3);

    // 1000 keyed records in two halves with a clock tick between them: every
    // tenth goes explicitly to partition 2, the rest where the key hashes.
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();
    let values: Vec<String> = (0..1000).map(|i| format!("value-{i}")).collect();
    let records: Vec<(Option<&str>, &[u8], Option<i32>)> =
        (0..1000).map(|i| (Some(keys[i].as_str()), values[i].as_bytes(), (i % 10 == 0).then_some(2))).collect();
    let first_half = broker.produce(topic, &records[..500]);
    std::thread::sleep(Duration::from_millis(20));
    let split_ms = now_ms();
    std::thread::sleep(Duration::from_millis(20));
    let second_half = broker.produce(topic, &records[500..]);
    let delivered: Vec<(i32, i64)> = first_half.iter().chain(&second_half).copied().collect();
    assert_eq!(delivered.len(), 1000);

    // Offsets are dense from 0 per partition; explicit partitions are kept.
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (i, &(partition, offset)) in delivered.iter().enumerate() {
        if i % 10 == 0 {
            assert_eq!(partition, 2, "record {i} was sent to partition 2");
        }
        per_partition.entry(partition).or_default().push(offset);
    }
    assert_eq!(per_partition.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2], "keys spread over all partitions");
    for (partition, offsets) in &per_partition {
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..offsets.len() as i64).collect::<Vec<_>>(), "offsets of partition {partition}");
    }
    let expected: HashMap<(i32, i64), usize> = delivered.iter().enumerate().map(|(i, &po)| (po, i)).collect();

    // Watermarks: low 0, high = records in the partition.
    for (&partition, offsets) in &per_partition {
        assert_eq!(broker.watermarks(topic, partition), (0, offsets.len() as i64), "watermarks of {partition}");
    }

    // Manual assignment: partitions 0 and 1 from the beginning, partition 2
    // from the middle.
    let skip = per_partition[&2].len() as i64 / 2;
    let consumer = broker.consumer();
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    assignment.add_partition_offset(topic, 1, Offset::Beginning).unwrap();
    assignment.add_partition_offset(topic, 2, Offset::Offset(skip)).unwrap();
    consumer.assign(&assignment).unwrap();
    let want = 1000 - skip as usize;
    let got = read(&consumer, want);
    for (&(partition, offset), (key, value)) in &got {
        let i = expected[&(partition, offset)];
        assert_eq!((key.as_deref(), value.as_str()), (Some(keys[i].as_str()), values[i].as_str()), "{partition}/{offset}");
        assert!(partition != 2 || offset >= skip, "partition 2 read from {offset} < {skip}");
    }

    // Seek back on a running assignment.
    consumer.seek(topic, 0, Offset::Offset(3), Duration::from_secs(10)).unwrap();
    let again = match consumer.poll(LIMIT) {
        Some(Ok(m)) => (m.partition(), m.offset()),
        Some(Err(e)) => panic!("after seek: {e}"),
        None => panic!("nothing after seek within {LIMIT:?}"),
    };
    assert_eq!(again, (0, 3));

    // Offsets by time: the split point is the first second-half offset of
    // each partition (tansu goes by the time it stored a batch, which for
    // these records is about their create time).
    let by_time = |ms: i64| {
        let mut query = TopicPartitionList::new();
        for partition in 0..3 {
            query.add_partition_offset(topic, partition, Offset::Offset(ms)).unwrap();
        }
        let found = consumer.offsets_for_times(query, Duration::from_secs(10)).unwrap();
        (0..3).map(|p| found.find_partition(topic, p).expect("partition in answer").offset()).collect::<Vec<_>>()
    };
    let want: Vec<Offset> = (0..3)
        .map(|partition| {
            let first = second_half.iter().filter(|(p, _)| *p == partition).map(|(_, o)| *o).min();
            Offset::Offset(first.expect("second half reached every partition"))
        })
        .collect();
    assert_eq!(by_time(split_ms), want, "offsets_for_times at {split_ms}");
    assert_eq!(by_time(0), vec![Offset::Offset(0); 3], "offsets_for_times before everything");
    // After the last record Kafka answers -1 (End); tansu 0.6 answers 0, so
    // a source must not trust a time lookup past the end of a partition.
    for offset in by_time(now_ms() + 3_600_000) {
        assert!(matches!(offset, Offset::End | Offset::Offset(0)), "offsets_for_times in the future: {offset:?}");
    }

    // The helper that sink tests use reads everything back.
    let all = broker.consume_all(topic);
    assert_eq!(all.len(), 1000);
    assert!(all.iter().all(|r| r.timestamp.is_some()), "records carry timestamps");
}

/// Runs `weir produce` with `args`, feeding `stdin`.
fn weir_produce(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("produce")
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir produce");
    let mut input = child.stdin.take().expect("stdin piped");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(out) => out.expect("wait for weir produce"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("weir produce {args:?} did not finish within {LIMIT:?}");
        }
    }
}

#[test]
fn weir_produce_writes_lines() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("lines", 2);

    let out = weir_produce(&["--bootstrap-servers", &bootstrap, "--topic", "lines"], "{\"a\":1}\n\n{\"a\":2}\r\nthree\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir produce failed: {stderr}");
    assert!(stderr.contains("produced 3 record(s) to topic 'lines'"), "stderr: {stderr}");

    let out = weir_produce(&["--bootstrap-servers", &bootstrap, "--topic", "lines", "--partition", "1"], "four\nfive");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir produce --partition failed: {stderr}");

    let records = broker.consume_all("lines");
    let mut values: Vec<String> = records.iter().map(|r| r.value_str()).collect();
    values.sort();
    assert_eq!(values, ["five", "four", "three", "{\"a\":1}", "{\"a\":2}"]);
    assert!(records.iter().all(|r| r.key.is_none()), "records have no key");
    let in_one: Vec<String> = records.iter().filter(|r| r.partition == 1).map(|r| r.value_str()).collect();
    assert!(in_one.ends_with(&["four".to_string(), "five".to_string()]), "partition 1 holds {in_one:?}");

    // A partition the topic does not have.
    let out = weir_produce(&["--bootstrap-servers", &bootstrap, "--topic", "lines", "--partition", "7"], "x\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "partition 7 accepted: {stderr}");
    assert!(stderr.contains("no partition 7"), "stderr: {stderr}");
}

#[test]
fn weir_produce_reports_an_unreachable_broker() {
    // Nothing listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bootstrap = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let out = weir_produce(&["--bootstrap-servers", &bootstrap, "--topic", "t", "--timeout-secs", "2"], "x\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "weir produce succeeded without a broker: {stderr}");
    assert!(stderr.contains(&format!("cannot reach a Kafka broker at {bootstrap}")), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn broker_pause_keeps_data_and_restart_loses_it() {
    let mut broker = Broker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("kept", 1);
    broker.produce_values("kept", &["a", "b"]);

    // Paused: the broker stops answering, and nothing is lost.
    broker.pause();
    let consumer = broker.consumer();
    assert!(consumer.fetch_metadata(Some("kept"), Duration::from_secs(2)).is_err(), "a paused broker answered");
    broker.resume();
    assert_eq!(broker.watermarks("kept", 0), (0, 2));

    // Stopped: the port is closed; restarted: same address, empty storage.
    broker.stop();
    assert!(!broker.is_running());
    assert!(std::net::TcpStream::connect(&bootstrap).is_err(), "a stopped broker accepted a connection");
    broker.restart();
    assert_eq!(broker.bootstrap(), bootstrap);
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    assert!(metadata.topics().iter().all(|t| t.name() != "kept"), "topic survived a restart");
    broker.create_topic("kept", 1);
    broker.produce_values("kept", &["c"]);
    let values: Vec<String> = broker.consume_all("kept").iter().map(|r| r.value_str()).collect();
    assert_eq!(values, ["c"]);
}

/// The Kafka target behind the sink traits: once an epoch is prepared (the
/// step before the catalog commit) every record is on the broker, keyed by
/// the key columns; there is nothing left to publish after the commit.
#[test]
fn kafka_sink_epoch_is_on_the_broker_once_prepared() {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    use weir::sink::{Opening, PreCommit, Roll, SinkError, Target};

    let broker = Broker::start();
    broker.create_topic("sink_out", 1);
    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true), Field::new("n", DataType::Int64, true)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["a", "b", "c"])), Arc::new(Int64Array::from(vec![1, 2, 3]))],
    )
    .expect("batch");
    let options = |topic: &str| -> weir::sql::Options {
        [("bootstrap_servers".to_string(), broker.bootstrap()), ("topic".to_string(), topic.to_string())].into()
    };
    let opening = Opening { query: "q", schema: &schema, roll: Roll::default(), key_columns: &[0], compact_every: None };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let sink = Target::Kafka(options("sink_out")).open(&opening).expect("kafka sink");
        let mut epoch = sink.begin(0);
        epoch.write(&batch).await.expect("write");
        let prepared = epoch.prepare().await.expect("prepare");
        assert_eq!(prepared, PreCommit::default(), "no files, no version");
        // Read with a consumer, not from the watermarks: librdkafka sends
        // the three records as one batch.
        let consumer = broker.consumer();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset("sink_out", 0, Offset::Beginning).expect("assign");
        consumer.assign(&assignment).expect("assign");
        let got: Vec<(String, String)> =
            read(&consumer, 3).into_values().map(|(key, value)| (key.unwrap_or_default(), value)).collect();
        assert_eq!(
            got,
            vec![
                (r#"{"k":"a"}"#.to_string(), r#"{"k":"a","n":1}"#.to_string()),
                (r#"{"k":"b"}"#.to_string(), r#"{"k":"b","n":2}"#.to_string()),
                (r#"{"k":"c"}"#.to_string(), r#"{"k":"c","n":3}"#.to_string()),
            ]
        );
        sink.commit(&prepared).await.expect("commit");
        sink.recover(&prepared).await.expect("recover");
        // Nothing more arrives (`read` checks that nothing follows).
        consumer.seek("sink_out", 0, Offset::Beginning, Duration::from_secs(10)).expect("seek");
        assert_eq!(read(&consumer, 3).len(), 3, "commit and recovery send nothing again");
        // A target that cannot work is a configuration error (it fails the
        // query instead of being retried).
        let bad = Target::Kafka(options("bad topic name!")).open(&opening);
        assert!(matches!(bad, Err(SinkError::Config(_))), "{:?}", bad.err());
    });
}
