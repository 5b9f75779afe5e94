//! Starts a real `weir serve` process on a free loopback port for a test, and
//! stops it (SIGKILL) when dropped. Tests talk to it only over the wire.
#![allow(dead_code)]

pub mod kafka;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A running server. The data directory outlives it, so a test can restart
/// a server over the same catalog with [`TestServer::start_in`].
pub struct TestServer {
    child: Child,
    pub addr: String,
    pub port: u16,
    /// The Arrow Flight SQL endpoint's port.
    pub flight_port: u16,
    pub data_dir: PathBuf,
    /// Every line the server has logged so far (stderr).
    log: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts a server over `data_dir` (created if missing) on 127.0.0.1:0.
    /// Tests keep their fixtures next to the data dir, in the test's own
    /// temporary directory (`tmp/data` beside `tmp/items`), so that
    /// directory is allowed with `--allow-path`; when the data dir is the
    /// temporary directory itself, nothing beyond it is.
    pub fn start_in(data_dir: &Path) -> TestServer {
        match test_root(data_dir) {
            Some(root) => Self::start_with(data_dir, &["--allow-path", &root.display().to_string()]),
            None => Self::start_with(data_dir, &[]),
        }
    }

    /// Like [`start_in`], with extra `weir serve` arguments and nothing
    /// allowed beyond the data dir unless `extra_args` says so.
    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> TestServer {
        Self::start_with_env(data_dir, extra_args, &[])
    }

    /// Like [`start_with`], with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["serve", "--listen", "127.0.0.1:0", "--flight-listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .envs(env.iter().copied())
            .env("RUST_LOG", std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        let (flight_tx, flight_rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_lines = log.clone();
        // Forward the server log to the test's stderr and report the address
        // from the "listening on <addr>" line (the Flight SQL endpoint logs
        // "listening at <addr>" before it).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[weir] {line}");
                log_lines.lock().unwrap_or_else(|p| p.into_inner()).push(line.clone());
                if let Some(rest) = line.split("flight sql listening at ").nth(1) {
                    let port: String =
                        rest.rsplit(':').next().unwrap_or("").chars().take_while(|c| c.is_ascii_digit()).collect();
                    let _ = flight_tx.send(port.parse::<u16>().unwrap_or(0));
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("weir did not report its listening address within 60s");
            }
        };
        let port = addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port in address");
        let flight_port = flight_rx.try_recv().unwrap_or(0);
        TestServer { child, addr, port, flight_port, data_dir: data_dir.to_path_buf(), log }
    }

    /// The server's log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fails the test if any connection task of the server panicked.
    pub fn assert_no_panic(&self) {
        let panics: Vec<String> = self.log().into_iter().filter(|l| l.contains("panicked")).collect();
        assert!(panics.is_empty(), "the server panicked:\n{}", panics.join("\n"));
    }

    /// Whether the server process still runs (not exited, not a zombie).
    pub fn is_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|stat| stat.rsplit(')').next().map(|rest| !rest.trim_start().starts_with(['Z', 'X'])))
            .unwrap_or(false)
    }

    /// A libpq-style connection string for this server.
    pub fn conn_str(&self) -> String {
        format!("host=127.0.0.1 port={} user=weir dbname=weir", self.port)
    }

    /// The server's process id (for memory checks in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server as an operator would (SIGTERM) and waits up to
    /// `limit` for it to exit; `None` if it did not (it is then killed).
    pub fn terminate(mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Kills the server at once (like a crash) and waits for it to exit.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory holding `data_dir` when that is a test's own temporary
/// directory (created by `tempfile` under the system temp dir), never the
/// system temp dir itself.
fn test_root(data_dir: &Path) -> Option<PathBuf> {
    let parent = data_dir.parent()?;
    std::fs::create_dir_all(parent).ok()?;
    let parent = std::fs::canonicalize(parent).ok()?;
    let system_tmp = std::fs::canonicalize(std::env::temp_dir()).ok()?;
    (parent != system_tmp && parent.starts_with(&system_tmp)).then_some(parent)
}

/// A `psql` command for the server at `port` (`-X`, loopback, user and
/// database `weir`), with a clean PG* environment so the developer's own
/// settings do not leak in. Add `-c ...`/`-f ...` and run it with
/// [`output_within`].
pub fn psql_command(port: u16) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "weir", "-d", "weir"]);
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGOPTIONS", "PGSERVICE", "PGPASSWORD", "PGSSLMODE", "PSQLRC"] {
        cmd.env_remove(var);
    }
    cmd.env("PGCONNECT_TIMEOUT", "30").env("PAGER", "cat").env("PGTZ", "UTC");
    cmd
}

