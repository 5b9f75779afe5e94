//! The runnable example scripts in sql/ work as a new user would run them:
//! `psql -f sql/<script>.sql` against a fresh server, twice (the second run
//! over the same data directory, after a restart); and all of them on ONE
//! server, in the README's order and then in reverse, as the README invites
//! (no two scripts may declare the same name differently).

mod common;

#[test]
fn adhoc_script_runs_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/adhoc.sql");
    for run in 0..2 {
        let stdout = run_script(dir.path(), script, &[], run);
        assert_lines(&stdout, ADHOC, run);
    }
}

const ADHOC: &[&str] = &[
    // sword purchases per host
    " user1.comcast.com |      2 |    11",
    // joined and ranked: the unknown host has no tier
    " 2026-11-21 | user3.verizon.net |        |     2 |           2",
];

/// Scenario 6: files dropped into a directory become Parquet once each; the
/// second run (after a restart, same files written again) adds nothing.
#[test]
fn orders_directory_script_lands_completed_orders_once() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/orders_dir.sql");
    for run in 0..2 {
        let stdout = run_script(dir.path(), script, &[], run);
        assert_lines(&stdout, ORDERS_DIR, run);
    }
}

const ORDERS_DIR: &[&str] = &[
    " alice    |      2 |   37.25",
    " carol    |      1 |      99",
    " completed_orders | running | t",
    "         5 |           3",
];

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
        let stdout = run_script(dir.path(), script, &[&kafka], run);
        assert_game_events(&stdout, run);
    }
}

fn assert_game_events(stdout: &str, run: usize) {
    assert_contains(
        stdout,
        &[" user1.comcast.com |     10", " swords | events | sword_purchases | 2 seconds | running"],
        run,
    );
    assert!(!stdout.contains("user2.att.com"), "only user1 bought swords: {stdout}");
}

/// One run of a script as a user runs it: a server over `data_dir`, `psql
/// -v <var>... -f <script>`, then the server killed (the next run is a
/// restart). Returns psql's output.
fn run_script(data_dir: &std::path::Path, script: &str, vars: &[&str], run: usize) -> String {
    let server = common::TestServer::start_in(data_dir);
    let stdout = psql_file(server.port, script, vars, run);
    server.kill();
    stdout
}

/// `psql -v <var>... -f <script>` against the server on `port`; asserts it
/// succeeded and returns its output.
fn psql_file(port: u16, script: &str, vars: &[&str], run: usize) -> String {
    let mut args = Vec::new();
    for var in vars {
        args.extend(["-v", var]);
    }
    args.extend(["-f", script]);
    let (ok, stdout, stderr) = common::psql(port, &args, &[]);
    assert!(ok, "run {run} of {script}: {stderr}\n{stdout}");
    stdout
}

