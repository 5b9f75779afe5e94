//! Protocol behaviour a PostgreSQL client relies on: several statements in
//! one simple query each answer in order; an error stops the rest of the
//! batch but keeps what earlier statements did; a prepared statement may hold
//! only one command; parameters bind through the extended protocol; a
//! cancel request stops a running query with 57014 and keeps the connection;
//! a column's type is the same in the row description, DESCRIBE and
//! pg_catalog.

mod common;

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, SimpleQueryMessage};

async fn connect(server: &common::TestServer) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&server.conn_str(), NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}

fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((0..r.len()).map(|i| r.get(i).unwrap_or("NULL").to_string()).collect()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn multiple_statements_in_one_simple_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;

    let messages = client
        .simple_query(
            "COPY (SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(id, name)) TO 'm/t/p.parquet' STORED AS PARQUET; \
             CREATE EXTERNAL TABLE m (id BIGINT, name TEXT) STORED AS PARQUET LOCATION 'm/t'; \
             SELECT count(*) FROM m; SELECT name FROM m ORDER BY id",
        )
        .await
        .expect("batch");
    let completions = messages.iter().filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_))).count();
    assert_eq!(completions, 4, "one completion per statement");
    assert_eq!(rows(&messages), vec![vec!["2"], vec!["a"], vec!["b"]]);

    // The error stops the batch: the DROP before it happened, the one after did not.
    let err = client
        .simple_query("DROP TABLE m; SELECT * FROM no_such_table; CREATE EXTERNAL TABLE m2 (id BIGINT) STORED AS PARQUET LOCATION 'm/t'")
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));
    let tables = rows(&client.simple_query("SHOW TABLES").await.unwrap());
    assert!(tables.is_empty(), "m dropped, m2 never created: {tables:?}");
}

#[tokio::test]
async fn extended_protocol_binds_parameters_and_refuses_batches() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;

    let row = client.query_one("SELECT $1::BIGINT * 2 AS doubled, $2::TEXT AS t", &[&21i64, &"x"]).await.unwrap();
    assert_eq!(row.get::<_, i64>("doubled"), 42);
    assert_eq!(row.get::<_, String>("t"), "x");

    let stmt = client.prepare("SELECT v FROM range(0, 10) AS r(v) WHERE v > $1 ORDER BY v").await.unwrap();
    let got: Vec<i64> = client.query(&stmt, &[&7i64]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(got, vec![8, 9]);

    let err = client.prepare("SELECT 1; SELECT 2").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42601"));
    // The session is still usable after each error.
    assert_eq!(client.query_one("SELECT 1::INT", &[]).await.unwrap().get::<_, i32>(0), 1);
}

/// An unsigned 64-bit column (a Parquet file's uint64, DataFusion's
/// row_number()) has one PostgreSQL type wherever a client looks: the row
/// description's type OID, DESCRIBE, pg_attribute (psql's \d, JDBC) and
/// information_schema all say bigint. A value too large for bigint is an
/// error (22003), never a wrapped number.
#[tokio::test]
async fn an_unsigned_column_is_bigint_on_the_wire_and_in_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;
    client
        .batch_execute(
            "COPY (SELECT arrow_cast(7, 'UInt64') AS u) TO 'u/t/p.parquet' STORED AS PARQUET; \
             CREATE EXTERNAL TABLE unsigned STORED AS PARQUET LOCATION 'u/t'",
        )
        .await
        .expect("table with a uint64 column");
    let arrow_type = rows(&client.simple_query("SELECT arrow_typeof(u) FROM unsigned").await.unwrap());
    assert_eq!(arrow_type, vec![vec!["UInt64".to_string()]]);

    let queries =
        ["SELECT u FROM unsigned", "SELECT arrow_cast(1, 'UInt64') AS u", "SELECT row_number() OVER () AS u FROM unsigned"];
    for sql in queries {
        let stmt = client.prepare(sql).await.unwrap();
        assert_eq!(stmt.columns()[0].type_(), &tokio_postgres::types::Type::INT8, "{sql}");
        let row = client.query_one(&stmt, &[]).await.unwrap();
        assert!(row.get::<_, i64>(0) > 0, "{sql}");
    }
    let wire_oid = client.prepare("SELECT u FROM unsigned").await.unwrap().columns()[0].type_().oid();

    let describe = rows(&client.simple_query("DESCRIBE unsigned").await.unwrap());
    assert_eq!(describe[0][..2], ["u".to_string(), "bigint".to_string()]);
    let attribute = rows(
        &client
            .simple_query(
                "SELECT a.atttypid, format_type(a.atttypid, a.atttypmod), a.attlen FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid WHERE c.relname = 'unsigned' AND a.attname = 'u'",
            )
            .await
            .unwrap(),
    );
    assert_eq!(attribute, vec![vec![wire_oid.to_string(), "bigint".to_string(), "8".to_string()]]);
    let columns = rows(
        &client
            .simple_query("SELECT data_type, udt_name FROM information_schema.columns WHERE table_name = 'unsigned'")
            .await
            .unwrap(),
    );
    assert_eq!(columns, vec![vec!["bigint".to_string(), "int8".to_string()]]);

    let err =
        client.simple_query("SELECT arrow_cast(9223372036854775807, 'UInt64') + arrow_cast(1, 'UInt64')").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE), "{err}");
}

