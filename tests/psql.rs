//! A user at the real `psql` binary: they land a small Parquet table through
//! the server (`COPY ... TO ... STORED AS PARQUET`, then `CREATE EXTERNAL
//! TABLE`), explore it with the meta-commands `\dt`, `\d`, `\d+`, `\l`, `\dn`,
//! run a plain `select 1`, and get a proper `ERROR:` and exit status 1 for a
//! query over a table that does not exist, and stop a long query with
//! Ctrl-C.
//!
//! Needs `psql` on PATH; `bash scripts/test.sh` installs it.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::TestServer;

/// A psql run that takes longer than this is a hang, not a slow machine.
const PSQL_LIMIT: Duration = Duration::from_secs(120);

/// A server over a fresh data directory, with table `trades` (id INT, name
/// TEXT, price DOUBLE; 10 rows) created through the wire. Keep the `TempDir`
/// alive as long as the server: dropping both cleans up.
fn server_with_trades() -> (tempfile::TempDir, TestServer) {
    require_psql();
    let tmp = tempfile::tempdir().expect("create temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    let table_dir = tmp.path().join("trades");
    std::fs::create_dir_all(&table_dir).expect("create table dir");
    let file = table_dir.join("part-0.parquet");
    run_ok(
        &server,
        &format!(
            "COPY (SELECT CAST(value AS INT) AS id, CONCAT('item-', CAST(value AS VARCHAR)) AS name, \
             CAST(value AS DOUBLE) * 1.5 AS price FROM generate_series(1, 10)) \
             TO '{}' STORED AS PARQUET",
            file.display()
        ),
    );
    assert!(file.exists(), "COPY ... TO '{}' reported success but wrote no file", file.display());
    run_ok(
        &server,
        &format!(
            "CREATE EXTERNAL TABLE trades (id INT, name TEXT, price DOUBLE) \
             STORED AS PARQUET LOCATION '{}'",
            table_dir.display()
        ),
    );
    (tmp, server)
}

#[test]
fn dt_lists_the_table() {
    let (_tmp, server) = server_with_trades();
    let out = run_ok(&server, r"\dt");
    assert!(has_line_starting(&out, "public|trades|"), "\\dt should list public.trades:\n{out}");
}

#[test]
fn d_describes_columns_and_types() {
    let (_tmp, server) = server_with_trades();
    let out = run_ok(&server, r"\d trades");
    assert!(out.contains("trades"), "\\d trades should name the table:\n{out}");
    assert_columns(&out, r"\d trades");
}

#[test]
fn d_plus_describes_columns_and_types() {
    let (_tmp, server) = server_with_trades();
    let out = run_ok(&server, r"\d+ trades");
    assert!(out.contains("trades"), "\\d+ trades should name the table:\n{out}");
    assert_columns(&out, r"\d+ trades");
    // The table's storage, as PostgreSQL prints a table's options.
    let options = out.lines().find(|l| l.starts_with("Options:")).unwrap_or_default();
    assert!(options.contains("format=parquet") && options.contains("location="), "\\d+ trades: no format:\n{out}");
}

#[test]
fn l_lists_the_weir_database() {
    let (_tmp, server) = server_with_trades();
    let out = run_ok(&server, r"\l");
    assert!(has_line_starting(&out, "weir|"), "\\l should list database weir:\n{out}");
}

#[test]
fn dn_lists_the_public_schema() {
    let (_tmp, server) = server_with_trades();
    let out = run_ok(&server, r"\dn");
    assert!(has_line_starting(&out, "public|"), "\\dn should list schema public:\n{out}");
}

#[test]
fn select_one_and_select_from_table() {
    let (_tmp, server) = server_with_trades();
    let out = run_ok(&server, "select 1");
    assert!(out.lines().any(|l| l.trim() == "1"), "select 1 should print 1:\n{out}");
    assert!(out.contains("(1 row)"), "select 1 should print the row count:\n{out}");

    let out = run_ok(&server, "select count(*) AS n, sum(id) AS s from trades where price > 3");
    // price = 1.5 * id, so price > 3 keeps ids 3..=10: 8 rows summing to 52.
    assert!(has_line_starting(&out, "8|52"), "filtered aggregate over trades:\n{out}");
}

#[test]
fn error_exits_1_with_message_on_stderr() {
    let (_tmp, server) = server_with_trades();
    let out = psql(&server, "select * from nope");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "psql should exit 1 on a failed query; stderr:\n{stderr}");
    assert!(stderr.contains("ERROR:"), "psql stderr should carry ERROR:, got:\n{stderr}");
    assert!(stderr.contains("nope"), "the error should name the missing table, got:\n{stderr}");

    // The session survives a failed query in a script, as in PostgreSQL.
    let out = run_ok(&server, "select 2");
    assert!(out.lines().any(|l| l.trim() == "2"), "server still answers after an error:\n{out}");
}

