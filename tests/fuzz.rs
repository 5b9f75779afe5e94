//! Scenario: a careless or hostile client. One server takes mutated SQL (the
//! statements of `tests/slt/` and `sql/`, cut, spliced, repeated into long
//! operator chains, given extreme literals and path-like names) and then
//! malformed protocol messages (valid frames with bodies truncated, padded,
//! bit-flipped, with lying lengths and unknown types, before and after
//! login). It must never die, never log a panic, answer every failing
//! statement with a SQLSTATE, and answer every statement within a bound.
//!
//! Bounded for CI (about two minutes): each seed sends `FUZZ_STATEMENTS`
//! statements (default 4,000) and `FUZZ_MESSAGES` protocol messages (default
//! 2,000); it runs a fixed seed and a random one, printed so that a failure
//! can be replayed:
//!
//!   FUZZ_SEED=1234 FUZZ_STATEMENTS=100000 FUZZ_MESSAGES=50000 \
//!     cargo test --release --test fuzz -- --nocapture

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::TestServer;

/// Each statement must be answered within this, whatever it is.
const STATEMENT_BOUND: Duration = Duration::from_secs(30);
const FIXED_SEED: u64 = 0x005E_ED0F_5EED;

#[test]
fn mutated_sql_and_malformed_messages_never_hurt_the_server() {
    let statements: usize = env_number("FUZZ_STATEMENTS", 4_000);
    let messages: usize = env_number("FUZZ_MESSAGES", 2_000);
    let mut seeds = vec![FIXED_SEED];
    match std::env::var("FUZZ_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => seeds = vec![seed],
        None => seeds.push(random_seed()),
    }
    let corpus = corpus();
    assert!(corpus.len() > 100, "the corpus comes from tests/slt and sql/: {} statements", corpus.len());

    let (mut sent_statements, mut sent_messages) = (0, 0);
    for seed in seeds {
        eprintln!("fuzz: seed {seed} (replay with FUZZ_SEED={seed})");
        let dir = tempfile::tempdir().expect("temp dir");
        // Inside the data directory: the only place a client may write.
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let server = TestServer::start_in(dir.path());
        let mut rng = Rng(seed | 1);
        sent_statements += fuzz_sql(&server, &corpus, &scratch, &mut rng, statements, seed);
        sent_messages += fuzz_protocol(&server, &mut rng, messages, seed);
        let log = server.log();
        let panics: Vec<&String> = log.iter().filter(|l| l.contains("panicked")).collect();
        assert!(panics.is_empty(), "seed {seed}: the server logged a panic: {panics:?}");
    }
    eprintln!("fuzz: {sent_statements} statements, {sent_messages} protocol messages sent");
}

/// Sends `count` mutated statements over one session (reconnecting when
/// the server ends a session on purpose); returns how many were sent.
fn fuzz_sql(server: &TestServer, corpus: &[String], scratch: &Path, rng: &mut Rng, count: usize, seed: u64) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = connect(server).await;
        // XX000 is a SQLSTATE, so it passes, but each is printed: it marks a
        // mistake of the client's that deserves a more specific code.
        let mut internal = 0;
        for i in 0..count {
            let sql = mutate(corpus, scratch, rng);
            let started = Instant::now();
            let outcome = tokio::time::timeout(STATEMENT_BOUND, client.simple_query(&sql)).await;
            let shown: String = sql.chars().take(300).collect();
            match outcome {
                Err(_) => panic!("seed {seed}, statement {i}: no answer within {STATEMENT_BOUND:?}: {shown}"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => match e.as_db_error() {
                    Some(db) => {
                        if db.code().code() == "XX000" {
                            internal += 1;
                            eprintln!("fuzz: XX000 for {shown}: {}", db.message());
                        }
                    }
                    None => {
                        assert!(server.is_alive(), "seed {seed}, statement {i}: the server died on: {shown}");
                        panic!("seed {seed}, statement {i}: an error without a SQLSTATE ({e}) for: {shown}");
                    }
                },
            }
            assert!(started.elapsed() < STATEMENT_BOUND);
            if i % 100 == 99 {
                drop_continuous_queries(&client).await;
            }
        }
        drop_continuous_queries(&client).await;
        eprintln!("fuzz: seed {seed}: {internal} of {count} statements answered XX000");
        count
    })
}

async fn connect(server: &TestServer) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&server.conn_str(), tokio_postgres::NoTls).await.expect("connect to weir");
    tokio::spawn(connection);
    client
}

/// Mutated CREATE SINK statements may start queries; stop them so that
/// the run measures the statements, not a growing set of background jobs.
async fn drop_continuous_queries(client: &tokio_postgres::Client) {
    for (show, drop) in [("SHOW SINKS", "DROP SINK"), ("SHOW MATERIALIZED VIEWS", "DROP MATERIALIZED VIEW")] {
        let Ok(rows) = client.simple_query(show).await else { continue };
        for row in rows {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = row
                && let Some(name) = row.get(0)
            {
                let _ = client.simple_query(&format!("{drop} IF EXISTS \"{}\"", name.replace('"', "\"\""))).await;
            }
        }
    }
}

