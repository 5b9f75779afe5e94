//! The runnable example scripts in sql/ work as a new user would run them:
//! `psql -f sql/<script>.sql` against a fresh server, twice (the second run
//! over the same data directory, after a restart).

mod common;

#[test]
fn adhoc_script_runs_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/adhoc.sql");
    for run in 0..2 {
        let server = common::TestServer::start_in(dir.path());
        let (ok, stdout, stderr) = common::psql(server.port, &["-f", script], &[]);
        assert!(ok, "run {run}: {stderr}\n{stdout}");
        // sword purchases per host
        assert!(stdout.contains(" user1.comcast.com |      2 |    11"), "run {run}: {stdout}");
        // joined and ranked: the unknown host has no tier
        assert!(stdout.contains(" 2026-11-21 | user3.verizon.net |        |     2 |           2"), "run {run}: {stdout}");
        server.kill();
    }
}
