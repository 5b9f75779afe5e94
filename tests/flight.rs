//! An Arrow-native client on the Flight SQL endpoint: ADBC's Flight SQL
//! driver creates a table through DDL, fetches a 1M-row result as Arrow,
//! binds parameters in a prepared statement, hangs up
//! mid-result without hurting the next client, lists tables and columns with
//! `adbc_get_objects`, sees SQLSTATEs in errors, needs the password on a
//! server that has one, and connects over TLS (`grpc+tls://`) to a server
//! started with --tls-cert/--tls-key. Needs `WEIR_PYTHON` and `openssl`
//! (both set up by `bash scripts/test.sh`).

mod common;

#[test]
fn adbc_flight_sql_client_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(&dir.path().join("data"));
    let guarded = common::TestServer::start_with(&dir.path().join("data-pw"), &["--password", "s3cret"]);
    let (cert, key) = common::self_signed_cert(dir.path());
    let tls = common::TestServer::start_with(
        &dir.path().join("data-tls"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    assert!(
        server.flight_port != 0 && guarded.flight_port != 0 && tls.flight_port != 0,
        "flight endpoints did not report their ports"
    );

    let args = [
        server.flight_port.to_string(),
        guarded.flight_port.to_string(),
        dir.path().display().to_string(),
        tls.flight_port.to_string(),
    ];
    let out = common::run_python_checks("flight.py", &args, std::time::Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("flight sql checks: 9 ok, 0 failing"), "{stdout}");
}
