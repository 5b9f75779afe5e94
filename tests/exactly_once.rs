//! Scenario: the seed pipeline (game events on Kafka → a sink keeping
//! `purchase_sword` events → Parquet) against a real broker, while a producer
//! keeps writing mixed and malformed events and the server is killed with
//! SIGKILL at random moments and restarted, many times. At the end every
//! produced purchase id is in the table exactly once: nothing lost, nothing
//! duplicated, nothing half-written visible.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::kafka::Broker;
use common::{Rng, TestServer, sql, try_sql};

const KILLS: usize = 10;

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let mut rng = Rng::seeded();

    let broker = Arc::new(Broker::start());
    broker.create_topic("events", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let mut server = TestServer::start_in(&data_dir);
    let bootstrap = broker.bootstrap();
    sql(
        &server,
        &format!(
            "CREATE STREAM events (id BIGINT, event_type TEXT, \"Host\" TEXT, ts TIMESTAMP) \
             WITH (connector = 'kafka', bootstrap_servers = '{bootstrap}', topic = 'events', \
                   format = 'json', startup_mode = 'earliest')"
        ),
    );
    sql(
        &server,
        "CREATE EXTERNAL TABLE sword_purchases (id BIGINT, event_type TEXT, \"Host\" TEXT, ts TIMESTAMP) \
         STORED AS PARQUET LOCATION 'warehouse/sword_purchases'",
    );
    // Short epochs: many commits, so kills land in every phase of one.
    sql(
        &server,
        "CREATE SINK swords INTO sword_purchases AS \
         SELECT id, event_type, \"Host\", ts FROM events WHERE event_type = 'purchase_sword' \
         WITH (flush_interval = '100ms')",
    );

    // The producer runs until the last kill is done; every third event is a
    // purchase, every 97th record is garbage that must be skipped.
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let broker = broker.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut expected = Vec::new();
            let mut id = 0u64;
            while !done.load(Ordering::SeqCst) {
                let mut batch: Vec<String> = Vec::new();
                for _ in 0..200 {
                    let kind = if id.is_multiple_of(3) { "purchase_sword" } else { "join_guild" };
                    if kind == "purchase_sword" {
                        expected.push(id as i64);
                    }
                    batch.push(format!(
                        r#"{{"id": {id}, "event_type": "{kind}", "Host": "user{}.comcast.com", "ts": "2026-11-23T10:{:02}:{:02}Z"}}"#,
                        id % 7,
                        (id / 60) % 60,
                        id % 60
                    ));
                    if id.is_multiple_of(97) {
                        batch.push("{\"id\": oops".to_string());
                    }
                    id += 1;
                }
                let values: Vec<&str> = batch.iter().map(String::as_str).collect();
                broker.produce_values("events", &values);
                std::thread::sleep(Duration::from_millis(40));
            }
            expected
        })
    };

    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.between(200, 1500)));
        eprintln!("kill {kill}");
        server.kill();
        server = TestServer::start_in(&data_dir);
    }
    done.store(true, Ordering::SeqCst);
    let expected = producer.join().expect("producer thread");
    eprintln!("{} purchases produced", expected.len());

    // Let the sink catch up with everything produced.
    let deadline = Instant::now() + Duration::from_secs(120);
    let want = expected.len().to_string();
    loop {
        let count = try_sql(&server, "SELECT count(*) FROM sword_purchases").unwrap_or_default();
        if count.trim() == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sink did not catch up: {} of {want} rows\n{}",
            count.trim(),
            sql(&server, "SHOW SINKS")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let ids = sql(&server, "SELECT id FROM sword_purchases ORDER BY id");
    let ids: Vec<i64> = ids.lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(ids.len(), expected.len(), "row count");
    let duplicates: Vec<&[i64]> = ids.windows(2).filter(|w| w[0] == w[1]).collect();
    assert!(duplicates.is_empty(), "duplicated ids: {duplicates:?}");
    assert_eq!(ids, expected, "the table holds exactly the produced purchase ids");
    // The malformed records were counted, not fatal.
    let errors = sql(&server, "SELECT sum(error_rows) FROM weir.query_progress WHERE query = 'swords'");
    assert!(errors.trim().parse::<i64>().unwrap_or(0) > 0, "malformed records are counted: {errors}");
    let leftovers: Vec<String> = std::fs::read_dir(data_dir.join("warehouse/sword_purchases"))
        .expect("table dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| !n.ends_with(".parquet"))
        .collect();
    assert!(leftovers.len() <= 1, "at most the running epoch's staged file remains: {leftovers:?}");
    server.kill();
}