/// Sends `count` malformed messages, each on a fresh connection, and checks
/// after each batch that a real client is still served.
fn fuzz_protocol(server: &TestServer, rng: &mut Rng, count: usize, seed: u64) -> usize {
    for i in 0..count {
        let bytes = malformed_conversation(rng);
        if let Ok(mut socket) = TcpStream::connect(("127.0.0.1", server.port)) {
            let _ = socket.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = socket.write_all(&bytes);
            // Half-close: a conversation cut short ends now, not at the
            // server's login deadline.
            let _ = socket.shutdown(std::net::Shutdown::Write);
            // Read whatever the server answers until it closes or goes quiet.
            let mut answer = [0u8; 4096];
            while let Ok(n) = socket.read(&mut answer) {
                if n == 0 {
                    break;
                }
            }
        }
        if i % 50 == 49 || i + 1 == count {
            assert!(server.is_alive(), "seed {seed}, message {i}: the server died");
            let (ok, out, err) = common::psql(server.port, &["-tAc", "SELECT 41 + 1"], &[]);
            assert!(ok && out.trim() == "42", "seed {seed}, message {i}: a real client is no longer served: {out} {err}");
        }
    }
    count
}

/// A start-up packet (or a mangled one), then zero or more messages whose
/// frames or bodies are broken in one of several ways.
fn malformed_conversation(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let startup = startup_packet();
    if rng.below(6) == 0 {
        out.extend(mangle(&startup, rng));
        return out;
    }
    out.extend(startup);
    for _ in 0..1 + rng.below(3) {
        let (kind, body) = valid_message(rng);
        let mut body = body;
        let mut kind = kind;
        let mut length = body.len() as i64 + 4;
        match rng.below(7) {
            0 => body = mangle(&body, rng),
            1 => body.truncate(rng.below(body.len() + 1)),
            2 => length = [0, 1, 3, -1, i32::MAX as i64, length - 1, length + 7][rng.below(7)],
            3 => kind = b"AaGgJjKkLlMmNnOoRrTtUuVvWwYyZz!?\x00\xff"[rng.below(34)],
            4 => body.extend((0..rng.below(64)).map(|_| rng.below(256) as u8)),
            5 => {
                let at = rng.below(body.len() + 1);
                body.insert(at, 0);
            }
            _ => {}
        }
        out.push(kind);
        out.extend((length as i32).to_be_bytes());
        out.extend(body);
    }
    out
}

fn startup_packet() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend(196608i32.to_be_bytes());
    for part in ["user", "weir", "database", "weir", ""] {
        body.extend(part.as_bytes());
        body.push(0);
    }
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// A well-formed frontend message body of a random kind.
fn valid_message(rng: &mut Rng) -> (u8, Vec<u8>) {
    let cstr = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    match rng.below(8) {
        0 => (b'Q', cstr("SELECT 1")),
        1 => {
            let mut b = cstr("");
            b.extend(cstr("SELECT $1::int"));
            b.extend(1i16.to_be_bytes());
            b.extend(23i32.to_be_bytes());
            (b'P', b)
        }
        2 => {
            let mut b = cstr("");
            b.extend(cstr(""));
            b.extend(1i16.to_be_bytes());
            b.extend(0i16.to_be_bytes());
            b.extend(1i16.to_be_bytes());
            b.extend(1i32.to_be_bytes());
            b.push(b'7');
            b.extend(0i16.to_be_bytes());
            (b'B', b)
        }
        3 => {
            let mut b = cstr("");
            b.extend(0i32.to_be_bytes());
            (b'E', b)
        }
        4 => {
            let mut b = vec![b'S'];
            b.extend(cstr(""));
            (b'D', b)
        }
        5 => {
            let mut b = cstr("SCRAM-SHA-256");
            b.extend(4i32.to_be_bytes());
            b.extend(b"n,,x");
            (b'p', b)
        }
        6 => (b'p', cstr("password")),
        _ => (b'S', vec![]),
    }
}

fn mangle(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(3) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = [0, 0xff, 0x7f, 0x80][rng.below(4)],
            _ => {
                out.remove(at);
            }
        }
    }
    out
}

