//! A data engineer's Python stack against the server: `tests/python/clients.py`
//! connects with psycopg 3 (server-side parameters, prepared statements,
//! binary results of every common type, `version()`, `current_schema()`,
//! `SHOW TRANSACTION ISOLATION LEVEL`) and with SQLAlchemy 2 (connect, inspect
//! tables and columns, `text()` with a bound parameter) over a Parquet table
//! it lands through the server. This test runs it and expects exit status 0.
//!
//! Needs `WEIR_PYTHON`: a Python with psycopg 3 and SQLAlchemy 2, which
//! `bash scripts/test.sh` builds and exports.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::TestServer;

/// The script takes seconds; past this it is hung.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn psycopg_and_sqlalchemy_work_against_weir() {
    let python = match std::env::var("WEIR_PYTHON") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!(
            "WEIR_PYTHON is not set: run the suite with `bash scripts/test.sh`, which builds a venv \
             with psycopg 3 and SQLAlchemy 2 and exports WEIR_PYTHON"
        ),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/clients.py");
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
    eprintln!("--- clients.py stdout ---\n{stdout}--- clients.py stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "{} {} exited with {}; see the checks above (FAIL lines carry tracebacks)",
        python,
        script.display(),
        out.status
    );
    drop(server);
}
