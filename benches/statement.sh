#!/usr/bin/env bash
# Per-statement overhead: `SELECT 1` (and a one-row lookup in a small table)
# in a loop over pgwire (psycopg 3, extended protocol) and over Arrow Flight
# SQL (ADBC), the time of one statement, round trip included. The Flight
# path plans a query once, at GetFlightInfo, and its DoGet runs that plan.
# Results: BENCHMARKS.md.
#
#   bash benches/statement.sh                  # 2,000 statements each, best of 3
#   bash benches/statement.sh --count 500      # extra args go to benches/statement.py
#
# Environment: WEIR_CACHE, WEIR_BIN, KEEP_DATA as in benches/export.sh.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setup_venv "the venv"
export CARGO_TARGET_DIR="$WEIR_CACHE/target"
weir_binary
make_tmp statement
mkdir -p "$tmp/data"
start_weir --flight
say "rustc $(rustc_version), datafusion $(version_of datafusion), arrow-flight $(version_of arrow-flight), pgwire $(version_of pgwire)"
"$py" benches/statement.py --pg-port "$pg_port" --flight-port "$flight_port" "$@"
