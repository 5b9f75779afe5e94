//! Many clients at once, and results that do not fit in memory.
//!
//! * 32 clients query one Parquet table at the same time (aggregates, filters,
//!   GROUP BY; simple and extended protocol) and every answer is right, while
//!   a 33rd client starts `SELECT * FROM range(0, 100000000)` as psql would,
//!   reads a few rows and drops its connection mid-stream. Afterwards the
//!   server still answers, and it never buffered the abandoned result.
//! * One client streams a 10M-row SELECT to the end, over the simple protocol
//!   (as psql does) and, in a second test, over the extended protocol (as
//!   drivers do), and the server's peak RSS stays bounded: results are
//!   streamed, not collected.
//!
//! No timing assertions: the only time limit is a guard against hangs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::{TryStreamExt, pin_mut};
use tokio::sync::Barrier;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use common::TestServer;

const CLIENTS: usize = 32;
const ROUNDS: usize = 4;
/// Rows in table `sales`: id = 1..=ROWS, store = id % 10, amount = id * 0.25.
const ROWS: i64 = 100_000;
/// How far the server's peak resident set (kB) may rise above its level
/// before a test's queries. A streaming server holds a few 8192-row batches
/// and socket buffers (a few MiB); one that collects the 10M-row result holds
/// at least 160 MB of raw Arrow for its two BIGINT columns (measured: ~590 MiB
/// of growth), so this bound tells the two apart with room to spare.
const PEAK_RSS_GROWTH_LIMIT_KB: u64 = 128 * 1024;
/// An absolute ceiling on the server's peak resident set (kB): 1.5 GiB.
const PEAK_RSS_LIMIT_KB: u64 = 1536 * 1024;
/// A guard against a hung server or client, not a performance bound.
const HANG_GUARD: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_get_right_answers_while_one_drops_mid_stream() {
    let tmp = tempfile::tempdir().expect("create temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    create_sales(&server, tmp.path()).await;
    let baseline = peak_rss_kb(server.pid());

    let outcome = tokio::time::timeout(HANG_GUARD, async {
        // Every task reaches the barrier even when its set-up failed, so one
        // failure cannot deadlock the others.
        let barrier = Arc::new(Barrier::new(CLIENTS + 1));
        let streamer = tokio::spawn(stream_and_drop(server.conn_str(), barrier.clone()));
        let mut clients = Vec::new();
        for n in 0..CLIENTS {
            clients.push(tokio::spawn(query_rounds(server.conn_str(), barrier.clone(), n)));
        }
        let mut failures = Vec::new();
        match streamer.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("streaming client: {e}")),
            Err(e) => failures.push(format!("streaming client panicked: {e}")),
        }
        for (n, task) in clients.into_iter().enumerate() {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("client {n}: {e}")),
                Err(e) => failures.push(format!("client {n} panicked: {e}")),
            }
        }
        failures
    })
    .await;
    let failures = outcome.unwrap_or_else(|_| panic!("clients still running after {HANG_GUARD:?}: hung"));
    assert!(failures.is_empty(), "{} of {} clients failed:\n{}", failures.len(), CLIENTS + 1, failures.join("\n"));

    // The server survived the dropped connection and still answers.
    let (client, _conn) = connect(&server.conn_str()).await.expect("connect after the storm");
    let n: i64 = client.query_one("SELECT count(*) FROM sales", &[]).await.expect("count after the storm").get(0);
    assert_eq!(n, ROWS);
    let rows = simple_rows(&client, "SELECT 1").await.expect("SELECT 1 after the storm");
    assert_eq!(rows, vec![vec![Some("1".to_string())]]);

    // Abandoning a 100M-row result must not have made the server buffer it
    // (the whole result is ~800 MB of raw Arrow alone).
    assert_bounded_memory(&server, baseline, 2 * PEAK_RSS_GROWTH_LIMIT_KB, "33 clients, one dropping a 100M-row stream");
}