/// A query that would run for hours: a filter over 10^12 generated rows.
const ENDLESS: &str = "SELECT count(*) FROM range(0, 1000000000000) AS r(v) WHERE v % 7 = 3";

/// What psql's Ctrl-C and a driver's cancel token send: a cancel request on
/// a second connection, with the key the server gave at start-up. The
/// running query ends with 57014 (over both protocols) and the connection
/// answers its next statement.
#[tokio::test]
async fn a_cancel_request_stops_a_running_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;
    // The last: a simple query of two statements, cancelled while the
    // first one's rows are still being computed.
    let multi = format!("{ENDLESS}; SELECT 1");
    for (extended, sql) in [(false, ENDLESS), (true, ENDLESS), (false, multi.as_str())] {
        let token = client.cancel_token();
        // Sent until the query ends: the first may arrive before the query
        // has started, and a cancel for an idle connection is ignored.
        let canceller = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                token.cancel_query(NoTls).await.expect("send the cancel request");
            }
        });
        let query = async {
            if extended { client.query(sql, &[]).await.map(drop) } else { client.simple_query(sql).await.map(drop) }
        };
        let result = tokio::time::timeout(Duration::from_secs(120), query).await;
        canceller.abort();
        let err = result.expect("the query was not cancelled").expect_err("an endless query finished");
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "extended={extended} {sql}: {err}");
        let after = client.simple_query("SELECT 41 + 1").await.expect("the connection outlives the cancel");
        assert_eq!(rows(&after), vec![vec!["42".to_string()]]);
    }
}

#[tokio::test]
async fn a_cancel_request_with_the_wrong_key_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;
    // Another connection's token cancels nothing here.
    let other = connect(&server).await;
    let token = other.cancel_token();
    let query = client.simple_query("SELECT count(*) FROM range(0, 30000000) AS r(v) WHERE v % 7 = 3");
    let (result, sent) = tokio::join!(query, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        token.cancel_query(NoTls).await
    });
    sent.expect("send the cancel request");
    assert_eq!(rows(&result.expect("not cancelled")), vec![vec!["4285714".to_string()]]);
}

/// A write is not cut short: stopping a COPY halfway could leave some of
/// its files published. The cancel request is ignored and the COPY lands
/// every row.
#[tokio::test]
async fn a_cancel_request_does_not_stop_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(&dir.path().join("data"));
    let client = connect(&server).await;
    let target = dir.path().join("out").join("part-0.parquet");
    let copy =
        format!("COPY (SELECT v, v % 7 AS m FROM range(0, 10000000) AS r(v)) TO '{}' STORED AS PARQUET", target.display());
    let token = client.cancel_token();
    let (result, sent) = tokio::join!(client.simple_query(&copy), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel_query(NoTls).await
    });
    sent.expect("send the cancel request");
    result.expect("the COPY was cancelled");
    let table = dir.path().join("out");
    client
        .simple_query(&format!("CREATE EXTERNAL TABLE out STORED AS PARQUET LOCATION '{}'", table.display()))
        .await
        .unwrap();
    let n = client.simple_query("SELECT count(*) FROM out").await.unwrap();
    assert_eq!(rows(&n), vec![vec!["10000000".to_string()]]);
}

