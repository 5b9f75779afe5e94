//! Scenario: the broker is unreachable when a query starts, and hangs in the
//! middle of a run (SIGSTOP: connections stay open, nothing answers). The
//! query shows `retrying` with the reason instead of failing, and when the
//! broker is back it resumes where it committed: every record lands once.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::kafka::Broker;

fn sql(server: &TestServer, statement: &str) -> String {
    let (ok, out, err) = common::psql(server.port, &["-v", "ON_ERROR_STOP=1", "-At", "-c", statement], &[]);
    assert!(ok, "psql failed on {statement}\nstdout: {out}\nstderr: {err}");
    out.trim().to_string()
}

/// Polls `statement` until it prints `want`.
fn wait_for(server: &TestServer, statement: &str, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = sql(server, statement);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{statement}: still {got:?}, wanted {want:?}\n{}",
            sql(server, "SELECT * FROM weir.queries")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn values(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{{\"id\": {i}}}")).collect()
}

#[test]
fn a_hung_broker_makes_the_query_retry_and_nothing_is_lost() {
    let broker = Broker::start();
    broker.create_topic("ids", 2);
    let first = values(0..100);
    broker.produce_values("ids", &first.iter().map(String::as_str).collect::<Vec<_>>());

    let dir = tempfile::tempdir().expect("temp dir");
    let server = TestServer::start_in(&dir.path().join("data"));
    // Unreachable at start: the query waits, saying why.
    broker.pause();
    sql(
        &server,
        &format!(
            "CREATE STREAM ids (id BIGINT) WITH (connector = 'kafka', bootstrap_servers = '{}', topic = 'ids', startup_mode = 'earliest', properties.socket.timeout.ms = 3000)",
            broker.bootstrap()
        ),
    );
    sql(&server, "CREATE MATERIALIZED VIEW seen AS SELECT id FROM ids WITH (flush_interval = '200ms')");
    wait_for(
        &server,
        "SELECT status || ' ' || (last_error <> '')::text FROM weir.queries WHERE name = 'seen'",
        "retrying true",
        Duration::from_secs(60),
    );
    broker.resume();
    wait_for(&server, "SELECT count(*) FROM seen", "100", Duration::from_secs(60));
    wait_for(&server, "SELECT status FROM weir.queries WHERE name = 'seen'", "running", Duration::from_secs(10));

    // Hung mid-run: retrying again, then back, with nothing lost or doubled.
    broker.pause();
    wait_for(&server, "SELECT status FROM weir.queries WHERE name = 'seen'", "retrying", Duration::from_secs(90));
    broker.resume();
    let second = values(100..200);
    broker.produce_values("ids", &second.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for(&server, "SELECT count(*) || ' ' || count(DISTINCT id) FROM seen", "200 200", Duration::from_secs(90));
    server.kill();
}
