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

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::TestServer;

/// The script takes seconds (the 1M-row frame the longest); past this it is hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn pandas_and_polars_load_dataframes_from_weir() {
    let python = match std::env::var("WEIR_PYTHON") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!(
            "WEIR_PYTHON is not set: run the suite with `bash scripts/test.sh`, which builds a venv \
             with pandas, polars, SQLAlchemy 2 and psycopg 3 and exports WEIR_PYTHON"
        ),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/dataframes.py");
    let tmp = tempfile::tempdir().expect("create temp dir");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("create scratch dir");
    let server = TestServer::start_in(&tmp.path().join("data"));

    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg(server.port.to_string()).arg(&scratch);
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGOPTIONS",
        "PGSERVICE",
        "PGPASSWORD",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = common::output_within(cmd, SCRIPT_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- dataframes.py stdout ---\n{stdout}--- dataframes.py stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "{} {} exited with {}; see the checks above (FAIL lines carry tracebacks)",
        python,
        script.display(),
        out.status
    );
    drop(server);
}
