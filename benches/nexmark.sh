#!/usr/bin/env bash
# Nexmark benchmark: q0, q1, q2, q5, q7 and q8 over weir's `nexmark` streams,
# each as a continuous query with trigger available_now over N events, timed
# until weir.queries says finished; events/s and events per weir CPU-second
# next to published RisingWave and Flink per-core figures. Results: BENCHMARKS.md.
#
#   bash benches/nexmark.sh                            # 10M events per query, best of 2 after a warm-up
#   bash benches/nexmark.sh --events 2000000 --runs 1  # extra args go to benches/nexmark.py
#   bash benches/nexmark.sh --only q0,q5               # any of q0,q1,q2,q5,q7,q8
#
# Steps: scripts/test.sh --setup-only (the venv with psycopg), a release
# build of weir, weir on an ephemeral port over a temporary data dir, then
# benches/nexmark.py; the server is stopped and the temporary dir removed on
# exit.
#
# Environment:
#   WEIR_CACHE  cache root (default ~/.cache/weir): venv/ and target/ live there
#   WEIR_BIN    use this weir binary instead of building one
#   KEEP_DATA=1 keep the temporary dir (its path is printed)
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! { [ -x "$py" ] && "$py" -c 'import psycopg' >/dev/null 2>&1; }; then
    setup_venv "the venv"
fi

weir_binary

make_tmp nexmark
mkdir -p "$tmp/data"
start_weir

say "rustc $(rustc_version), datafusion (rust) $(version_of datafusion), nexmark $(version_of nexmark)"
"$py" benches/nexmark.py --pg-port "$pg_port" --weir-pid "$server_pid" --server-log "$tmp/server.log" --data-dir "$tmp/data" \
    --versions "rustc $(rustc_version), DataFusion $(version_of datafusion), nexmark crate $(version_of nexmark)" \
    "$@"
