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

fn sql(server: &common::TestServer, statement: &str) -> String {
    let (ok, out, err) = common::psql(server.port, &["-v", "ON_ERROR_STOP=1", "-At", "-c", statement], &[]);
    assert!(ok, "psql failed on {statement}\nstdout: {out}\nstderr: {err}");
    out.trim().to_string()
}

/// Polls `query` until it returns `want` (a continuous query catching up).
fn wait_for(server: &common::TestServer, query: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, out, _) = common::psql(server.port, &["-At", "-c", query], &[]);
        if out.trim() == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{query} gave {:?}, not {want:?}", out.trim());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A server restarted with another `--warehouse` keeps the tables it made
/// under the old one where the catalog recorded them: the view is restored
/// and read there, its new epochs and its stream's dead letters land
/// there, DROP deletes that directory (not a namesake under the new root),
/// and only new objects go under the new root.
#[test]
fn a_restart_with_another_warehouse_keeps_tables_where_they_were_made() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, input) = (tmp.path().join("data"), tmp.path().join("in"));
    let (first, second) = (tmp.path().join("wh1"), tmp.path().join("wh2"));
    std::fs::create_dir_all(&input).unwrap();
    let allow = tmp.path().display().to_string();
    let start = |warehouse: &std::path::Path| {
        let warehouse = warehouse.display().to_string();
        common::TestServer::start_with(&data, &["--allow-path", &allow, "--warehouse", &warehouse])
    };

    let server = start(&first);
    sql(
        &server,
        &format!(
            "CREATE STREAM nums (n BIGINT) WITH (connector = 'file', path = '{}', format = 'json', on_error = 'dead_letter')",
            input.display()
        ),
    );
    sql(&server, "CREATE MATERIALIZED VIEW big AS SELECT n FROM nums WHERE n > 1");
    std::fs::write(input.join("a.json"), "{\"n\": 1}\n{\"n\": 2}\n{\"n\": 3}\nnot json\n").unwrap();
    wait_for(&server, "SELECT count(*) FROM big", "2");
    wait_for(&server, "SELECT count(*) FROM nums_errors", "1");
    assert!(server.terminate(std::time::Duration::from_secs(30)).is_some(), "server stopped on SIGTERM");
    let old_view = first.join("big");
    let old_files = names_in(&old_view);
    assert!(!old_files.is_empty(), "the view wrote under the first warehouse");

    let server = start(&second);
    server.assert_no_panic();
    // Restored where it was made, with what it had committed.
    assert_eq!(sql(&server, "SELECT count(*) FROM big"), "2");
    assert_eq!(sql(&server, "SELECT count(*) FROM nums_errors"), "1");
    let shown = sql(&server, "SHOW MATERIALIZED VIEWS");
    assert!(shown.contains(&format!("{}/", old_view.display())) && shown.contains("|running|"), "{shown}");
    // It keeps running there.
    std::fs::write(input.join("b.json"), "{\"n\": 4}\n{\"n\": 5}\nnot json either\n").unwrap();
    wait_for(&server, "SELECT count(*) FROM big", "4");
    wait_for(&server, "SELECT count(*) FROM nums_errors", "2");
    assert!(names_in(&old_view).len() > old_files.len(), "new epochs land in the recorded directory");
    assert!(!second.join("big").exists() && !second.join("nums_errors").exists(), "{:?}", names_in(&second));
    // A new view goes under the new root.
    sql(&server, "CREATE MATERIALIZED VIEW small AS SELECT n FROM nums WHERE n <= 1");
    wait_for(&server, "SELECT count(*) FROM small", "1");
    assert!(second.join("small").is_dir() && !first.join("small").exists());
    // DROP deletes the directory the catalog recorded, and nothing else.
    std::fs::create_dir_all(second.join("big")).unwrap();
    std::fs::write(second.join("big").join("keep.txt"), "not the view's").unwrap();
    sql(&server, "DROP MATERIALIZED VIEW big");
    assert!(!old_view.exists(), "the view's files went with it");
    assert!(second.join("big").join("keep.txt").exists(), "a namesake under the new root is untouched");
    assert!(first.join("nums_errors").is_dir(), "other tables under the old root stay");
    server.assert_no_panic();
}
