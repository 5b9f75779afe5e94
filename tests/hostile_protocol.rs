//! A hostile or broken client cannot crash the server, lock others out or
//! leave work running: frames whose lengths, counts or NUL bytes lie are
//! answered with FATAL 08P01 and a closed connection (never a panic, never a
//! smuggled second message); sockets that never log in are closed after
//! `--authentication-timeout`; past `--max-connections` a client is refused
//! at once with 53300; an idle session is closed with 57P05; failed logins
//! are answered ever slower; and a client that hangs up mid-query does not
//! leave the query running.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::TestServer;
use tokio_postgres::NoTls;

/// A client that speaks the protocol byte by byte, so it can lie.
struct Raw {
    stream: TcpStream,
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend((body.len() as i32 + 4).to_be_bytes());
    m.extend(body);
    m
}

fn startup_packet(user: &str) -> Vec<u8> {
    let params = format!("user\0{user}\0database\0weir\0\0");
    let mut p = ((params.len() + 8) as i32).to_be_bytes().to_vec();
    p.extend(196_608i32.to_be_bytes());
    p.extend(params.as_bytes());
    p
}

impl Raw {
    fn connect(server: &TestServer) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw { stream }
    }

    /// Connected and past the startup packet, waiting for the server's
    /// authentication request (a SASL one when the server has a password).
    fn started(server: &TestServer) -> Raw {
        let mut raw = Raw::connect(server);
        raw.send(&startup_packet("weir"));
        raw
    }

    /// Logged in to a trust server and ready for a query.
    fn ready(server: &TestServer) -> Raw {
        let mut raw = Raw::started(server);
        while let Some((tag, _)) = raw.recv() {
            if tag == b'Z' {
                return raw;
            }
        }
        panic!("the server closed the connection during login");
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The next message, or None once the server has closed the connection.
    fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut header = [0u8; 5];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("the server neither answered nor closed the connection within 30s")
            }
            Err(_) => return None,
        }
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.stream.read_exact(&mut body).ok()?;
        Some((header[0], body))
    }

    /// Reads to the end of the connection; panics unless the server's
    /// answer ends with a FATAL error with `code` and then closes.
    fn expect_fatal(&mut self, code: &str, what: &str) -> Vec<u8> {
        let mut seen = Vec::new();
        while let Some((tag, body)) = self.recv() {
            if tag == b'E' {
                let fields = error_fields(&body);
                assert_eq!(field(&fields, b'C'), code, "{what}: {fields:?}");
                assert_eq!(field(&fields, b'S'), "FATAL", "{what}: {fields:?}");
                assert!(self.recv().is_none(), "{what}: the connection stays open after the FATAL error");
                return seen;
            }
            seen.push(tag);
        }
        panic!("{what}: the connection closed without an error (messages seen: {:?})", String::from_utf8_lossy(&seen));
    }
}

fn error_fields(body: &[u8]) -> Vec<(u8, String)> {
    body.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0], String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

fn field(fields: &[(u8, String)], key: u8) -> String {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()).unwrap_or_default()
}

/// The server still serves a well-behaved client.
fn assert_still_serving(server: &TestServer) {
    let mut raw = Raw::ready(server);
    raw.send(&frame(b'Q', b"SELECT 41 + 1\0"));
    let mut tags = Vec::new();
    while let Some((tag, _)) = raw.recv() {
        tags.push(tag);
        if tag == b'Z' {
            break;
        }
    }
    assert_eq!(tags, b"TDCZ", "a plain query after the hostile ones");
}

#[test]
fn a_nul_byte_cannot_smuggle_a_second_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    let mut raw = Raw::ready(&server);
    // One Query frame whose length covers a NUL and a whole second Query.
    let mut body = b"SELECT 1\0".to_vec();
    body.extend(frame(b'Q', b"SELECT 'smuggled'\0"));
    raw.send(&frame(b'Q', &body));
    let before = raw.expect_fatal("08P01", "a Query with a NUL inside");
    assert!(before.is_empty(), "nothing ran before the error: {:?}", String::from_utf8_lossy(&before));
    assert_still_serving(&server);
    server.assert_no_panic();
}