/// Rows streamed by the bounded-memory tests.
const BIG: i64 = 10_000_000;
/// Two BIGINT columns: any server that collects the result holds >= 160 MB.
const BIG_SQL: &str = "SELECT value, value * 2 FROM range(0, 10000000)";

/// Simple protocol, text rows: what psql does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_million_rows_stream_in_bounded_memory_simple_protocol() {
    let tmp = tempfile::tempdir().expect("create temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    let (client, _conn) = connect(&server.conn_str()).await.expect("connect");
    let baseline = peak_rss_kb(server.pid());

    let outcome = tokio::time::timeout(HANG_GUARD, async {
        let stream = client.simple_query_raw(BIG_SQL).await.expect("start simple query");
        pin_mut!(stream);
        let (mut rows, mut sum, mut tag) = (0i64, 0i64, None);
        while let Some(msg) = stream.try_next().await.expect("read simple query row") {
            match msg {
                SimpleQueryMessage::Row(row) => {
                    let v: i64 = row.get(0).expect("value not null").parse().expect("value is an integer");
                    let w: i64 = row.get(1).expect("value * 2 not null").parse().expect("value * 2 is an integer");
                    assert_eq!(w, v * 2, "row {rows}: second column");
                    rows += 1;
                    sum += v;
                }
                SimpleQueryMessage::CommandComplete(n) => tag = Some(n),
                _ => {}
            }
        }
        assert_eq!(rows, BIG, "row count");
        assert_eq!(sum, BIG * (BIG - 1) / 2, "sum of values");
        assert_eq!(tag, Some(BIG as u64), "CommandComplete row count");
    })
    .await;
    outcome.unwrap_or_else(|_| panic!("streaming {BIG} rows did not finish within {HANG_GUARD:?}: hung"));
    assert_bounded_memory(&server, baseline, PEAK_RSS_GROWTH_LIMIT_KB, "a 10M-row simple-protocol query");
}

/// Extended protocol (Parse/Bind/Execute with no row limit), binary rows:
/// what drivers do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_million_rows_stream_in_bounded_memory_extended_protocol() {
    let tmp = tempfile::tempdir().expect("create temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    let (client, _conn) = connect(&server.conn_str()).await.expect("connect");
    let baseline = peak_rss_kb(server.pid());

    let outcome = tokio::time::timeout(HANG_GUARD, async {
        let stream = client.query_raw(BIG_SQL, std::iter::empty::<i64>()).await.expect("start extended query");
        pin_mut!(stream);
        let (mut rows, mut sum) = (0i64, 0i64);
        while let Some(row) = stream.try_next().await.expect("read extended query row") {
            let v: i64 = row.get(0);
            let w: i64 = row.get(1);
            assert_eq!(w, v * 2, "row {rows}: second column");
            rows += 1;
            sum += v;
        }
        assert_eq!(rows, BIG, "row count");
        assert_eq!(sum, BIG * (BIG - 1) / 2, "sum of values");
        assert_eq!(stream.rows_affected(), Some(BIG as u64), "CommandComplete row count");
    })
    .await;
    outcome.unwrap_or_else(|_| panic!("streaming {BIG} rows did not finish within {HANG_GUARD:?}: hung"));
    assert_bounded_memory(&server, baseline, PEAK_RSS_GROWTH_LIMIT_KB, "a 10M-row extended-protocol query");
}

/// Starts the 100M-row query, reads a few rows, waits until all other clients
/// are ready, reads a few more and then drops the socket mid-stream.
async fn stream_and_drop(conn_str: String, barrier: Arc<Barrier>) -> Result<(), String> {
    let started = async {
        let (client, conn) = connect(&conn_str).await?;
        let stream = client
            .simple_query_raw("SELECT * FROM range(0, 100000000)")
            .await
            .map_err(|e| format!("start 100M-row query: {e}"))?;
        let mut stream = Box::pin(stream);
        read_some(&mut stream, 5).await?;
        Ok::<_, String>((client, conn, stream))
    }
    .await;
    barrier.wait().await;
    let (client, conn, mut stream) = started?;
    read_some(&mut stream, 100).await?;
    // Drop the socket without a Terminate, with rows still in flight.
    conn.abort();
    drop(stream);
    drop(client);
    Ok(())
}