/// `id`, `name`, `price` with their PostgreSQL type names, in `-A` layout.
fn assert_columns(out: &str, what: &str) {
    for (column, ty) in [("id", "integer"), ("name", "text"), ("price", "double precision")] {
        let prefix = format!("{column}|{ty}|");
        assert!(has_line_starting(out, &prefix), "{what} should show column `{column}` as `{ty}`:\n{out}");
    }
}

fn has_line_starting(out: &str, prefix: &str) -> bool {
    out.lines().any(|l| l.starts_with(prefix))
}

/// Fails the test with a pointer to the set-up script when psql is missing.
fn require_psql() {
    match Command::new("psql").arg("--version").stdin(Stdio::null()).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`psql --version` failed ({}); run `bash scripts/test.sh`", out.status),
        Err(e) => panic!("psql not found on PATH ({e}); run `bash scripts/test.sh`, which installs postgresql-client"),
    }
}

/// Runs `psql -X -A -c <command>` and asserts it succeeded; returns stdout.
fn run_ok(server: &TestServer, command: &str) -> String {
    let out = psql(server, command);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "psql -c {command:?} failed with {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout
}

/// Runs `psql -A -c <command>` against the server.
/// Ctrl-C in psql sends a cancel request; the query stops with PostgreSQL's
/// message and psql exits 1 instead of waiting for hours.
#[test]
fn ctrl_c_cancels_a_running_query() {
    require_psql();
    let tmp = tempfile::tempdir().expect("create temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    let mut cmd = common::psql_command(server.port);
    cmd.args(["-A", "-c", "SELECT count(*) FROM range(0, 1000000000000) AS r(v) WHERE v % 7 = 3"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("start psql");
    let pid = child.id().to_string();
    // SIGINT until psql exits: the first may come before the query started.
    let interrupter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        for _ in 0..300 {
            std::thread::sleep(Duration::from_millis(300));
            let sent = Command::new("kill").args(["-INT", &pid]).status();
            if !sent.is_ok_and(|s| s.success()) {
                return;
            }
        }
    });
    let out = common::wait_within(child, PSQL_LIMIT);
    interrupter.join().expect("interrupter thread");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("canceling statement due to user request"), "psql said: {stderr}");
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
}

fn psql(server: &TestServer, command: &str) -> Output {
    let mut cmd = common::psql_command(server.port);
    cmd.args(["-A", "-c", command]);
    common::output_within(cmd, PSQL_LIMIT)
}

/// `IF NOT EXISTS` that finds the name taken, and `IF EXISTS` that finds
/// nothing, succeed with PostgreSQL's NOTICE saying what was skipped, for
/// every kind of relation; without the clause, the same statement fails.
#[test]
fn if_not_exists_and_if_exists_say_what_they_skipped() {
    let (_tmp, server) = server_with_trades();
    let cases = [
        (
            "CREATE EXTERNAL TABLE IF NOT EXISTS trades (id INT) STORED AS PARQUET LOCATION 'elsewhere'",
            "NOTICE:  relation \"trades\" already exists, skipping",
        ),
        (
            "CREATE STREAM IF NOT EXISTS trades WITH (connector = 'generator')",
            "NOTICE:  relation \"trades\" already exists, skipping",
        ),
        (
            "CREATE MATERIALIZED VIEW IF NOT EXISTS trades AS SELECT 1",
            "NOTICE:  relation \"trades\" already exists, skipping",
        ),
        ("DROP TABLE IF EXISTS nope", "NOTICE:  table \"nope\" does not exist, skipping"),
        ("DROP STREAM IF EXISTS nope, gone", "NOTICE:  stream \"gone\" does not exist, skipping"),
        ("DROP SINK IF EXISTS nope", "NOTICE:  sink \"nope\" does not exist, skipping"),
        ("DROP MATERIALIZED VIEW IF EXISTS nope", "NOTICE:  materialized view \"nope\" does not exist, skipping"),
    ];
    for (sql, notice) in cases {
        let out = psql(&server, sql);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{sql}: {stderr}");
        assert!(stderr.lines().any(|l| l == notice), "{sql}: expected {notice:?} on stderr, got:\n{stderr}");
    }
    let out = psql(&server, "CREATE STREAM trades WITH (connector = 'generator')");
    assert_eq!(out.status.code(), Some(1), "CREATE STREAM over an existing table must fail");
    // A statement that did its work says nothing.
    let out = psql(&server, "DROP TABLE IF EXISTS trades");
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("NOTICE"), "{out:?}");
}