#[test]
fn query_lengths_below_four_are_protocol_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    for len in [0u8, 3] {
        let mut raw = Raw::ready(&server);
        raw.send(&[b'Q', 0, 0, 0, len]);
        raw.send(&frame(b'Q', b"SELECT 1\0"));
        raw.expect_fatal("08P01", &format!("a Query of declared length {len}"));
    }
    server.assert_no_panic();
}

#[test]
fn malformed_password_messages_are_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), &["--password", "s3cret"]);
    let scram = |len: Option<i32>, data: &[u8]| {
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        if let Some(len) = len {
            body.extend(len.to_be_bytes());
        }
        body.extend(data);
        frame(b'p', &body)
    };
    let cases: [(&str, Vec<u8>); 5] = [
        ("a cleartext password", frame(b'p', b"s3cret\0")),
        ("an MD5 password", frame(b'p', b"md5a3556571e93b0d20722ba62be61e8c2d\0")),
        ("a SASLInitialResponse without its length", scram(None, b"")),
        ("a SASLInitialResponse longer than its frame", scram(Some(1000), b"n,,n=weir,r=abc")),
        ("a SASLInitialResponse with a negative length", scram(Some(-7), b"")),
    ];
    for (what, message) in cases {
        let mut raw = Raw::started(&server);
        let (tag, body) = raw.recv().expect("an authentication request");
        assert_eq!((tag, &body[..4]), (b'R', &10i32.to_be_bytes()[..]), "SASL is asked for");
        raw.send(&message);
        raw.expect_fatal("08P01", what);
    }
    // A query before logging in is refused the same way.
    let mut raw = Raw::started(&server);
    raw.recv();
    raw.send(&frame(b'Q', b"SELECT 1\0"));
    raw.expect_fatal("08P01", "a Query during authentication");
    server.assert_no_panic();
    let (ok, out, err) = common::psql(server.port, &["-A", "-t", "-c", "select 42"], &[("PGPASSWORD", "s3cret")]);
    assert!(ok && out.trim() == "42", "a real login still works: {out}{err}");
}

#[test]
fn malformed_extended_protocol_messages_are_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    let i16s = |v: &[i16]| v.iter().flat_map(|n| n.to_be_bytes()).collect::<Vec<u8>>();
    let parse = |count: i16, oids: usize| {
        let mut b = b"\0SELECT $1\0".to_vec();
        b.extend(i16s(&[count]));
        b.extend(std::iter::repeat_n(0u8, oids * 4));
        frame(b'P', &b)
    };
    // portal, statement, format codes, then the parameters as given, then
    // no result formats.
    let bind = |formats: &[i16], params: &[u8]| {
        let mut b = b"\0\0".to_vec();
        b.extend(i16s(&[formats.len() as i16]));
        b.extend(i16s(formats));
        b.extend(params);
        b.extend(i16s(&[0]));
        frame(b'B', &b)
    };
    let params = |count: i16, values: &[(i32, &[u8])]| {
        let mut b = i16s(&[count]);
        for (len, bytes) in values {
            b.extend(len.to_be_bytes());
            b.extend(*bytes);
        }
        b
    };
    let mut negative_formats = b"\0\0".to_vec();
    negative_formats.extend(i16s(&[-1, 0, 0]));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a Parse announcing 3 parameter types with 1 present", parse(3, 1)),
        ("a Parse with a negative count", parse(-1, 0)),
        ("a Parse with a type list longer than announced", parse(1, 2)),
        ("a Bind with a truncated parameter list", bind(&[], &params(2, &[(1, b"7")]))),
        ("a Bind whose count exceeds the body", bind(&[], &params(1000, &[]))),
        ("a Bind whose value length exceeds the body", bind(&[], &params(1, &[(500, b"7")]))),
        ("a Bind with a negative parameter count", bind(&[], &params(-3, &[]))),
        ("a Bind with a negative format count", frame(b'B', &negative_formats)),
        ("a Bind with parameter length -2", bind(&[], &params(1, &[(-2, b"")]))),
        ("a Bind with nothing after the names", frame(b'B', b"\0\0")),
        ("an Execute without its row limit", frame(b'E', b"\0")),
        ("a Describe without a target", frame(b'D', b"")),
        ("a Close of an unknown kind of target", frame(b'C', b"Xname\0")),
        ("a Sync with a body", frame(b'S', b"x")),
        ("an unknown message type", frame(b'F', b"\0\0\0\0")),
        ("a password message after login", frame(b'p', b"s3cret\0")),
    ];
    for (what, message) in cases {
        let mut raw = Raw::ready(&server);
        raw.send(&message);
        raw.send(&frame(b'S', b""));
        raw.expect_fatal("08P01", what);
    }
    assert_still_serving(&server);
    server.assert_no_panic();
}