/// One statement of the corpus, changed one to three times.
fn mutate(corpus: &[String], scratch: &Path, rng: &mut Rng) -> String {
    let mut sql: Vec<char> = corpus[rng.below(corpus.len())].chars().collect();
    for _ in 0..1 + rng.below(3) {
        let len = sql.len();
        let (a, b) = {
            let a = rng.below(len + 1);
            let b = (a + rng.below(40)).min(len);
            (a, b)
        };
        match rng.below(10) {
            0 => {
                sql.drain(a..b);
            }
            1 => {
                let piece: Vec<char> = sql[a..b].to_vec();
                let at = rng.below(sql.len() + 1);
                sql.splice(at..at, piece);
            }
            2 => {
                let other: Vec<char> = corpus[rng.below(corpus.len())].chars().collect();
                let c = rng.below(other.len() + 1);
                sql.splice(a..len, other[c..].iter().copied());
            }
            3 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                sql.splice(a..a, format!(" {token} ").chars());
            }
            4 => {
                let literal = LITERALS[rng.below(LITERALS.len())];
                sql.splice(a..b, literal.chars());
            }
            5 => {
                // A long flat chain: the shape that once overflowed a stack.
                let op = [" + ", " OR ", " AND ", " || ", " * ", " UNION ALL SELECT "][rng.below(6)];
                let n = [10, 500, 2_000, 5_000, 20_000][rng.below(5)];
                let chain = vec!["1"; n].join(op);
                sql.splice(a..a, format!(" {chain} ").chars());
            }
            6 => {
                let depth = [10, 60, 300][rng.below(3)];
                sql.splice(a..a, format!("{}1{}", "(".repeat(depth), ")".repeat(depth)).chars());
            }
            7 => {
                let name = NAMES[rng.below(NAMES.len())];
                sql.splice(a..b, name.chars());
            }
            8 => {
                if len > 1 {
                    let c = rng.below(len);
                    sql.swap(a.min(len - 1), c);
                }
            }
            _ => {
                let c = char::from_u32(rng.below(0x3000) as u32).unwrap_or('?');
                sql.insert(a.min(sql.len()), c);
            }
        }
    }
    // A NUL cannot travel in a Query message (clients refuse to send one;
    // the protocol half of the fuzzer sends it raw instead).
    let text: String = sql.into_iter().filter(|c| *c != '\0').collect();
    // A mutated statement still writes only under the scratch directory.
    text.replace("$SCRATCH", &scratch.display().to_string())
}

const TOKENS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "JOIN",
    "ON",
    "UNION",
    "(",
    ")",
    ",",
    "*",
    "NULL",
    "CASE WHEN",
    "THEN",
    "ELSE",
    "END",
    "::",
    "->>",
    "OVER ()",
    "WITH RECURSIVE",
    "TUMBLE(",
    "HOP(",
    "INTERVAL",
    "DISTINCT",
    "EXPLAIN",
    "COPY",
    "TO",
    "LATERAL",
    "unnest(",
    "array[",
    "]",
    "'",
    "\"",
    "$1",
    ";",
    "--",
    "/*",
];

const LITERALS: &[&str] = &[
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999999999999999999999",
    "1e308",
    "'NaN'::double",
    "INTERVAL '2147483647 months'",
    "INTERVAL '9223372036854775807 microseconds'",
    "'294277-01-01'::timestamp",
    "'\u{7f}'",
    "E'\\x00'",
    "''",
    "'ǅ ẞ 🦀'",
    "0.0",
    "-0",
    "NULL::int",
    "repeat('x', 100000)",
    "generate_series(1, 3)",
];

const NAMES: &[&str] = &[
    "\"../../escape\"",
    "\"/tmp/weir-fuzz\"",
    "'/etc/passwd'",
    "'../../../../etc'",
    "\".hidden\"",
    "\"a/b\"",
    "\"\u{7f}\"",
    "\"x\"\"y\"",
    "pg_catalog.pg_class",
    "weir.query_progress",
];

/// Every statement of the slt files and the sql/ scripts, with the slt
/// substitutions that would reach outside the scratch directory replaced.
fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut statements = Vec::new();
    let mut files = Vec::new();
    collect_files(&root.join("tests/slt"), "slt", &mut files);
    collect_files(&root.join("sql"), "sql", &mut files);
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        if file.extension().is_some_and(|e| e == "slt") {
            statements.extend(slt_statements(&text));
        } else {
            statements.extend(
                text.split(';')
                    .map(|s| s.lines().filter(|l| !l.trim_start().starts_with('\\')).collect::<Vec<_>>().join("\n"))
                    .filter(|s| !s.trim().is_empty()),
            );
        }
    }
    statements
        .into_iter()
        .map(|s| {
            s.replace("$KAFKA", "127.0.0.1:9").replace("$FREE_PORT", "9").replace("$RUN", "fuzz").replace("$DATA_DIR", ".")
        })
        .collect()
}

fn collect_files(dir: &Path, extension: &str, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

/// The SQL of each `statement` and `query` record of a sqllogictest file.
fn slt_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if !(line.starts_with("statement ") || line.starts_with("query ")) {
            continue;
        }
        let mut sql = Vec::new();
        while let Some(next) = lines.peek() {
            if next.trim().is_empty() || next.starts_with("----") {
                break;
            }
            sql.push(*next);
            lines.next();
        }
        if !sql.is_empty() {
            out.push(sql.join("\n"));
        }
    }
    out
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() % 1_000_000_007
}

/// xorshift64*: small, seedable and the same on every machine, so a seed
/// replays the run it names.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}
