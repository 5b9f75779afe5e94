//! A Java application against the server through pgjdbc: the test lands a
//! Parquet table `items` (id BIGINT, name TEXT, price DOUBLE; 10 rows) through
//! the server with psql, then runs `tests/java/WeirJdbcCheck.java`, which
//! connects, finds the table and its columns through `DatabaseMetaData`,
//! queries it with a `PreparedStatement` (`WHERE id > ?`, `setLong`), reads
//! long/double/string/timestamp/boolean values through `ResultSet` getters,
//! and checks the product version and a 42P01 error. The program prints one
//! `ok`/`FAIL` line per check; this test expects every one to be `ok`.
//!
//! Needs `java` (a JDK: the program runs through the source launcher) and
//! `/usr/share/java/postgresql.jar` (Debian's libpostgresql-jdbc-java);
//! `bash scripts/test.sh` installs both.

mod common;

use std::path::Path;
use std::process::Command;

use common::TestServer;

/// Debian's libpostgresql-jdbc-java puts the driver here.
const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// Every check the Java program runs, in order.
const CHECKS: &[&str] = &[
    "connect",
    "product_version",
    "get_tables",
    "get_schemas",
    "get_columns",
    "prepared_select",
    "prepared_string_param",
    "prepared_reuse",
    "getters",
    "result_metadata",
    "missing_table_error",
];

#[test]
fn pgjdbc_discovers_and_queries_a_parquet_table() {
    assert!(
        Path::new(PGJDBC_JAR).is_file(),
        "{PGJDBC_JAR} is missing: run the suite with `bash scripts/test.sh`, which installs \
         libpostgresql-jdbc-java"
    );
    let tmp = tempfile::tempdir().expect("create temp dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    create_items_table(&server, &tmp.path().join("items"));

    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/WeirJdbcCheck.java");
    let mut cmd = Command::new("java");
    // UTC so that timestamp checks do not depend on the machine's zone.
    cmd.args(["-Duser.timezone=UTC", "-cp", PGJDBC_JAR])
        .arg(&program)
        .arg(server.port.to_string());
    for var in [
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
    ] {
        cmd.env_remove(var);
    }
    let out = common::output_within(cmd, common::CLIENT_LIMIT);
    assert_all_ok("java WeirJdbcCheck.java", &out);
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
