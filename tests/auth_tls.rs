//! A server started with --password asks for SCRAM-SHA-256 and rejects a
//! wrong password with 28P01; with --tls-cert/--tls-key, psql connects with
//! sslmode=require and the session reports SSL.

mod common;

use std::process::Command;

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
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl not found: run `bash scripts/test.sh`, which installs it");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));

    let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
    let server = common::TestServer::start_with(&dir.path().join("data"), &args);
    let (ok, stdout, stderr) = common::psql(
        server.port,
        &["-c", "\\conninfo", "-c", "select 'over tls' as t"],
        &[("PGSSLMODE", "require")],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("SSL connection"), "{stdout}");
    assert!(stdout.contains("over tls"), "{stdout}");
}