/// Reads `n` data rows of the 100M-row query.
async fn read_some(stream: &mut std::pin::Pin<Box<tokio_postgres::SimpleQueryStream>>, n: usize) -> Result<(), String> {
    let mut i = 0;
    while i < n {
        let msg = stream
            .try_next()
            .await
            .map_err(|e| format!("read row {i} of the 100M-row query: {e}"))?
            .ok_or_else(|| format!("100M-row query ended after {i} rows"))?;
        let SimpleQueryMessage::Row(row) = msg else {
            continue;
        };
        let v: i64 =
            row.get(0).and_then(|v| v.parse().ok()).ok_or_else(|| format!("row {i}: {:?} is not an integer", row.get(0)))?;
        if !(0..100_000_000).contains(&v) {
            return Err(format!("row {i}: value {v} is outside range(0, 100000000)"));
        }
        i += 1;
    }
    Ok(())
}

/// One client: connect, wait for everyone, then run every known-answer query
/// `ROUNDS` times, each client starting at a different query.
async fn query_rounds(conn_str: String, barrier: Arc<Barrier>, n: usize) -> Result<(), String> {
    let connected = connect(&conn_str).await;
    barrier.wait().await;
    let (client, _conn) = connected?;
    let checks = known_answers();
    for round in 0..ROUNDS {
        for k in 0..checks.len() {
            let (sql, expected) = &checks[(n + k) % checks.len()];
            let got = simple_rows(&client, sql).await.map_err(|e| format!("round {round}: {sql}: {e}"))?;
            if !same_rows(&got, expected) {
                return Err(format!("round {round}: {sql}\n  expected {expected:?}\n  got      {got:?}"));
            }
        }
        // The extended protocol with binary results, too.
        let row = client
            .query_one("SELECT count(*), sum(id), min(amount) FROM sales WHERE store = 5", &[])
            .await
            .map_err(|e| format!("round {round}: extended query: {e}"))?;
        let (count, sum, min): (i64, i64, f64) = (row.get(0), row.get(1), row.get(2));
        let want_sum: i64 = (1..=ROWS).filter(|id| id % 10 == 5).sum();
        if (count, sum, min) != (ROWS / 10, want_sum, 5.0 * 0.25) {
            return Err(format!(
                "round {round}: extended query got ({count}, {sum}, {min}), want ({}, {want_sum}, 1.25)",
                ROWS / 10
            ));
        }
    }
    Ok(())
}

/// Queries over `sales` and their answers, computed here from the definition.
fn known_answers() -> Vec<(String, Vec<Vec<Option<String>>>)> {
    let ids = || 1..=ROWS;
    let one = |v: String| vec![vec![Some(v)]];
    let mut by_store = Vec::new();
    for s in 0..10 {
        let count = ids().filter(|id| id % 10 == s).count();
        let sum: i64 = ids().filter(|id| id % 10 == s).sum();
        by_store.push(vec![Some(s.to_string()), Some(count.to_string()), Some(sum.to_string())]);
    }
    vec![
        ("SELECT count(*) FROM sales".into(), one(ROWS.to_string())),
        ("SELECT sum(id) FROM sales".into(), one(ids().sum::<i64>().to_string())),
        ("SELECT count(*) FROM sales WHERE store = 3".into(), one((ROWS / 10).to_string())),
        (
            "SELECT max(id) FROM sales WHERE store = 7 AND id < 50000".into(),
            one(ids().filter(|id| id % 10 == 7 && *id < 50_000).max().unwrap_or_default().to_string()),
        ),
        ("SELECT sum(amount) FROM sales WHERE id <= 1000".into(), one(((1..=1000).sum::<i64>() as f64 * 0.25).to_string())),
        ("SELECT store, count(*), sum(id) FROM sales GROUP BY store ORDER BY store".into(), by_store),
        (
            "SELECT id, store FROM sales WHERE id BETWEEN 41 AND 43 ORDER BY id DESC".into(),
            vec![
                vec![Some("43".into()), Some("3".into())],
                vec![Some("42".into()), Some("2".into())],
                vec![Some("41".into()), Some("1".into())],
            ],
        ),
    ]
}

