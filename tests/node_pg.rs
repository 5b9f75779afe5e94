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
    common::create_items_table(&server, &tmp.path().join("items"));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/pg_check.js");
    let mut cmd = Command::new("node");
    cmd.arg(&script).arg(server.port.to_string());
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGOPTIONS", "PGSSLMODE", "NODE_OPTIONS"] {
        cmd.env_remove(var);
    }
    // UTC so that timestamp checks do not depend on the machine's zone.
    cmd.env("NODE_PATH", &node_modules).env("TZ", "UTC");
    let out = common::output_within(cmd, common::CLIENT_LIMIT);
    common::assert_checks_ok("node pg_check.js", &out, CHECKS);
    drop(server);
}
