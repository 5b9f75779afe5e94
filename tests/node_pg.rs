//! A Node.js application against the server through node-postgres (`pg`,
//! the version pinned in `tests/node/package.json`): the test lands a Parquet
//! table `items` (id BIGINT, name TEXT, price DOUBLE; 10 rows) through the
//! server with psql, then runs `tests/node/pg_check.js`, which connects, runs
//! parameterised selects (`WHERE id > $1` with `[5]`, a named statement),
//! checks that int/bigint/double/text/bool/timestamp values come back as pg's
//! documented JS values, and that errors carry `.code` (42P01, 42703) and
//! leave the session usable. The script prints one `ok`/`FAIL` line per
//! check; this test expects every one to be `ok`.
//!
//! Needs `node` and `WEIR_NODE_MODULES` (a node_modules with `pg`), which
//! `bash scripts/test.sh` installs under its cache and exports.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;

/// Every check the script runs, in order.
const CHECKS: &[&str] = &[
    "connect",
    "parameterised_select",
    "values",
    "field_types",
    "text_parameter",
    "named_statement",
    "missing_table_error",
    "bad_parameter_error",
];

#[test]
fn node_postgres_queries_a_parquet_table() {
    let node_modules = match std::env::var("WEIR_NODE_MODULES") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!(
            "WEIR_NODE_MODULES is not set: run the suite with `bash scripts/test.sh`, which \
             installs node-postgres from tests/node/package-lock.json and exports it"
        ),
    };
    assert!(
        Path::new(&node_modules).join("pg/package.json").is_file(),
        "{node_modules} has no `pg`: run `bash scripts/test.sh`, which installs it"
    );
    let tmp = tempfile::tempdir().expect("create temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    create_items_table(&server, &tmp.path().join("items"));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/pg_check.js");
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(server.port.to_string());
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGOPTIONS",
        "PGSSLMODE",
        "NODE_OPTIONS",
    ] {
        cmd.env_remove(var);
    }
    // UTC so that timestamp checks do not depend on the machine's zone.
    cmd.env("NODE_PATH", &node_modules).env("TZ", "UTC");
    let out = common::output_within(cmd, common::CLIENT_LIMIT);
    assert_all_ok("node pg_check.js", &out);
    drop(server);
}

/// Writes `items` (ids 1..10, name `item-<id>`, price id * 1.5) as Parquet
/// under `dir` through the server's COPY and declares it as an external table.
fn create_items_table(server: &TestServer, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create table dir");
    let file = dir.join("part-0.parquet");
    let sql = format!(
        "COPY (SELECT value AS id, CONCAT('item-', CAST(value AS VARCHAR)) AS name, \
         CAST(value AS DOUBLE) * 1.5 AS price FROM generate_series(1, 10)) \
         TO '{}' STORED AS PARQUET",
        file.display()
    );
    let (ok, stdout, stderr) = common::psql(server.port, &["-c", &sql], &[]);
    assert!(ok, "COPY through psql failed:\n{stdout}{stderr}");
    assert!(
        file.exists(),
        "COPY reported success but wrote no {}",
        file.display()
    );
    let ddl = format!(
        "CREATE EXTERNAL TABLE items (id BIGINT, name TEXT, price DOUBLE) \
         STORED AS PARQUET LOCATION '{}'",
        dir.display()
    );
    let (ok, stdout, stderr) = common::psql(server.port, &["-c", &ddl], &[]);
    assert!(
        ok,
        "CREATE EXTERNAL TABLE through psql failed:\n{stdout}{stderr}"
    );
}

/// Asserts that the client program exited 0 and printed `ok <check>` for
/// every check in [`CHECKS`]; on failure the message lists the FAIL lines.
fn assert_all_ok(what: &str, out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {what} stdout ---\n{stdout}--- {what} stderr ---\n{stderr}");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    let missing: Vec<&&str> = CHECKS
        .iter()
        .filter(|c| !stdout.lines().any(|l| l == format!("ok {c}")))
        .collect();
    assert!(
        out.status.success() && failed.is_empty() && missing.is_empty(),
        "{what} exited with {}; failed checks:\n{}\nchecks without an `ok` line: {missing:?}",
        out.status,
        failed.join("\n")
    );
}
