//! A data scientist loads a DataFrame from a SELECT: `tests/python/dataframes.py`
//! lands a 5,000-row Parquet table of mixed types (BIGINT, DOUBLE, TEXT,
//! BOOLEAN, TIMESTAMP, DATE, DECIMAL(10, 2), some NULLs) through the server,
//! then reads it with pandas (`read_sql` over SQLAlchemy with a bound
//! parameter, `read_sql_table`, the pyarrow dtype backend, a 1M-row frame) and
//! with polars (`read_database` over a SQLAlchemy engine and over psycopg,
//! `read_database_uri` when connectorx is installed), checking shapes, dtypes
//! and values recomputed in Python. This test runs it and expects exit status 0.
//!
//! Needs `WEIR_PYTHON`: a Python with pandas, polars, SQLAlchemy 2 and
//! psycopg 3, which `bash scripts/test.sh` builds and exports.

mod common;

use std::time::Duration;

use common::TestServer;

/// The script takes seconds (the 1M-row frame the longest); past this it is hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn pandas_and_polars_load_dataframes_from_weir() {
    let tmp = tempfile::tempdir().expect("create temp dir");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("create scratch dir");
    let server = TestServer::start_in(&tmp.path().join("data"));
    let args = [server.port.to_string(), scratch.display().to_string()];
    common::run_python_checks("dataframes.py", &args, SCRIPT_LIMIT);
    drop(server);
}
