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

/// Restarts over one data directory with a second warehouse, then the
/// first again: the catalog remembers both roots, oldest first and each
/// once, so a view made under the first can still be found after a
/// restart with the second.
#[test]
fn catalog_remembers_every_warehouse_root() {
    use weir::catalog::CatalogStore;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    for warehouse in [&first, &second, &first] {
        common::TestServer::start_with(&data, &["--warehouse", &warehouse.display().to_string()]).kill();
    }
    let store = weir::catalog::sqlite::SqliteStore::open(&data.join("catalog.sqlite")).unwrap();
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap().display().to_string();
    assert_eq!(store.warehouse_roots().unwrap(), [canonical(&first), canonical(&second)]);
}

mod common;
