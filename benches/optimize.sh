#!/usr/bin/env bash
# OPTIMIZE of a Delta table of many small files: a continuous query lands
# N rows into a Delta table as FILES Parquet files (target_file_rows), then
# an ad-hoc scan is timed (rows/s), OPTIMIZE is timed, and the same scan is
# timed again over the compacted files. Results: BENCHMARKS.md.
#
#   bash benches/optimize.sh                           # 1,000 files of 1,000 rows, best of 3
#   bash benches/optimize.sh --files 200 --runs 1      # extra args go to benches/optimize.py
#
# Environment: WEIR_CACHE, WEIR_BIN, KEEP_DATA as in benches/export.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! { [ -x "$py" ] && "$py" -c 'import psycopg, deltalake' >/dev/null 2>&1; }; then
    setup_venv "the venv"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
weir_binary
make_tmp optimize
mkdir -p "$tmp/data" "$tmp/scratch"
start_weir
say "rustc $(rustc_version), datafusion $(version_of datafusion), deltalake $(version_of deltalake)"
"$py" benches/optimize.py --pg-port "$pg_port" --scratch "$tmp/scratch" "$@"
