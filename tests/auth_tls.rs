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
    // Named after the user who tried (SCRAM's own message carries no name).
    assert!(stderr.contains("password authentication failed for user \"weir\""), "{stderr}");

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

/// TLS is offered, not required, by default: `sslmode=disable` still gets
/// in. With --tls-required (PostgreSQL's `hostssl`), a client without TLS
/// is refused with 28000 and told why, and one with TLS gets in.
#[test]
fn tls_can_be_required() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = common::self_signed_cert(dir.path());
    let tls = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];

    let offered = common::TestServer::start_with(&dir.path().join("offered"), &tls);
    let (ok, stdout, stderr) = common::psql(offered.port, &["-A", "-t", "-c", "select 1"], &[("PGSSLMODE", "disable")]);
    assert!(ok && stdout.trim() == "1", "TLS offered: a plain client still connects: {stderr}");

    let mut required_args = tls.to_vec();
    required_args.push("--tls-required");
    let required = common::TestServer::start_with(&dir.path().join("required"), &required_args);
    let (ok, _, stderr) = common::psql(required.port, &["-c", "select 1"], &[("PGSSLMODE", "disable")]);
    assert!(!ok, "a client without TLS got in");
    assert!(stderr.contains("requires TLS"), "{stderr}");
    let (ok, stdout, stderr) =
        common::psql(required.port, &["-A", "-t", "-c", "select 'over tls'"], &[("PGSSLMODE", "require")]);
    assert!(ok && stdout.trim() == "over tls", "{stderr}");
}
