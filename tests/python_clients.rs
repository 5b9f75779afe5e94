//! A data engineer's Python stack against the server: `tests/python/clients.py`
//! connects with psycopg 3 (server-side parameters, prepared statements,
//! binary results of every common type, `version()`, `current_schema()`,
//! `SHOW TRANSACTION ISOLATION LEVEL`) and with SQLAlchemy 2 (connect, inspect
//! tables and columns, reflect a whole table, `text()` with a bound
//! parameter) over a Parquet table
//! it lands through the server. This test runs it and expects exit status 0.
//!
//! Needs `WEIR_PYTHON`: a Python with psycopg 3 and SQLAlchemy 2, which
//! `bash scripts/test.sh` builds and exports.

mod common;

use std::time::Duration;

use common::TestServer;

/// The script takes seconds; past this it is hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn psycopg_and_sqlalchemy_work_against_weir() {
    let tmp = tempfile::tempdir().expect("create temp dir");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("create scratch dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    let args = [server.port.to_string(), scratch.display().to_string()];
    common::run_python_checks("clients.py", &args, SCRIPT_LIMIT);
    drop(server);
}