/// `SET statement_timeout` ends a read that runs past it with 57014 and
/// PostgreSQL's message, over both protocols; the connection goes on, and
/// `RESET` turns the timeout off again.
#[tokio::test]
async fn statement_timeout_cancels_a_long_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;
    client.simple_query("SET statement_timeout = '300ms'").await.unwrap();
    for extended in [false, true] {
        let query = async {
            if extended { client.query(ENDLESS, &[]).await.map(drop) } else { client.simple_query(ENDLESS).await.map(drop) }
        };
        let result = tokio::time::timeout(Duration::from_secs(120), query).await;
        let err = result.expect("statement_timeout did not end the query").expect_err("an endless query finished");
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "extended={extended}: {err}");
        let message = err.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
        assert_eq!(message, "canceling statement due to statement timeout", "extended={extended}");
        let after = client.simple_query("SELECT 41 + 1").await.expect("the connection outlives the timeout");
        assert_eq!(rows(&after), vec![vec!["42".to_string()]]);
    }
    let bad = client.simple_query("SET statement_timeout = 'soon'").await.unwrap_err();
    assert_eq!(bad.code(), Some(&SqlState::INVALID_PARAMETER_VALUE), "{bad}");
    let reset = client.simple_query("RESET statement_timeout").await.unwrap();
    assert!(matches!(reset.last(), Some(SimpleQueryMessage::CommandComplete(_))));
    assert_eq!(rows(&client.simple_query("SHOW statement_timeout").await.unwrap()), vec![vec!["0".to_string()]]);
}

/// `RESET name` and `RESET ALL` undo a session's SETs, back to the
/// start-up value or the server default.
#[tokio::test]
async fn reset_undoes_set() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;
    let show = |name: &'static str| {
        let client = &client;
        async move { rows(&client.simple_query(&format!("SHOW {name}")).await.unwrap()).remove(0).remove(0) }
    };
    client.simple_query("SET lock_timeout = '5s'; SET search_path = other, public; SET app.mode = 'x'").await.unwrap();
    client.simple_query("RESET search_path").await.unwrap();
    assert_eq!(show("search_path").await, "public");
    assert_eq!(show("lock_timeout").await, "5s");
    client.simple_query("RESET ALL").await.unwrap();
    assert_eq!(show("lock_timeout").await, "0");
    let unknown = client.simple_query("RESET no_such_setting").await.unwrap_err();
    assert_eq!(unknown.code(), Some(&SqlState::UNDEFINED_OBJECT), "{unknown}");
}

/// `current_user` and its kin name the user the session logged in as,
/// headed by their own names; `pg_backend_pid()` is the connection's own
/// process id (the one its cancel key carries), different per connection.
#[tokio::test]
async fn session_identity_functions() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;
    let messages = client.simple_query("SELECT current_user, session_user, current_user = 'weir' AS same").await.unwrap();
    let Some(SimpleQueryMessage::RowDescription(columns)) = messages.first() else { panic!("{messages:?}") };
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["current_user", "session_user", "same"]);
    assert_eq!(rows(&messages), vec![vec!["weir".to_string(), "weir".to_string(), "t".to_string()]]);
    let extended = client.query_one("SELECT current_user", &[]).await.unwrap();
    assert_eq!(extended.get::<_, String>(0), "weir");

    // The same id over both protocols; another connection has its own.
    let simple = rows(&client.simple_query("SELECT pg_backend_pid()").await.unwrap()).remove(0).remove(0);
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_eq!(simple, pid.to_string());
    let other = connect(&server).await;
    let other_pid: i32 = other.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(pid, other_pid, "two connections share process id {pid}");
}

/// Unaliased expressions are headed as PostgreSQL heads them also when
/// they reach the result through a subquery, a CTE or a UNION.
#[tokio::test]
async fn columns_are_named_like_postgres_through_subqueries() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let client = connect(&server).await;
    for sql in [
        "SELECT * FROM (SELECT count(DISTINCT v.x) FROM (VALUES (1), (2)) AS v(x)) s",
        "SELECT count(DISTINCT v.x) FROM (VALUES (1), (2)) AS v(x) UNION ALL SELECT 7",
        "WITH c AS (SELECT count(DISTINCT v.x) FROM (VALUES (1), (2)) AS v(x)) SELECT * FROM c",
    ] {
        let messages = client.simple_query(sql).await.unwrap();
        let Some(SimpleQueryMessage::RowDescription(columns)) = messages.first() else { panic!("{messages:?}") };
        assert_eq!(columns[0].name(), "count", "{sql}");
    }
}
