#!/usr/bin/env bash
# Export benchmark: a 10M-row, 4-column SELECT over landed Parquet, fully fetched
# through pgwire text, pgwire binary (psycopg 3), Arrow Flight SQL (ADBC), and
# in-process DataFusion (Python bindings) as the floor. Results: BENCHMARKS.md.
#
#   bash benches/export.sh                  # 10M rows, best of 3 after a warm-up
#   bash benches/export.sh --rows 1000000   # extra args go to benches/export.py
#   bash benches/export.sh --runs 5 --only flight,datafusion
#   bash benches/export.sh --pin            # one core each: weir on CPU 0, the client (and
#                                           # the in-process floor) on CPU 1, as if the client
#                                           # had a machine of its own
#
# Steps: scripts/test.sh --setup-only (the venv), `pip install datafusion` into
# that venv if missing, a release build of weir, a server on ephemeral ports
# over a temporary data dir, benches/export.py, then the server is stopped and
# the temporary dir removed.
#
# Environment:
#   WEIR_CACHE  cache root (default ~/.cache/weir): venv/ and target/ live there
#   KEEP_DATA=1 keep the temporary data dir (its path is printed)
#   WEIR_BIN    use this weir binary instead of building one
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

setup_venv "the venv"

if ! "$py" -c 'import datafusion' >/dev/null 2>&1; then
    say "pip install datafusion (the in-process floor)"
    "$py" -m pip install --quiet --disable-pip-version-check datafusion || die "pip install datafusion failed"
fi
say "datafusion (python) $("$py" -c 'import datafusion; print(datafusion.__version__)')"

export CARGO_TARGET_DIR="$WEIR_CACHE/target"
weir_binary

make_tmp export
mkdir -p "$tmp/data" "$tmp/scratch"
start_weir --flight
say "rustc $(rustc_version), datafusion (rust) $(version_of datafusion), arrow-flight $(version_of arrow-flight)"

pin=()
args=()
for a in "$@"; do
    if [ "$a" = --pin ]; then pin=(taskset -c 1); else args+=("$a"); fi
done
if [ ${#pin[@]} -gt 0 ]; then
    # Every thread weir has now; the threads it starts later inherit it.
    taskset -a -c -p 0 "$server_pid" >/dev/null || die "taskset failed"
    say "pinned: weir on CPU 0, client and floor on CPU 1"
fi
"${pin[@]}" "$py" benches/export.py --pg-port "$pg_port" --flight-port "$flight_port" --scratch "$tmp/scratch" \
    ${pin:+--pinned} "${args[@]}"