/// An Execute's row limit of -1 (which PostgreSQL reads as "all rows") or
/// of i32::MAX must not make the server reserve room for that many rows.
#[test]
fn execute_row_limits_of_any_size_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    let mut raw = Raw::ready(&server);
    for max_rows in [-1i32, i32::MAX, 2] {
        raw.send(&frame(b'P', b"\0SELECT v FROM range(0, 3) AS r(v)\0\0\0"));
        raw.send(&frame(b'B', b"\0\0\0\0\0\0\0\0"));
        let mut execute = b"\0".to_vec();
        execute.extend(max_rows.to_be_bytes());
        raw.send(&frame(b'E', &execute));
        raw.send(&frame(b'S', b""));
        let mut tags = Vec::new();
        while let Some((tag, _)) = raw.recv() {
            tags.push(tag);
            if tag == b'Z' {
                break;
            }
        }
        let expected: &[u8] = if max_rows == 2 { b"12DDsZ" } else { b"12DDDCZ" };
        assert_eq!(String::from_utf8_lossy(&tags), String::from_utf8_lossy(expected), "max_rows {max_rows}");
    }
    server.assert_no_panic();
}

async fn connect(server: &TestServer, password: Option<&str>) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conn_str = match password {
        Some(p) => format!("{} password={p}", server.conn_str()),
        None => server.conn_str(),
    };
    // A server that leaves the client hanging fails the test, not the suite.
    let connecting = tokio_postgres::connect(&conn_str, NoTls);
    let (client, conn) = tokio::time::timeout(Duration::from_secs(20), connecting)
        .await
        .expect("the server neither accepted nor refused the client within 20s")?;
    tokio::spawn(conn);
    Ok(client)
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_that_never_log_in_cannot_lock_clients_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), &["--max-connections", "16", "--authentication-timeout", "1"]);
    let idle: Vec<TcpStream> =
        (0..256).map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect an idle socket")).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = connect(&server, None).await.expect("a client logs in after the idle sockets timed out");
    let row = client.query_one("SELECT 7::INT", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
    // The server closed the idle sockets itself (they are still open here).
    for mut socket in idle.into_iter().take(32) {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(socket.read(&mut byte), Ok(0) | Err(_)), "an idle socket was left open");
    }
    server.assert_no_panic();
}

/// A query that would run for hours.
const ENDLESS: &str = "SELECT count(*) FROM range(0, 1000000000000) AS r(v) WHERE v % 7 = 3";

