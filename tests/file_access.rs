//! What readers see of a directory, and where the server may go.
//!
//! * A reader polls `SELECT count(*)` in a tight loop while a sink commits
//!   large epochs (several files each) into the table: every answer is a
//!   whole number of committed epochs (never a staged or half-published
//!   one), answers never go down, and no query fails.
//! * `--allow-path` admits a directory outside the data dir; a restart
//!   without it refuses that directory again, and a table there is not
//!   restored (its definition stays).
//! * A graceful stop (SIGTERM) in the middle of a long `COPY ... TO` leaves
//!   no staging file behind.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(server: &TestServer) -> Client {
    let (client, conn) = tokio_postgres::connect(&server.conn_str(), NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

/// The text rows of a simple query.
async fn rows(client: &Client, sql: &str) -> Result<Vec<Vec<String>>, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).unwrap_or("NULL").to_string()).collect()),
            _ => None,
        })
        .collect())
}

/// The SQLSTATE of a failed statement.
fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_string()).unwrap_or_else(|| format!("no sqlstate: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_polling_during_large_epochs_sees_whole_committed_epochs_only() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    let client = connect(&server).await;
    // About 150k rows an epoch, in files of 1000 rows: an epoch is staged
    // over a while and published as ~150 renames, long enough for a reader
    // without the publish gate to see part of one (checked: it does).
    client
        .batch_execute(
            "CREATE STREAM ticks WITH (connector = 'generator', rows_per_second = 150000); \
             CREATE EXTERNAL TABLE landed (ts TIMESTAMP, value BIGINT) STORED AS PARQUET LOCATION 'landed'; \
             CREATE SINK fill INTO landed AS SELECT timestamp, value FROM ticks \
               WITH (trigger = '1 seconds', target_file_rows = 1000)",
        )
        .await
        .expect("set up the sink");

    let reader = connect(&server).await;
    let mut seen: Vec<i64> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        match rows(&reader, "SELECT count(*) FROM landed").await {
            Ok(r) => seen.push(r[0][0].parse().expect("a count")),
            Err(e) => errors.push(format!("{e:?}")),
        }
    }
    // What the commits recorded, in order: every reader answer must be one
    // of these running totals. Each epoch's progress row commits with its
    // files, before they are published, so every epoch a reader saw is here.
    let progress = rows(&client, "SELECT output_rows FROM weir.query_progress WHERE query = 'fill' ORDER BY batch_id")
        .await
        .expect("progress");
    client.batch_execute("DROP SINK fill").await.expect("drop the sink");
    let mut totals = vec![0i64];
    for row in &progress {
        let n: i64 = row[0].parse().expect("output_rows");
        totals.push(totals.last().copied().unwrap_or(0) + n);
    }

    assert!(errors.is_empty(), "{} of {} reads failed, first: {}", errors.len(), errors.len() + seen.len(), errors[0]);
    assert!(progress.len() >= 3, "the sink committed only {} epochs: {progress:?}", progress.len());
    assert!(seen.len() >= 20, "only {} reads in 12s", seen.len());
    let partial: Vec<&i64> = seen.iter().filter(|n| !totals.contains(n)).collect();
    assert!(partial.is_empty(), "counts that are not whole committed epochs: {partial:?} (epoch totals {totals:?})");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "counts went down: {seen:?}");
    let distinct = seen.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct >= 3, "the reader saw only {distinct} different counts while epochs landed: {seen:?}");
    eprintln!("{} reads, {distinct} different counts, {} epochs", seen.len(), progress.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_path_admits_a_directory_until_a_restart_without_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let outside = std::fs::canonicalize(tmp.path()).expect("canonical").join("outside");
    std::fs::create_dir_all(&outside).expect("outside dir");
    let copy = format!("COPY (SELECT 7 AS x) TO '{}/x.parquet' STORED AS PARQUET", outside.display());
    let create = format!("CREATE EXTERNAL TABLE o STORED AS PARQUET LOCATION '{}'", outside.display());

    let server = TestServer::start_with(&data, &[]);
    let client = connect(&server).await;
    let refused = client.batch_execute(&copy).await.expect_err("outside the data dir");
    assert_eq!(sqlstate(&refused), "42501", "{refused:?}");
    let message = refused.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
    let data_canonical = std::fs::canonicalize(&data).expect("data dir");
    assert!(message.contains(&format!("'{}'", data_canonical.display())), "the message names the allowed roots: {message}");
    assert!(!outside.join("x.parquet").exists());
    server.kill();

    let server = TestServer::start_with(&data, &["--allow-path", outside.to_str().expect("utf-8 path")]);
    let client = connect(&server).await;
    client.batch_execute(&copy).await.expect("COPY into an allowed directory");
    client.batch_execute(&create).await.expect("a table in an allowed directory");
    assert_eq!(rows(&client, "SELECT x FROM o").await.expect("read it"), vec![vec!["7".to_string()]]);
    server.kill();

    let server = TestServer::start_with(&data, &[]);
    let client = connect(&server).await;
    let gone = client.batch_execute("SELECT x FROM o").await.expect_err("no longer allowed");
    assert_eq!(sqlstate(&gone), "42P01", "{gone:?}");
    let tables = rows(&client, "SHOW TABLES").await.expect("show tables");
    assert_eq!(tables.len(), 1, "the definition stays, to be dropped: {tables:?}");
    client.batch_execute("DROP TABLE o").await.expect("drop it");
    assert!(outside.join("x.parquet").exists(), "DROP TABLE never deletes files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_during_a_long_copy_leaves_no_staging_file() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data);
    let out = data.join("out");
    std::fs::create_dir_all(&out).expect("out dir");
    let client = connect(&server).await;
    let copying = tokio::spawn(async move {
        client
            .batch_execute(
                "COPY (SELECT v, v * 2 AS w FROM range(0, 500000000) AS r(v)) TO 'out/big.parquet' STORED AS PARQUET",
            )
            .await
    });
    // The directory starts empty: whatever appears is the COPY's staging.
    let staged = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while staged(&out).is_empty() {
        assert!(Instant::now() < deadline, "the COPY never started writing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = tokio::task::block_in_place(|| server.terminate(Duration::from_secs(60)));
    assert!(status.is_some(), "weir did not stop within 60s of SIGTERM");
    let _ = copying.await;
    assert_eq!(staged(&out), Vec::<String>::new(), "staging files left after a graceful stop");
    assert!(!out.join("big.parquet").exists(), "an interrupted COPY publishes nothing");
}

/// While commits fail (here: the catalog file is deleted under the running
/// server, so every later commit is refused), the epochs the sink keeps
/// staging and retrying are never seen: a reader polling in a tight loop
/// gets only totals of epochs committed before, and never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_polling_while_commits_fail_sees_only_what_committed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data);
    let client = connect(&server).await;
    client
        .batch_execute(
            "CREATE STREAM ticks WITH (connector = 'generator', rows_per_second = 50000); \
             CREATE EXTERNAL TABLE landed (ts TIMESTAMP, value BIGINT) STORED AS PARQUET LOCATION 'landed'; \
             CREATE SINK fill INTO landed AS SELECT timestamp, value FROM ticks \
               WITH (trigger = '1 seconds', target_file_rows = 1000)",
        )
        .await
        .expect("set up the sink");
    let committed = "SELECT count(*) FROM weir.query_progress WHERE query = 'fill'";
    let deadline = Instant::now() + Duration::from_secs(60);
    while rows(&client, committed).await.expect("progress")[0][0].parse::<i64>().unwrap_or(0) < 2 {
        assert!(Instant::now() < deadline, "the sink never committed two epochs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    std::fs::remove_file(data.join("catalog.sqlite")).expect("delete the catalog");

    let reader = connect(&server).await;
    let (mut seen, mut errors) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        match rows(&reader, "SELECT count(*) FROM landed").await {
            Ok(r) => seen.push(r[0][0].parse::<i64>().expect("a count")),
            Err(e) => errors.push(sqlstate(&e)),
        }
    }
    // The commit log still reads (from the file the server holds open).
    let progress = rows(&client, "SELECT output_rows FROM weir.query_progress WHERE query = 'fill' ORDER BY batch_id")
        .await
        .expect("progress");
    let mut totals = vec![0i64];
    for row in &progress {
        totals.push(totals.last().copied().unwrap_or(0) + row[0].parse::<i64>().expect("output_rows"));
    }
    let last = *totals.last().unwrap_or(&0);
    assert!(errors.is_empty(), "reads failed: {errors:?}");
    assert!(seen.len() >= 10, "only {} reads", seen.len());
    assert!(seen.iter().all(|n| totals.contains(n)), "counts that are not committed totals: {seen:?} (totals {totals:?})");
    assert!(seen.iter().all(|n| *n <= last), "more rows than committed ({last}): {seen:?}");
    // The sink keeps trying, and says why it cannot commit. Between
    // attempts it is `retrying` with the reason; during one it is
    // `running`: poll until a look falls between attempts.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sinks = rows(&client, "SHOW SINKS").await.expect("SHOW SINKS");
        let shown = format!("{sinks:?}");
        if shown.contains("deleted or replaced") {
            break;
        }
        assert!(Instant::now() < deadline, "the sink never reported the vanished catalog: {shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
