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
    common::create_items_table(&server, &tmp.path().join("items"));

    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/WeirJdbcCheck.java");
    let mut cmd = Command::new("java");
    // UTC so that timestamp checks do not depend on the machine's zone.
    cmd.args(["-Duser.timezone=UTC", "-cp", PGJDBC_JAR]).arg(&program).arg(server.port.to_string());
    for var in ["JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH"] {
        cmd.env_remove(var);
    }
    let out = common::output_within(cmd, common::CLIENT_LIMIT);
    common::assert_checks_ok("java WeirJdbcCheck.java", &out, CHECKS);
    drop(server);
}
