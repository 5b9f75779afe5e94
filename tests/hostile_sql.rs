//! Scenario: statements and files built to break the server. Flat chains of
//! 19,000 ORs or 18,000 `+`, UNION ALL of 5,700 branches, a Parquet file that is
//! only its magic bytes, a footer whose length lies (read directly or only
//! inside a subquery, and named either way), and a catalog file
//! deleted under a running server. Each is a clear error for the one client
//! (with a SQLSTATE); the server and the session carry on, and nothing is
//! committed into a catalog that is gone.

mod common;

use std::time::Duration;

use common::TestServer;
use tokio_postgres::{Client, NoTls};

async fn connect(server: &TestServer) -> Client {
    let (client, connection) = tokio_postgres::connect(&server.conn_str(), NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// The SQLSTATE of `sql` over the simple protocol, or None when it succeeded.
async fn simple_state(client: &Client, sql: &str) -> Option<String> {
    client.simple_query(sql).await.err().map(|e| match e.as_db_error() {
        Some(db) => db.code().code().to_string(),
        None => panic!("an error without a SQLSTATE (the connection broke?): {e}"),
    })
}

/// The first column of the first row of `sql` over the simple protocol.
async fn simple_value(client: &Client, sql: &str) -> String {
    let messages = client.simple_query(sql).await.unwrap_or_else(|e| panic!("{e}: {}", &sql[..sql.len().min(200)]));
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a row")
}

fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_flat_expressions_are_answered_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    let client = connect(&server).await;

    // Long AND/OR chains (what generated filters look like) run, at the
    // size that used to abort the process and at ten times it: they are
    // balanced before planning.
    for n in [1_900, 19_000] {
        let ors = format!("SELECT count(*) FROM (VALUES (1), (2), (3)) AS t(x) WHERE {}", chain("x = 2", " OR ", n));
        assert_eq!(simple_value(&client, &ors).await, "1", "{n} ORs");
        let ands = format!("SELECT count(*) FROM (VALUES (1), (2), (3)) AS t(x) WHERE {}", chain("x > 1", " AND ", n));
        assert_eq!(simple_value(&client, &ands).await, "2", "{n} ANDs");
        let values = client.query(ors.as_str(), &[]).await.expect("extended protocol");
        assert_eq!(values[0].get::<_, i64>(0), 1);
    }
    // Other chains run up to the documented limit of 1,000 levels...
    assert_eq!(simple_value(&client, &format!("SELECT {}", chain("1", "+", 990))).await, "990");
    let unions = format!("SELECT count(*) FROM ({}) AS u", chain("SELECT 1 AS x", " UNION ALL ", 570));
    assert_eq!(simple_value(&client, &unions).await, "570");

    // ...and past it, at the sizes that used to abort the process and at ten
    // times them, they are refused as too complex (54001), in every shape.
    let shapes = [
        format!("SELECT {}", chain("1", "+", 1_800)),
        format!("SELECT {}", chain("1", "+", 18_000)),
        format!("SELECT {}", chain("'a'", " || ", 1_900)),
        format!("SELECT {}", chain("'a'", " || ", 19_000)),
        format!("SELECT {}", chain("2", "*", 18_000)),
        chain("SELECT 1", " UNION ALL ", 5_700),
        format!("SELECT {}", chain("1", "+", 250_000)),
    ];
    for sql in &shapes {
        assert_eq!(simple_state(&client, sql).await.as_deref(), Some("54001"), "{}", &sql[..60]);
        // The extended protocol parses at Parse: the same answer.
        let err = client.query(sql.as_str(), &[]).await.expect_err("too complex");
        assert_eq!(err.code().map(|c| c.code()), Some("54001"), "extended: {err}");
    }
    // The session and the server are still fine.
    assert_eq!(simple_value(&client, "SELECT 40 + 2").await, "42");
    let other = connect(&server).await;
    assert_eq!(simple_value(&other, "SELECT 1").await, "1");
    assert!(server.is_alive());
}

/// Writes a valid one-column Parquet file through the server, then returns
/// its bytes.
async fn valid_parquet(client: &Client, server: &TestServer, relative: &str) -> Vec<u8> {
    client
        .simple_query(&format!("COPY (SELECT * FROM (VALUES (1), (2), (3)) AS t(id)) TO '{relative}' STORED AS PARQUET"))
        .await
        .expect("COPY");
    std::fs::read(server.data_dir.join(relative)).expect("read the written file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_parquet_files_fail_the_query_not_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    let client = connect(&server).await;

    let good = valid_parquet(&client, &server, "crafted/good.parquet").await;
    client
        .simple_query("CREATE EXTERNAL TABLE crafted (id BIGINT) STORED AS PARQUET LOCATION 'crafted'")
        .await
        .expect("create table");
    assert_eq!(simple_value(&client, "SELECT count(*) FROM crafted").await, "3");

    // Only the magic bytes; then a real file whose footer length is patched
    // to 0x7FFFFFFF.
    let mut lying = good.clone();
    let at = lying.len() - 8;
    lying[at..at + 4].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    for (name, bytes) in [("magic-only.parquet", b"PAR1PAR1".to_vec()), ("lying-footer.parquet", lying)] {
        let path = server.data_dir.join("crafted").join(name);
        std::fs::write(&path, bytes).unwrap();
        // The table may be read only inside a subquery: still named.
        for sql in [
            "SELECT count(*) FROM crafted",
            "SELECT sum(id) FROM crafted",
            "SELECT (SELECT sum(id) FROM crafted)",
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM crafted)",
        ] {
            let err = client.simple_query(sql).await.expect_err("a corrupt file fails the query");
            let db = err.as_db_error().unwrap_or_else(|| panic!("{name}: no SQLSTATE, the connection dropped: {err}"));
            assert!(db.code().code().starts_with("XX"), "{name}: {} {}", db.code().code(), db.message());
            assert!(db.message().contains(name), "{name}: the error names the file: {}", db.message());
            // The extended protocol too.
            let err = client.query(sql, &[]).await.expect_err("extended");
            assert!(err.as_db_error().is_some_and(|db| db.message().contains(name)), "{err}");
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(simple_value(&client, "SELECT count(*) FROM crafted").await, "3", "the session carries on");
    }
    assert!(server.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_from_corrupt_pages_and_mismatched_columns_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    let client = connect(&server).await;

    let good = valid_parquet(&client, &server, "pages/good.parquet").await;
    client.simple_query("CREATE EXTERNAL TABLE pages (id BIGINT) STORED AS PARQUET LOCATION 'pages'").await.unwrap();
    // The footer is intact; the first page header is not.
    let mut broken = good.clone();
    for byte in &mut broken[4..24] {
        *byte ^= 0xA5;
    }
    std::fs::write(server.data_dir.join("pages/broken-page.parquet"), broken).unwrap();
    let err = client.simple_query("SELECT sum(id) FROM pages").await.expect_err("a corrupt page fails the query");
    let db = err.as_db_error().expect("a SQLSTATE");
    assert!(db.message().contains("broken-page.parquet"), "names the file: {}", db.message());

    // A file whose column has another type than the table declares.
    valid_parquet(&client, &server, "typed/good.parquet").await;
    client.simple_query("COPY (SELECT make_array(1, 2) AS id) TO 'typed/list.parquet' STORED AS PARQUET").await.unwrap();
    client.simple_query("CREATE EXTERNAL TABLE typed (id BIGINT) STORED AS PARQUET LOCATION 'typed'").await.unwrap();
    let err = client.simple_query("SELECT sum(id) FROM typed").await.expect_err("a mismatched column fails");
    let db = err.as_db_error().expect("a SQLSTATE");
    assert!(db.message().contains("list.parquet"), "names the file: {}", db.message());
    assert_eq!(simple_value(&client, "SELECT 1").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_catalog_is_reported_and_nothing_is_committed_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    let client = connect(&server).await;
    valid_parquet(&client, &server, "kept/part.parquet").await;
    client.simple_query("CREATE EXTERNAL TABLE kept STORED AS PARQUET LOCATION 'kept'").await.expect("create");
    // WAL in exclusive locking mode: the index is in memory, no `-shm` file
    // that a full or read-only disk could turn into SIGBUS.
    let catalog = dir.path().join("catalog.sqlite");
    assert!(!dir.path().join("catalog.sqlite-shm").exists(), "no shared-memory file next to the catalog");

    // A second server on the same data directory is refused.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-flight", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run a second weir");
    assert!(!second.status.success(), "a second server on the same data directory must not start");
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another weir"), "{second:?}");

    std::fs::remove_file(&catalog).unwrap();
    let state = simple_state(&client, "CREATE EXTERNAL TABLE lost STORED AS PARQUET LOCATION 'kept'").await;
    assert_eq!(state.as_deref(), Some("58030"), "DDL into a vanished catalog fails");
    let err = client.simple_query("DROP TABLE kept").await.expect_err("DROP fails too");
    assert!(err.as_db_error().is_some_and(|db| db.message().contains("deleted or replaced")), "{err}");
    // Reads of what is loaded still work.
    assert_eq!(simple_value(&client, "SELECT count(*) FROM kept").await, "3");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    assert!(
        log.iter().any(|l| l.contains("ERROR") && l.contains("was deleted or replaced while weir was running")),
        "reported loudly in the log"
    );
}