/// Runs `bash sql/<producer> args...` to completion with `weir` on hand.
fn run_producer(script: &str, args: &[&str]) {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(format!("{}/sql/{script}", env!("CARGO_MANIFEST_DIR"))).args(args).env("WEIR_BIN", env!("CARGO_BIN_EXE_weir"));
    let out = common::output_within(cmd, common::CLIENT_LIMIT);
    assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Asserts that `stdout` contains every one of `expected`. Runs of spaces
/// count as one: psql pads a column to its widest value, which depends on
/// what else the server holds.
fn assert_contains(stdout: &str, expected: &[&str], run: usize) {
    let text = squeeze(stdout);
    for wanted in expected {
        assert!(text.contains(&squeeze(wanted)), "run {run}: no {wanted:?} in:\n{stdout}");
    }
}

/// Asserts that every line of `expected` is a line of `stdout` (runs of
/// spaces count as one, as above).
fn assert_lines(stdout: &str, expected: &[&str], run: usize) {
    for line in expected {
        let wanted = squeeze(line);
        assert!(stdout.lines().any(|l| squeeze(l) == wanted), "run {run}: no line {line:?} in:\n{stdout}");
    }
}

/// `text` with every run of spaces as one space and no space at the ends.
fn squeeze(text: &str) -> String {
    text.split(' ').filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `sql/produce_lines.sh` on a free port, killed on drop.
struct LineServer {
    child: std::process::Child,
    port: u16,
}

impl LineServer {
    /// Starts the line server and waits until it listens (a probe
    /// connection would count as its first client).
    fn start() -> LineServer {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap();
        let mut child = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/sql/produce_lines.sh"))
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let stdout = child.stdout.take().unwrap();
        let mut reader = std::io::BufReader::new(stdout);
        reader.read_line(&mut first).unwrap();
        assert!(first.starts_with("serving"), "line server did not start: {first:?}");
        // Keep reading its log so that it never blocks on a full pipe.
        std::thread::spawn(move || reader.lines().map_while(Result::ok).for_each(|l| eprintln!("[lines] {l}")));
        LineServer { child, port }
    }
}

impl Drop for LineServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Scenario 2: word count over a socket in complete mode. The line server
/// sends verse 1 to weir's first connection; after the restart weir connects
/// again and gets verse 2, and the counts are those of both verses (verse 1
/// from the committed state; a socket is not replayed).
#[test]
fn word_count_script_counts_words_from_a_socket_across_a_restart() {
    let lines = LineServer::start();
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/word_count.sql");
    let port = format!("port={}", lines.port);
    let expected: [&[&str]; 2] = [
        WORD_COUNT_VERSE_1,
        &[
            " the     | 4",
            " twinkle | 4",
            " little  | 2",
            " when    | 2",
            " you     | 2",
            "    44 |             35",
            "          8",
        ],
    ];
    for (run, expected) in expected.iter().enumerate() {
        let stdout = run_script(dir.path(), script, &[&port], run);
        assert_lines(&stdout, expected, run);
    }
}

/// The counts after verse 1 (the line server's first client).
const WORD_COUNT_VERSE_1: &[&str] = &[
    " the     | 2",
    " twinkle | 2",
    " a       | 1",
    " above   | 1",
    " are     | 1",
    "    22 |             20",
    "          4",
];

/// Scenario 3: hashtags from tweets on Kafka, counted per sliding window
/// with a watermark; each closed window's counts land in a view and on a
/// Kafka topic as JSON, read back by a second stream. The second run, after
/// a restart, shows the same results and nothing sent twice.
#[test]
fn trending_hashtags_script_counts_per_window_and_writes_back_to_kafka() {
    let broker = common::kafka::Broker::start();
    broker.create_topic("tweets", 1);
    broker.create_topic("trending", 1);
    run_producer("produce_tweets.sh", &[&broker.bootstrap(), "tweets"]);
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/trending_hashtags.sql");
    let kafka = format!("kafka={}", broker.bootstrap());
    for run in 0..2 {
        let stdout = run_script(dir.path(), script, &[&kafka], run);
        assert_trending(&stdout, &broker.bootstrap(), run);
    }
}

fn assert_trending(stdout: &str, bootstrap: &str, run: usize) {
    let target = format!(" trending_to_kafka | sink              | kafka://{bootstrap}/trending | running");
    assert_lines(
        stdout,
        &[
            " 2026-11-23 09:55:00 | 2026-11-23 10:05:00 | #sql 3, #streaming 3, #kafka 2, #rust 2",
            " 2026-11-23 10:00:00 | 2026-11-23 10:10:00 | #streaming 6, #kafka 5, #rust 5, #sql 5, #weir 1",
            " 2026-11-23 10:05:00 | 2026-11-23 10:15:00 | #kafka 5, #rust 5, #sql 5, #streaming 5, #weir 5",
            " 2026-11-23 10:10:00 | 2026-11-23 10:20:00 | #weir 10, #sql 6, #kafka 5, #rust 5, #streaming 4",
            " 2026-11-23 10:15:00 | 2026-11-23 10:25:00 | #weir 15, #kafka 5, #rust 5, #sql 5, #streaming 5",
            " 2026-11-23 10:20:00 | 2026-11-23 10:30:00 | #weir 19, #kafka 5, #rust 5, #streaming 5, #sql 4",
            " 2026-11-23 10:25:00 | 2026-11-23 10:35:00 | #weir 10, #kafka 3, #rust 3, #sql 2, #streaming 2",
            "(7 rows)",
            // #weir over time, then the 34 records on the topic
            " 2026-11-23 10:20:00 |     19",
            "      34",
            r##" {"window_start":"2026-11-23T10:20:00","window_end":"2026-11-23T10:30:00","tag":"#weir","tweets":19}"##,
            &target,
            " trending          |        61 |           34 |    0",
            " trending_to_kafka |        61 |           34 |    0",
        ],
        run,
    );
}

/// Scenario 4: sales of 5,000 billing counters, totals per store every 15
/// minutes with a 10-minute watermark, append mode. The server is killed
/// while the 10:30 window is open; then part 2 of the sales arrives: a late
/// sale within the watermark is counted in the restored window, one older
/// than the watermark is dropped and kept in sales_15m_late.
#[test]
fn retail_sales_script_totals_per_store_across_a_restart_with_late_sales() {
    let broker = common::kafka::Broker::start();
    broker.create_topic("sales", 1);
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/retail_sales.sql");
    let kafka = format!("kafka={}", broker.bootstrap());
    for part in 1..=2 {
        run_producer("produce_sales.sh", &[&part.to_string(), &broker.bootstrap(), "sales"]);
        let stdout = run_script(dir.path(), script, &[&kafka], part - 1);
        assert_retail_sales(&stdout, part);
    }
}

/// What retail_sales.sql shows after part 1 or part 2 of the sales.
fn assert_retail_sales(stdout: &str, part: usize) {
    let closed = [
        " 2026-11-23 10:00:00 | 2026-11-23 10:15:00 |     10 |  1800 | 92430.00",
        " 2026-11-23 10:15:00 | 2026-11-23 10:30:00 |     10 |  1800 | 92205.00",
        " 2026-11-23 10:00:00 |     6 | 16380.00 |   180",
        " 2026-11-23 10:15:00 |     5 | 14923.80 |   180",
    ];
    let after_part: [&[&str]; 2] = [
        &["       5000 | 2026-11-23 10:31:39 |          10 |          0", "(0 rows)"],
        &[
            " 2026-11-23 10:30:00 | 2026-11-23 10:45:00 |     10 |  1801 | 91900.99",
            " 2026-11-23 10:30:00 |     4 | 13467.60 |   180",
            "       6702 | 2026-11-23 10:45:49 |          10 |          1",
            "     2 |    4242 |   5.00 | 2026-11-23 10:28:00",
        ],
    ];
    assert_lines(stdout, &closed, part);
    assert_lines(stdout, after_part[part - 1], part);
    // Before part 2 the 10:30 window is still open: not in the view.
    assert_eq!(stdout.contains(" 2026-11-23 10:30:00 | 2026-11-23 10:45:00 "), part == 2, "part {part}: {stdout}");
}

/// Scenario 5: orders from Kafka enriched with a static customers table
/// (an unknown customer keeps its order), and ad impressions joined with the
/// clicks that follow within one hour: the clicked pairs, and click-through
/// per ad once the clicks' watermark has passed every impression's hour. The
/// second run, after a restart, shows the same rows (nothing joined twice).
#[test]
fn ads_and_orders_script_joins_streams_with_a_table_and_with_each_other() {
    let broker = common::kafka::Broker::start();
    for topic in ["orders", "impressions", "clicks"] {
        broker.create_topic(topic, 1);
    }
    run_producer("produce_ads.sh", &[&broker.bootstrap()]);
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/ads_and_orders.sql");
    let kafka = format!("kafka={}", broker.bootstrap());
    for run in 0..2 {
        let stdout = run_script(dir.path(), script, &[&kafka], run);
        assert_lines(&stdout, ADS_AND_ORDERS, run);
    }
}

const ADS_AND_ORDERS: &[&str] = &[
    "        1 |     25 | alice | gold",
    "        4 |     99 |       | ",
    "        5 |   7.25 | carol | gold",
    "(5 rows)",
    "      1 |   100 | 2026-11-23 10:00:00 | 2026-11-23 10:10:00",
    "      3 |   100 | 2026-11-23 10:10:00 | 2026-11-23 11:00:00",
    "      6 |   200 | 2026-11-23 10:25:00 | 2026-11-23 11:20:00",
    "(3 rows)",
    "   100 |           3 |      2",
    "   200 |           3 |      1",
    " ad_clicks   |         11",
    " ad_outcomes |         11",
];

/// Nexmark q5, q7 and q8 over the built-in generator: each writes the rows
/// of the same question asked as a batch over the landed events, and again
/// after a restart (finished queries stay finished, nothing is re-landed).
#[test]
fn nexmark_script_matches_the_batch_answers() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/nexmark.sql");
    let mut answers = Vec::new();
    for run in 0..2 {
        let stdout = run_script(dir.path(), script, &["events=300000"], run);
        answers.push(assert_nexmark(&stdout, run));
    }
    assert_eq!(answers[0], answers[1], "the same rows after the restart");
}

/// Checks nexmark.sql's answers (each query's rows equal the batch
/// question's) and returns them.
fn assert_nexmark(stdout: &str, run: usize) -> Vec<(String, u64, u64)> {
    assert!(stdout.contains(" nexmark_q7       | finished"), "run {run}: {stdout}");
    // " q5    |         5 |          5": weir's rows, the batch's rows.
    let rows: Vec<(String, u64, u64)> = stdout
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            match cells.as_slice() {
                [q, weir, batch] if q.starts_with('q') => Some((q.to_string(), weir.parse().ok()?, batch.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["q5", "q7", "q8"], "run {run}: {stdout}");
    for (query, weir, batch) in &rows {
        assert!(*weir > 0 && weir == batch, "run {run}: {query} wrote {weir} rows, the batch query gives {batch}");
    }
    rows
}

/// Without WEIR_BIN or `weir` on PATH, the producer scripts run the build the
/// README's first command made (`cargo build --release`), else a debug build;
/// with neither they say how to get one.
#[test]
fn producers_find_the_release_build() {
    let tmp = tempfile::tempdir().unwrap();
    let find = |target: &std::path::Path| {
        let mut cmd = std::process::Command::new("bash");
        cmd.args(["-c", &format!(". {}/sql/weir_binary.sh && weir_binary", env!("CARGO_MANIFEST_DIR"))])
            .env_remove("WEIR_BIN")
            .env("PATH", "/usr/bin:/bin")
            .env("CARGO_TARGET_DIR", target);
        common::output_within(cmd, common::CLIENT_LIMIT)
    };
    let missing = find(tmp.path());
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cargo build --release"), "{missing:?}");
    for build in ["debug", "release"] {
        let dir = tmp.path().join(build);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_weir"), dir.join("weir")).unwrap();
    }
    let found = find(tmp.path());
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), tmp.path().join("release/weir").display().to_string());
}

/// Every script on one server, in the order the README lists them and then
/// in reverse: each declares names no other script uses differently, so
/// each prints what it prints alone. Between the passes the second part of
/// the sales arrives (retail_sales.sql then shows the late sales); the line
/// server has no more lines for a running stream, so word counts stay.
#[test]
fn every_script_runs_on_one_server_in_readme_order_then_in_reverse() {
    let broker = common::kafka::Broker::start();
    broker.create_topic("events", 2);
    for topic in ["tweets", "trending", "sales", "orders", "impressions", "clicks"] {
        broker.create_topic(topic, 1);
    }
    let bootstrap = broker.bootstrap();
    run_producer("produce_game_events.sh", &["30", &bootstrap, "events"]);
    run_producer("produce_tweets.sh", &[&bootstrap, "tweets"]);
    run_producer("produce_sales.sh", &["1", &bootstrap, "sales"]);
    run_producer("produce_ads.sh", &[&bootstrap]);
    let lines = LineServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start_in(dir.path());
    let kafka = format!("kafka={bootstrap}");
    let port = format!("port={}", lines.port);
    let readme_order: [(&str, Vec<&str>); 8] = [
        ("adhoc.sql", vec![]),
        ("game_events.sql", vec![&kafka]),
        ("word_count.sql", vec![&port]),
        ("trending_hashtags.sql", vec![&kafka]),
        ("retail_sales.sql", vec![&kafka]),
        ("ads_and_orders.sql", vec![&kafka]),
        ("orders_dir.sql", vec![]),
        ("nexmark.sql", vec!["events=300000"]),
    ];
    let mut scripts: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    scripts.sort();
    let mut listed: Vec<String> = readme_order.iter().map(|(script, _)| script.to_string()).collect();
    listed.sort();
    assert_eq!(scripts, listed, "every script in sql/ runs here");
    let mut nexmark_answers = Vec::new();
    for pass in 0..2 {
        if pass == 1 {
            run_producer("produce_sales.sh", &["2", &bootstrap, "sales"]);
        }
        let order: Vec<_> = if pass == 0 { readme_order.iter().collect() } else { readme_order.iter().rev().collect() };
        for (script, vars) in order {
            let path = format!("{}/sql/{script}", env!("CARGO_MANIFEST_DIR"));
            let stdout = psql_file(server.port, &path, vars, pass);
            match *script {
                "adhoc.sql" => assert_lines(&stdout, ADHOC, pass),
                "game_events.sql" => assert_game_events(&stdout, pass),
                "word_count.sql" => assert_lines(&stdout, WORD_COUNT_VERSE_1, pass),
                "trending_hashtags.sql" => assert_trending(&stdout, &bootstrap, pass),
                "retail_sales.sql" => assert_retail_sales(&stdout, pass + 1),
                "ads_and_orders.sql" => assert_lines(&stdout, ADS_AND_ORDERS, pass),
                "orders_dir.sql" => assert_lines(&stdout, ORDERS_DIR, pass),
                "nexmark.sql" => nexmark_answers.push(assert_nexmark(&stdout, pass)),
                other => panic!("no expectations for {other}"),
            }
        }
    }
    assert_eq!(nexmark_answers[0], nexmark_answers[1], "the second pass re-lands nothing");
    server.assert_no_panic();
}