/// Compares text rows, numerically where both sides parse as numbers (so
/// `125125` and `125125.0` are the same float).
fn same_rows(got: &[Vec<Option<String>>], want: &[Vec<Option<String>>]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.len() == w.len()
                && g.iter().zip(w).all(|(g, w)| match (g, w) {
                    (Some(g), Some(w)) => match (g.parse::<f64>(), w.parse::<f64>()) {
                        (Ok(g), Ok(w)) => g == w,
                        _ => g == w,
                    },
                    (g, w) => g == w,
                })
        })
}

/// Lands `sales` as two Parquet files (ids 1..=50000 and 50001..=100000)
/// through the server's COPY, then declares the external table.
async fn create_sales(server: &TestServer, root: &std::path::Path) {
    let dir = root.join("sales");
    std::fs::create_dir_all(&dir).expect("create table dir");
    let (client, _conn) = connect(&server.conn_str()).await.expect("connect");
    let half = ROWS / 2;
    for (part, (lo, hi)) in [(1, half), (half + 1, ROWS)].into_iter().enumerate() {
        let file = dir.join(format!("part-{part}.parquet"));
        let sql = format!(
            "COPY (SELECT CAST(value AS INT) AS id, CAST(value % 10 AS INT) AS store, \
             CAST(value AS DOUBLE) * 0.25 AS amount FROM generate_series({lo}, {hi})) \
             TO '{}' STORED AS PARQUET",
            file.display()
        );
        client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(file.exists(), "COPY reported success but wrote no {}", file.display());
    }
    let sql = format!(
        "CREATE EXTERNAL TABLE sales (id INT, store INT, amount DOUBLE) STORED AS PARQUET LOCATION '{}'",
        dir.display()
    );
    client.batch_execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn connect(conn_str: &str) -> Result<(Client, JoinHandle<()>), String> {
    let (client, conn) = tokio_postgres::connect(conn_str, NoTls).await.map_err(|e| format!("connect: {e}"))?;
    let task = tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("connection error: {e}");
        }
    });
    Ok((client, task))
}

/// Runs one statement over the simple protocol; returns its rows as text.
async fn simple_rows(client: &Client, sql: &str) -> Result<Vec<Vec<Option<String>>>, tokio_postgres::Error> {
    let mut rows = Vec::new();
    for msg in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = msg {
            rows.push((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect());
        }
    }
    Ok(rows)
}

/// Asserts the server's peak RSS rose at most `growth_limit_kb` above
/// `baseline_kb` and stayed under the absolute ceiling.
fn assert_bounded_memory(server: &TestServer, baseline_kb: u64, growth_limit_kb: u64, what: &str) {
    let peak = peak_rss_kb(server.pid());
    let growth = peak.saturating_sub(baseline_kb);
    eprintln!("server peak RSS {} MiB ({} MiB before {what}, +{} MiB)", peak / 1024, baseline_kb / 1024, growth / 1024);
    assert!(
        growth < growth_limit_kb && peak < PEAK_RSS_LIMIT_KB,
        "server peak RSS grew by {} MiB to {} MiB during {what}; a streaming server stays within +{} MiB \
         (and under {} MiB): results are being collected instead of streamed",
        growth / 1024,
        peak / 1024,
        growth_limit_kb / 1024,
        PEAK_RSS_LIMIT_KB / 1024
    );
}

/// The peak resident set size (`VmHWM`) of a process, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}
