//! Start-up against a catalog weir must not use: a corrupt file, another
//! program's SQLite database, or a catalog from a newer weir. The server
//! refuses to start, says why, and leaves the file byte-for-byte as it was.

use std::process::Command;

fn start_and_fail(data_dir: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run weir");
    assert!(!out.status.success(), "weir started over a bad catalog");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn corrupt_catalog_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.sqlite");
    std::fs::write(&catalog, b"definitely not sqlite").unwrap();
    let stderr = start_and_fail(dir.path());
    assert!(stderr.contains("is not a weir catalog or is corrupt"), "{stderr}");
    assert!(stderr.contains("catalog.sqlite"), "message names the file: {stderr}");
    assert_eq!(std::fs::read(&catalog).unwrap(), b"definitely not sqlite");
}

#[test]
fn catalog_from_newer_weir_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.sqlite");
    // Let a real server create the catalog, then pretend a newer weir wrote it.
    {
        let server = common::TestServer::start_in(dir.path());
        server.kill();
    }
    let conn = rusqlite::Connection::open(&catalog).unwrap();
    conn.execute_batch("PRAGMA user_version = 999").unwrap();
    drop(conn);
    let before = std::fs::read(&catalog).unwrap();
    let stderr = start_and_fail(dir.path());
    assert!(stderr.contains("written by a newer weir"), "{stderr}");
    assert_eq!(std::fs::read(&catalog).unwrap(), before);
}

mod common;
