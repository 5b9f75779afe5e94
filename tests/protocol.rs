//! Protocol behaviour a PostgreSQL client relies on: several statements in
//! one simple query each answer in order; an error stops the rest of the
//! batch but keeps what earlier statements did; a prepared statement may hold
//! only one command; parameters bind through the extended protocol.

mod common;

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
