//! An Arrow-native client on the Flight SQL endpoint: ADBC's Flight SQL
//! driver creates a table through DDL, fetches a 1M-row result as Arrow,
//! binds parameters in a prepared statement, lists tables and columns with
//! `adbc_get_objects`, sees SQLSTATEs in errors, and needs the password on a
//! server that has one. Needs `WEIR_PYTHON` (set by `bash scripts/test.sh`).

mod common;

use std::process::Command;

#[test]
fn adbc_flight_sql_client_works() {
    let python = std::env::var("WEIR_PYTHON")
        .expect("WEIR_PYTHON is not set: run `bash scripts/test.sh`, which creates the Python venv");
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(&dir.path().join("data"));
    let guarded = common::TestServer::start_with(&dir.path().join("data-pw"), &["--password", "s3cret"]);
    assert!(server.flight_port != 0 && guarded.flight_port != 0, "flight endpoints did not report their ports");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(server.flight_port.to_string())
        .arg(guarded.flight_port.to_string())
        .arg(dir.path());
    let out = common::output_within(cmd, std::time::Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "flight sql checks failed:\n{stdout}");
    assert!(stdout.contains("flight sql checks: 6 ok, 0 failing"), "{stdout}");
}
