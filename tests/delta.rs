//! Delta Lake tables.
//!
//! * `tests/python/delta_tables.py`: weir reads a table deltalake-python
//!   wrote (latest version per query, a pinned version); a sink lands a file
//!   stream into a Delta table while deltalake-python and polars read it in
//!   a loop and must see whole epochs only; the log carries the query's
//!   transaction (app id, last epoch).
//! * Exactly once through the log: the seed pipeline (Kafka → a sink) into
//!   a Delta table, the server killed with SIGKILL at random moments and
//!   restarted; at the end the table (read by weir, and its log) holds every
//!   produced id once.
//!
//! Needs `WEIR_PYTHON` (deltalake, polars, psycopg) and a Kafka broker, which
//! `bash scripts/test.sh` provides.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::kafka::Broker;
use common::{Rng, TestServer, sql, try_sql};

const SCRIPT_LIMIT: Duration = Duration::from_secs(300);
const KILLS: usize = 6;

#[test]
fn outside_readers_and_weir_read_delta_tables() {
    let tmp = tempfile::tempdir().expect("create temp dir");
    let data = tmp.path().join("data");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("create scratch dir");
    let scratch_arg = scratch.display().to_string();
    let server = TestServer::start_with(&data, &["--allow-path", &scratch_arg]);
    let args = [server.port.to_string(), scratch.display().to_string()];
    common::run_python_checks("delta_tables.py", &args, SCRIPT_LIMIT);
    server.assert_no_panic();
    // After a restart the catalog brings back the Delta tables and views.
    server.kill();
    let server = TestServer::start_with(&data, &["--allow-path", &scratch_arg]);
    assert_eq!(sql(&server, "SELECT count(*) FROM made_elsewhere").trim(), "15");
    assert_eq!(sql(&server, "SELECT count(*) FROM made_elsewhere_v0").trim(), "10");
    assert_eq!(sql(&server, "SELECT count(*) FROM landed").trim(), "3000");
    assert_eq!(sql(&server, "SELECT count(*) FROM clicks_delta").trim(), "27");
    assert_eq!(sql(&server, "SELECT sum(n) FROM totals_delta").trim(), "27");
    let create = sql(&server, "SHOW CREATE TABLE landed");
    assert!(create.contains("STORED AS DELTA"), "{create}");
    server.assert_no_panic();
}

/// The Delta log's live data files (adds not removed since) and the last
/// `txn` version of `app_id`, read from the JSON commits directly.
fn read_log(table: &std::path::Path, app_id: &str) -> (Vec<String>, Option<i64>) {
    let mut commits: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .expect("log dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    commits.sort();
    let mut live: HashMap<String, ()> = HashMap::new();
    let mut txn = None;
    for commit in commits {
        for line in std::fs::read_to_string(&commit).expect("read commit").lines() {
            let action: serde_json::Value = serde_json::from_str(line).expect("a JSON action");
            if let Some(path) = action.pointer("/add/path").and_then(|p| p.as_str()) {
                live.insert(path.to_string(), ());
            }
            if let Some(path) = action.pointer("/remove/path").and_then(|p| p.as_str()) {
                live.remove(path);
            }
            if action.pointer("/txn/appId").and_then(|a| a.as_str()) == Some(app_id) {
                txn = action.pointer("/txn/version").and_then(|v| v.as_i64());
            }
        }
    }
    let mut files: Vec<String> = live.into_keys().collect();
    files.sort();
    (files, txn)
}

#[test]
fn sigkill_at_random_moments_commits_each_epoch_to_the_delta_log_once() {
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
            "CREATE STREAM events (id BIGINT, event_type TEXT, ts TIMESTAMP) \
             WITH (connector = 'kafka', bootstrap_servers = '{bootstrap}', topic = 'events', \
                   format = 'json', startup_mode = 'earliest')"
        ),
    );
    // TIMESTAMP makes the table use the timestampNtz writer feature.
    sql(
        &server,
        "CREATE EXTERNAL TABLE purchases (id BIGINT, event_type TEXT, ts TIMESTAMP) STORED AS DELTA LOCATION 'lake/purchases'",
    );
    sql(
        &server,
        "CREATE SINK buys INTO purchases AS SELECT id, event_type, ts FROM events WHERE event_type = 'purchase' \
         WITH (flush_interval = '100ms', target_file_rows = 50)",
    );

    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let broker = broker.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut expected = Vec::new();
            let mut id = 0i64;
            while !done.load(Ordering::SeqCst) {
                let mut batch = Vec::new();
                for _ in 0..200 {
                    let kind = if id % 3 == 0 { "purchase" } else { "view" };
                    if kind == "purchase" {
                        expected.push(id);
                    }
                    batch.push(format!(
                        r#"{{"id": {id}, "event_type": "{kind}", "ts": "2026-12-07T10:{:02}:{:02}"}}"#,
                        (id / 60) % 60,
                        id % 60
                    ));
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

    let deadline = Instant::now() + Duration::from_secs(120);
    let want = expected.len().to_string();
    loop {
        let count = try_sql(&server, "SELECT count(*) FROM purchases").unwrap_or_default();
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
    let ids = sql(&server, "SELECT id FROM purchases ORDER BY id");
    let ids: Vec<i64> = ids.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let duplicates: Vec<&[i64]> = ids.windows(2).filter(|w| w[0] == w[1]).collect();
    assert!(duplicates.is_empty(), "duplicated ids: {duplicates:?}");
    assert_eq!(ids, expected, "the table holds exactly the produced purchase ids");
    assert_eq!(sql(&server, "SELECT count(ts) FROM purchases").trim(), want, "every timestamp landed");

    // The log agrees: its live files are exactly the published data files,
    // each added once, and its transaction is the query's last epoch.
    let table = data_dir.join("lake/purchases");
    let (live, txn) = read_log(&table, "weir:buys");
    let on_disk: Vec<String> = std::fs::read_dir(&table)
        .expect("table dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    for file in &live {
        assert!(on_disk.contains(file), "the log adds {file}, which is not on disk");
    }
    let last_epoch = sql(&server, "SELECT max(batch_id) FROM weir.query_progress WHERE query = 'buys' AND output_rows > 0");
    assert_eq!(txn, last_epoch.trim().parse::<i64>().ok(), "the log's transaction is the last epoch with rows");
    server.kill();
}
