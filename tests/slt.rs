//! Scenario: every `tests/slt/**/*.slt` file, run over the real pgwire
//! endpoint of a fresh `weir serve` (port 0, its own temporary data dir), once
//! in the simple and once in the extended query protocol. Every record runs,
//! even after one fails, and all failures of all files are reported together
//! at the end.
//!
//! * Substitution (after `control substitution on` in a file): `$SCRATCH` is a
//!   directory for the file's own Parquet fixtures (the server runs with
//!   `--allow-path $SCRATCH`; nothing else outside `$DATA_DIR` is allowed);
//!   `$DATA_DIR` is the server's data dir. sqllogictest's own `$__TEST_DIR__` also works, but
//!   changes between the files of a restart case. In expected results, these
//!   directories print as `$SCRATCH` and `$DATA_DIR` (see [`validate`]).
//! * For streaming files: `$KAFKA` is the bootstrap address of a real
//!   broker (tansu, started once, only when some file uses it), `$WEIR` the
//!   weir binary (`system ok` + `$WEIR produce ...` writes records), and
//!   `$RUN` a token unique to each run of a file, for topic names (both
//!   protocols and all files share the broker); `$FREE_PORT` a free
//!   loopback port for a server the file starts itself.
//! * `tests/slt/restart/<case>/*.slt` run in name order over ONE data dir and
//!   ONE `$SCRATCH`, with the server killed and started again between files.
//! * `SLT_FILTER=substring` runs only files whose path under `tests/slt/`
//!   contains it (a restart case runs whole if any of its files match);
//!   `SLT_PROTOCOL=simple|extended` runs one protocol; `SLT_TIMEOUT_SECS`
//!   (default 120) bounds each file.
//! * Errors match by SQLSTATE (`statement error (42P01)`) or by a regex over
//!   `ERROR 42P01: <message>`. Column letters: B I R T D P ? (see engine.rs).

mod common;

use common::kafka::Broker;
#[path = "slt/engine.rs"]
mod engine;
#[path = "slt/pg_text.rs"]
mod pg_text;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::TestServer;
use engine::{Protocol, Weir, WeirColumnType, column_types_match};
use sqllogictest::{Normalizer, Record, Runner, default_validator};

/// The current run's directories and the names they print as in expected
/// results. The validator is a plain `fn`, so it reads them from here; runs
/// are sequential.
static RUN_PATHS: Mutex<Vec<(String, &'static str)>> = Mutex::new(Vec::new());

/// The shared broker, started by the first unit that needs one.
static BROKER: std::sync::OnceLock<Broker> = std::sync::OnceLock::new();

fn needs_kafka(unit: &Unit) -> bool {
    unit.files.iter().any(|f| std::fs::read_to_string(f).is_ok_and(|text| text.contains("$KAFKA")))
}

/// The default comparison, after replacing this run's directories in actual
/// values with `$SCRATCH` / `$DATA_DIR`, so expected results can name paths.
fn validate(normalizer: Normalizer, actual: &[Vec<String>], expected: &[String]) -> bool {
    let paths = RUN_PATHS.lock().map(|p| p.clone()).unwrap_or_default();
    let actual: Vec<Vec<String>> = actual
        .iter()
        .map(|row| {
            row.iter().map(|value| paths.iter().fold(value.clone(), |v, (path, name)| v.replace(path, name))).collect()
        })
        .collect();
    default_validator(normalizer, &actual, expected)
}

/// A loopback port nobody listens on right now (for a file's own servers).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// One thing to run: a single file, or the ordered files of a restart case.
struct Unit {
    name: String,
    files: Vec<PathBuf>,
}

fn slt_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt")
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

fn units(filter: Option<&str>) -> Vec<Unit> {
    let root = slt_root();
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut units: Vec<Unit> = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        let name = match parts.as_slice() {
            ["restart", case, _, ..] => format!("restart/{case}"),
            _ => rel.clone(),
        };
        match units.iter_mut().find(|u| u.name == name) {
            Some(unit) => unit.files.push(file),
            None => units.push(Unit { name, files: vec![file] }),
        }
    }
    units.retain(|u| {
        filter.is_none_or(|f| u.files.iter().any(|p| p.strip_prefix(&root).unwrap_or(p).to_string_lossy().contains(f)))
    });
    units
}