/// EXPLAIN of a continuous query, before creating it and while it runs: the
/// stream operator and its state, the watermark, and DataFusion's plan per
/// chunk. EXPLAIN CREATE checks like CREATE and creates nothing.
#[test]
fn explain_shows_how_a_continuous_query_runs() {
    require_psql();
    let tmp = tempfile::tempdir().expect("create temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    run_ok(
        &server,
        r#"CREATE STREAM ticks (WATERMARK FOR "timestamp" AS "timestamp" - INTERVAL '1 second') WITH (connector = 'generator', rows_per_second = 10)"#,
    );
    let windowed = r#"CREATE MATERIALIZED VIEW per_second AS SELECT window_start, count(*) AS n FROM TUMBLE(ticks, "timestamp", INTERVAL '1 second') GROUP BY window_start"#;
    let plan = run_ok(&server, &format!("EXPLAIN {windowed}"));
    for expected in [
        "operator: incremental aggregation: partial aggregates kept per group across epochs, per 1 s window",
        "output mode: append",
        "stream ticks (generator): watermark on timestamp: ",
        "plan per chunk (DataFusion):",
        "Aggregate:",
    ] {
        assert!(plan.contains(expected), "EXPLAIN should say {expected:?}:\n{plan}");
    }
    let stateless = run_ok(&server, "EXPLAIN CREATE MATERIALIZED VIEW evens AS SELECT value FROM ticks WHERE value % 2 = 0");
    assert!(stateless.contains("operator: stateless"), "{stateless}");
    // Nothing was created; the same checks as CREATE apply.
    assert!(run_ok(&server, "SELECT count(*) FROM weir.queries").lines().any(|l| l.trim() == "0"));
    let missing = psql(&server, "EXPLAIN CREATE SINK s INTO nowhere AS SELECT value FROM ticks");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nowhere"), "{missing:?}");

    run_ok(&server, windowed);
    let running = run_ok(&server, "EXPLAIN MATERIALIZED VIEW per_second");
    assert!(running.contains("Continuous query per_second") && running.contains("status: "), "{running}");
    assert!(running.contains("incremental aggregation"), "{running}");
}

/// psql's describe commands over every kind of weir relation: a stream is a
/// foreign table (`\dE`, `\d` names its connector as the server), a
/// materialized view is one (`\dm`, `\d+` shows its definition), sizes are
/// the committed bytes (`\dt+`, `\l+`), owners and `\du` show the connected
/// user, and `\df`, `\dn+`, `\dT` work.
#[test]
fn meta_commands_describe_every_kind_of_relation() {
    let (_tmp, server) = server_with_trades();
    run_ok(&server, "CREATE STREAM ticks WITH (connector = 'generator', rows_per_second = 10)");
    run_ok(&server, "CREATE MATERIALIZED VIEW evens AS SELECT value FROM ticks WHERE value % 2 = 0");
    let expect_line = |command: &str, prefix: &str| {
        let out = run_ok(&server, command);
        assert!(has_line_starting(&out, prefix), "{command} should print a line starting {prefix:?}:\n{out}");
        out
    };
    let tables = expect_line(r"\dt+", "public|trades|table|weir|permanent|");
    let trades = tables.lines().find(|l| l.starts_with("public|trades|")).unwrap();
    assert!(trades.contains(" bytes|") || trades.contains(" kB|"), "trades holds a Parquet file: {trades}");
    assert!(!has_line_starting(&tables, "public|evens|"), "a materialized view is not a table:\n{tables}");
    expect_line(r"\dm", "public|evens|materialized view|weir");
    expect_line(r"\dE", "public|ticks|foreign table|weir");
    run_ok(&server, "CREATE VIEW cheap AS SELECT id, name FROM trades WHERE price < 5");
    let views = expect_line(r"\dv", "public|cheap|view|weir");
    assert!(!views.contains("ticks"), "a stream is not a view:\n{views}");
    let view = run_ok(&server, r"\d+ cheap");
    assert!(view.contains("View \"public.cheap\"") && view.contains("WHERE price < 5"), "{view}");
    let stream = run_ok(&server, r"\d+ ticks");
    assert!(stream.contains("Foreign table \"public.ticks\""), "{stream}");
    assert!(stream.contains("Server: generator"), "\\d of a stream names its connector:\n{stream}");
    assert!(stream.contains("rows_per_second '10'"), "and its options:\n{stream}");
    let view = run_ok(&server, r"\d+ evens");
    assert!(view.contains("Materialized view \"public.evens\""), "{view}");
    assert!(view.contains("View definition:") && view.contains("WHERE value % 2 = 0"), "{view}");
    expect_line(r"\l+", "weir|weir|UTF8|");
    expect_line(r"\du", "weir|Superuser");
    expect_line(r"\dn+", "public|weir|");
    run_ok(&server, r"\df");
    run_ok(&server, r"\dT");
}
