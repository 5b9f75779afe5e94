//! A server started with --password asks for SCRAM-SHA-256 and rejects a
//! wrong password with 28P01; with --tls-cert/--tls-key, psql connects with
//! sslmode=require and the session reports SSL.

mod common;

#[test]
fn password_is_required_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_with(&dir.path().join("data"), &["--password", "s3cret"]);

    let (ok, stdout, stderr) = common::psql(server.port, &["-A", "-t", "-c", "select 41 + 1"], &[("PGPASSWORD", "s3cret")]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "42");

    let (ok, _, stderr) = common::psql(server.port, &["-c", "select 1"], &[("PGPASSWORD", "wrong")]);
    assert!(!ok);
    assert!(stderr.to_lowercase().contains("password authentication failed"), "{stderr}");

    let (ok, _, stderr) = common::psql(server.port, &["-c", "select 1"], &[("PGPASSWORD", "")]);
    assert!(!ok, "no password must not get in: {stderr}");
}

#[test]
fn tls_connections_work() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_cert(dir.path());

    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let server = common::TestServer::start_with(&dir.path().join("data"), &args);
    let (ok, stdout, stderr) =
        common::psql(server.port, &["-c", "\\conninfo", "-c", "select 'over tls' as t"], &[("PGSSLMODE", "require")]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("SSL connection"), "{stdout}");
    assert!(stdout.contains("over tls"), "{stdout}");
}