/// How long one file may run before it counts as hung.
fn file_timeout() -> Duration {
    let secs = std::env::var("SLT_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    Duration::from_secs(secs)
}

/// Runs a file's records one by one, to the end, collecting every failure
/// (sqllogictest's own `run_file` stops at the first).
async fn run_records<M>(runner: &mut Runner<Weir, M>, file: &Path) -> Vec<String>
where
    M: sqllogictest::MakeConnection<Conn = Weir>,
{
    let records = match sqllogictest::parse_file::<WeirColumnType>(file) {
        Ok(records) => records,
        Err(err) => return vec![format!("parse error: {err}")],
    };
    let mut failures = Vec::new();
    for record in records {
        if let Record::Halt { .. } = record {
            break;
        }
        if let Err(err) = runner.run_async(record).await {
            failures.push(err.display(false).to_string());
        }
    }
    failures
}

/// Runs a unit in one protocol; returns its failures.
async fn run_unit(unit: &Unit, protocol: Protocol) -> Vec<String> {
    let kafka = if needs_kafka(unit) {
        Some(tokio::task::block_in_place(|| BROKER.get_or_init(Broker::start).bootstrap()))
    } else {
        None
    };
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run_token = format!("{}{}", protocol.name(), RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let tmp = tempfile::tempdir().expect("temp dir");
    // Canonical, as the server canonicalizes the locations it stores.
    let root = std::fs::canonicalize(tmp.path()).expect("canonical temp dir");
    let data_dir = root.join("data");
    let scratch = root.join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let scratch_str = scratch.to_string_lossy().into_owned();
    let data_dir_str = data_dir.to_string_lossy().into_owned();
    if let Ok(mut paths) = RUN_PATHS.lock() {
        *paths = vec![(scratch_str.clone(), "$SCRATCH"), (data_dir_str.clone(), "$DATA_DIR")];
    }
    let restart = unit.name.starts_with("restart/");
    let mut failures = Vec::new();
    for file in &unit.files {
        let label = if restart {
            let step = file.file_name().unwrap_or_default().to_string_lossy();
            format!("{} (step {step}) [{}]", unit.name, protocol.name())
        } else {
            format!("{} [{}]", unit.name, protocol.name())
        };
        // $SCRATCH is outside the data dir: the server must be told it may
        // read and write there, as a user would with their own directories.
        let allow = ["--allow-path", scratch_str.as_str()];
        let started = tokio::task::block_in_place(|| std::panic::catch_unwind(|| TestServer::start_with(&data_dir, &allow)));
        let Ok(server) = started else {
            failures.push(format!("{label}: server did not start"));
            return failures;
        };
        let conn_str = server.conn_str();
        let mut runner = Runner::new(move || {
            let conn_str = conn_str.clone();
            async move { Weir::connect(&conn_str, protocol).await }
        });
        runner.with_column_validator(column_types_match);
        runner.with_validator(validate);
        runner.set_var("SCRATCH".into(), scratch_str.clone());
        runner.set_var("DATA_DIR".into(), data_dir_str.clone());
        runner.set_var("WEIR".into(), env!("CARGO_BIN_EXE_weir").to_string());
        runner.set_var("RUN".into(), run_token.clone());
        runner.set_var("FREE_PORT".into(), free_port().to_string());
        runner.set_var("TANSU".into(), common::kafka::tansu_binary().display().to_string());
        if let Some(kafka) = &kafka {
            runner.set_var("KAFKA".into(), kafka.clone());
        }
        let result = tokio::time::timeout(file_timeout(), run_records(&mut runner, file)).await;
        if result.is_ok() {
            runner.shutdown_async().await;
        }
        // Kill, like a crash: what survives must already be durable.
        tokio::task::block_in_place(|| server.kill());
        match result {
            Ok(errors) => failures.extend(errors.into_iter().map(|e| format!("{label}:\n{e}"))),
            Err(_) => failures.push(format!("{label}: timed out after {:?} (SLT_TIMEOUT_SECS)", file_timeout())),
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictest_files_pass_over_simple_and_extended_protocols() {
    let filter = std::env::var("SLT_FILTER").ok().filter(|f| !f.is_empty());
    let protocols = match std::env::var("SLT_PROTOCOL").as_deref() {
        Ok("simple") => vec![Protocol::Simple],
        Ok("extended") => vec![Protocol::Extended],
        _ => vec![Protocol::Simple, Protocol::Extended],
    };
    let units = units(filter.as_deref());
    assert!(!units.is_empty(), "no .slt files matched SLT_FILTER={filter:?}");

    let mut failures = Vec::new();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for unit in &units {
        for &protocol in &protocols {
            let unit_failures = run_unit(unit, protocol).await;
            if unit_failures.is_empty() {
                eprintln!("ok   {} [{}]", unit.name, protocol.name());
                passed.push(format!("{} [{}]", unit.name, protocol.name()));
            } else {
                eprintln!("FAIL {} [{}]: {} records", unit.name, protocol.name(), unit_failures.len());
                for failure in &unit_failures {
                    eprintln!("FAIL {failure}");
                }
                failed.push(format!("{} [{}]", unit.name, protocol.name()));
                failures.extend(unit_failures);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} slt runs failed ({} failing records)\npassed: {}\nfailed: {}\n\n{}",
        failed.len(),
        failed.len() + passed.len(),
        failures.len(),
        if passed.is_empty() { "none".to_owned() } else { passed.join(", ") },
        failed.join(", "),
        failures.join("\n")
    );
}