/// A client run that takes longer than this is a hang, not a slow machine.
pub const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// Runs `psql` with `args` (and extra environment such as PGPASSWORD or
/// PGSSLMODE); returns (success, stdout, stderr).
pub fn psql(port: u16, args: &[&str], extra_env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = psql_command(port);
    cmd.args(args).envs(extra_env.iter().copied());
    let out = output_within(cmd, CLIENT_LIMIT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command to completion, killing it and failing the test if it takes
/// longer than `limit` (a hung client must not hang the suite). A missing
/// program fails with a pointer to the script that installs it.
pub fn output_within(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e} (run `bash scripts/test.sh`, which installs the clients)"));
    wait_within(child, limit)
}

/// Waits for a started child (stdout and stderr piped) and collects its
/// output; kills it and fails the test past `limit`.
pub fn wait_within(child: std::process::Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap_or_else(|e| panic!("wait for process {pid}: {e}")),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("process {pid} did not finish within {limit:?}; killed it");
        }
    }
}

/// Writes `items` (ids 1..10, name `item-<id>`, price id * 1.5) as Parquet
/// under `dir` through the server's COPY and declares it as an external table.
pub fn create_items_table(server: &TestServer, dir: &Path) {
    std::fs::create_dir_all(dir).expect("create table dir");
    let file = dir.join("part-0.parquet");
    let sql = format!(
        "COPY (SELECT value AS id, CONCAT('item-', CAST(value AS VARCHAR)) AS name, \
         CAST(value AS DOUBLE) * 1.5 AS price FROM generate_series(1, 10)) \
         TO '{}' STORED AS PARQUET",
        file.display()
    );
    let (ok, stdout, stderr) = psql(server.port, &["-c", &sql], &[]);
    assert!(ok, "COPY through psql failed:\n{stdout}{stderr}");
    assert!(file.exists(), "COPY reported success but wrote no {}", file.display());
    let ddl = format!(
        "CREATE EXTERNAL TABLE items (id BIGINT, name TEXT, price DOUBLE) \
         STORED AS PARQUET LOCATION '{}'",
        dir.display()
    );
    let (ok, stdout, stderr) = psql(server.port, &["-c", &ddl], &[]);
    assert!(ok, "CREATE EXTERNAL TABLE through psql failed:\n{stdout}{stderr}");
}

/// Asserts that a client check program exited 0 and printed `ok <check>`
/// for every one of `checks`; on failure the message lists the FAIL lines.
pub fn assert_checks_ok(what: &str, out: &Output, checks: &[&str]) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {what} stdout ---\n{stdout}--- {what} stderr ---\n{stderr}");
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    let missing: Vec<&&str> =
        checks.iter().filter(|c| !stdout.lines().any(|l| l.split_whitespace().eq(["ok", c]))).collect();
    assert!(
        out.status.success() && failed.is_empty() && missing.is_empty(),
        "{what} exited with {}; failed checks:\n{}\nchecks without an `ok` line: {missing:?}",
        out.status,
        failed.join("\n")
    );
}

/// Runs `tests/python/<script>` with the venv's Python (`WEIR_PYTHON`, set by
/// `bash scripts/test.sh`) and `args`, with a clean PG* environment, and
/// asserts it exited 0 (the scripts print one ok/FAIL line per check).
pub fn run_python_checks(script: &str, args: &[String], limit: Duration) -> Output {
    let python = match std::env::var("WEIR_PYTHON") {
        Ok(p) if !p.trim().is_empty() => p,
        _ => panic!("WEIR_PYTHON is not set: run the suite with `bash scripts/test.sh`, which builds the Python venv"),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let mut cmd = Command::new(&python);
    cmd.arg(&path).args(args);
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGOPTIONS", "PGSERVICE", "PGPASSWORD"] {
        cmd.env_remove(var);
    }
    cmd.env("PYTHONUNBUFFERED", "1").env("PYTHONDONTWRITEBYTECODE", "1");
    let out = output_within(cmd, limit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {script} stdout ---\n{stdout}--- {script} stderr ---\n{stderr}");
    assert!(out.status.success(), "{script} exited with {}; see the checks above (FAIL lines carry tracebacks)", out.status);
    out
}

/// A throwaway self-signed certificate and key (PEM) in `dir`, made with
/// `openssl` (installed by `bash scripts/test.sh`).
pub fn self_signed_cert(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl not found: run `bash scripts/test.sh`, which installs it");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

/// Runs `statements` with psql (stopping at the first error) and returns
/// its unaligned output; fails the test if psql fails.
pub fn sql(server: &TestServer, statements: &str) -> String {
    let (ok, out, err) = psql(server.port, &["-v", "ON_ERROR_STOP=1", "-At", "-c", statements], &[]);
    assert!(ok, "psql failed on {statements}\nstdout: {out}\nstderr: {err}");
    out
}

/// `statement`'s output, or `None` if psql failed (a server restarting).
pub fn try_sql(server: &TestServer, statement: &str) -> Option<String> {
    let (ok, out, _) = psql(server.port, &["-At", "-c", statement], &[]);
    ok.then_some(out)
}

/// A small deterministic generator (xorshift), seeded from `WEIR_TEST_SEED`
/// or the clock and printed, so a failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Rng {
        let seed = std::env::var("WEIR_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64 | 1)
                .unwrap_or(7)
        });
        eprintln!("WEIR_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}