#[tokio::test(flavor = "multi_thread")]
async fn past_the_limit_a_client_is_refused_at_once_and_cancels_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), &["--max-connections", "2"]);
    let first = connect(&server, None).await.expect("first session");
    let _second = connect(&server, None).await.expect("second session");

    let started = Instant::now();
    let Err(err) = connect(&server, None).await else { panic!("a third session got in") };
    assert_eq!(err.code().map(|c| c.code()), Some("53300"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "refused after {:?}", started.elapsed());

    // A full server still takes cancel requests (they are not sessions).
    let token = first.cancel_token();
    let canceller = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = token.cancel_query(NoTls).await;
        }
    });
    let result = tokio::time::timeout(Duration::from_secs(60), first.simple_query(ENDLESS)).await;
    canceller.abort();
    let err = result.expect("the query was cancelled").expect_err("an endless query finished");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match connect(&server, None).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code().map(|c| c.code()), Some("53300"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("a slot never came free: {e}"),
        }
    }
    server.assert_no_panic();
}

#[test]
fn an_idle_session_is_closed_with_57p05() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), &["--idle-session-timeout", "1"]);
    let mut raw = Raw::ready(&server);
    let started = Instant::now();
    raw.expect_fatal("57P05", "an idle session");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(10), "closed after {waited:?}");

    // A session sets its own, shorter timeout; a busy session is not idle.
    let mut raw = Raw::ready(&server);
    raw.send(&frame(b'Q', b"SET idle_session_timeout = '300ms'\0"));
    while raw.recv().is_some_and(|(tag, _)| tag != b'Z') {}
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(150));
        raw.send(&frame(b'Q', b"SELECT 1\0"));
        while raw.recv().is_some_and(|(tag, _)| tag != b'Z') {}
    }
    let started = Instant::now();
    raw.expect_fatal("57P05", "a session idle past its own timeout");
    assert!(started.elapsed() < Duration::from_millis(900), "closed after {:?}", started.elapsed());
    server.assert_no_panic();
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_answered_ever_slower() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), &["--password", "s3cret"]);
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let Err(err) = connect(&server, Some("wrong")).await else { panic!("a wrong password got in") };
        assert_eq!(err.code().map(|c| c.code()), Some("28P01"), "{err}");
        took.push(started.elapsed());
    }
    assert!(took[2] >= Duration::from_millis(350), "the third failure was answered after {:?}", took[2]);
    assert!(took[2] > took[0] + Duration::from_millis(200), "failures did not slow down: {took:?}");
    // The right password gets in without a delay, and starts the count over.
    let started = Instant::now();
    connect(&server, Some("s3cret")).await.expect("the right password");
    assert!(started.elapsed() < Duration::from_secs(2), "a good login took {:?}", started.elapsed());
    let started = Instant::now();
    let Err(_) = connect(&server, Some("wrong")).await else { panic!("a wrong password got in") };
    assert!(started.elapsed() < took[2], "no fresh start after a good login: {:?}", started.elapsed());
    server.assert_no_panic();
}

/// CPU seconds the process has used so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name (which may hold spaces) start at state.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn cpu_over(pid: u32, window: Duration) -> f64 {
    let before = cpu_seconds(pid);
    std::thread::sleep(window);
    cpu_seconds(pid) - before
}

#[test]
fn a_client_that_hangs_up_does_not_leave_its_query_running() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path());
    let endless = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t\0";
    let mut raw = Raw::ready(&server);
    raw.send(&frame(b'Q', endless.as_bytes()));
    // Running: the server burns CPU on it. Judged against itself, not a
    // clock: on a loaded machine a running query gets a smaller share.
    let started = cpu_seconds(server.pid());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cpu_seconds(server.pid()) - started < 1.0 {
        assert!(std::time::Instant::now() < deadline, "the endless query is not running");
        std::thread::sleep(Duration::from_millis(100));
    }
    let busy = cpu_over(server.pid(), Duration::from_secs(2));

    drop(raw);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server.log().iter().any(|l| l.contains("client hung up")) {
        assert!(std::time::Instant::now() < deadline, "the hang-up was not noticed");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = cpu_over(server.pid(), Duration::from_secs(2));
    assert!(
        after < (busy / 4.0).max(0.05),
        "the query still runs after its client hung up ({after:.2} CPU seconds in 2s, {busy:.2} while it ran)"
    );
    assert_still_serving(&server);
    server.assert_no_panic();
}
