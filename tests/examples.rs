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

/// Scenario 6: files dropped into a directory become Parquet once each; the
/// second run (after a restart, same files written again) adds nothing.
#[test]
fn orders_directory_script_lands_completed_orders_once() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/orders_dir.sql");
    for run in 0..2 {
        let server = common::TestServer::start_in(dir.path());
        let (ok, stdout, stderr) = common::psql(server.port, &["-f", script], &[]);
        assert!(ok, "run {run}: {stderr}\n{stdout}");
        assert!(stdout.contains(" alice    |      2 |   37.25"), "run {run}: {stdout}");
        assert!(stdout.contains(" carol    |      1 |      99"), "run {run}: {stdout}");
        assert!(stdout.contains(" completed_orders | running | t"), "run {run}: {stdout}");
        assert!(stdout.contains("         5 |           3"), "run {run}: {stdout}");
        server.kill();
    }
}

/// Scenario 1: the game-events producer and script against a real broker;
/// malformed lines are skipped and counted, and a second run after a restart
/// shows the same rows (exactly once, nothing re-landed).
#[test]
fn game_events_script_lands_sword_purchases_from_kafka() {
    let broker = common::kafka::Broker::start();
    broker.create_topic("events", 2);
    let producer = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/produce_game_events.sh"))
        .args(["30", &broker.bootstrap(), "events"])
        .env("WEIR_BIN", env!("CARGO_BIN_EXE_weir"))
        .output()
        .unwrap();
    assert!(producer.status.success(), "{}", String::from_utf8_lossy(&producer.stderr));
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/game_events.sql");
    let kafka = format!("kafka={}", broker.bootstrap());
    for run in 0..2 {
        let server = common::TestServer::start_in(dir.path());
        let (ok, stdout, stderr) = common::psql(server.port, &["-v", &kafka, "-f", script], &[]);
        assert!(ok, "run {run}: {stderr}\n{stdout}");
        assert!(stdout.contains(" user1.comcast.com |     10"), "run {run}: {stdout}");
        assert!(!stdout.contains("user2.att.com"), "only user1 bought swords: {stdout}");
        assert!(stdout.contains(" swords | events | sword_purchases | 2 seconds | running"), "run {run}: {stdout}");
        server.kill();
    }
}
