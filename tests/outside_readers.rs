//! What tools outside weir see in a rewritten view's directory:
//! `tests/python/outside_readers.py` feeds a complete-mode view one epoch at
//! a time and reads its directory with DuckDB and pyarrow after each commit;
//! each must find every group once (an older version left beside the
//! current one would double them). This test runs it and expects exit 0.
//!
//! Needs `WEIR_PYTHON` (DuckDB, pyarrow, psycopg), which `bash scripts/test.sh`
//! builds and exports.

mod common;

use std::time::Duration;

use common::TestServer;

const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn duckdb_and_pyarrow_read_one_version_of_a_rewritten_view() {
    let tmp = tempfile::tempdir().expect("create temp dir");
    let data = tmp.path().join("data");
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("create scratch dir");
    let scratch_arg = scratch.display().to_string();
    let server = TestServer::start_with(&data, &["--allow-path", &scratch_arg]);
    let view_dir = data.join("warehouse").join("totals");
    let args = [server.port.to_string(), scratch.display().to_string(), view_dir.display().to_string()];
    common::run_python_checks("outside_readers.py", &args, SCRIPT_LIMIT);
    server.assert_no_panic();
}
