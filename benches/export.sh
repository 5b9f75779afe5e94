#!/usr/bin/env bash
# Export benchmark: a 10M-row, 4-column SELECT over landed Parquet, fully fetched
# through pgwire text, pgwire binary (psycopg 3), Arrow Flight SQL (ADBC), and
# in-process DataFusion (Python bindings) as the floor. Results: BENCHMARKS.md.
#
#   bash benches/export.sh                  # 10M rows, best of 3 after a warm-up
#   bash benches/export.sh --rows 1000000   # extra args go to benches/export.py
#   bash benches/export.sh --runs 5 --only flight,datafusion
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

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export WEIR_CACHE

say "setting up the venv (scripts/test.sh --setup-only)"
bash scripts/test.sh --setup-only
py="$WEIR_CACHE/venv/bin/python"
[ -x "$py" ] || die "no venv python at $py"

if ! "$py" -c 'import datafusion' >/dev/null 2>&1; then
    say "pip install datafusion (the in-process floor)"
    "$py" -m pip install --quiet --disable-pip-version-check datafusion || die "pip install datafusion failed"
fi
say "datafusion (python) $("$py" -c 'import datafusion; print(datafusion.__version__)')"

export CARGO_TARGET_DIR="$WEIR_CACHE/target"
weir="${WEIR_BIN:-}"
if [ -z "$weir" ]; then
    say "cargo build --release --locked"
    cargo build --release --locked
    weir="$CARGO_TARGET_DIR/release/weir"
fi
[ -x "$weir" ] || die "no binary at $weir"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/weir-export-bench.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "${KEEP_DATA:-0}" = 1 ]; then
        say "kept data dir $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

mkdir -p "$tmp/data" "$tmp/scratch"
say "starting weir (data dir $tmp/data)"
NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$weir" serve --listen 127.0.0.1:0 --flight-listen 127.0.0.1:0 \
    --data-dir "$tmp/data" 2>"$tmp/server.log" &
server_pid=$!

# The server logs "weir flight sql listening at ADDR", then "weir listening on ADDR".
pg_port="" flight_port=""
for _ in $(seq 1 300); do
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; die "weir exited at start-up"; }
    if grep -q 'weir listening on' "$tmp/server.log"; then
        pg_port="$(sed -n 's/.*weir listening on [0-9.]*:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -n 1)"
        flight_port="$(sed -n 's/.*weir flight sql listening at [0-9.]*:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -n 1)"
        break
    fi
    sleep 0.1
done
[ -n "$pg_port" ] && [ -n "$flight_port" ] || { cat "$tmp/server.log" >&2; die "could not read the listen ports"; }
say "weir: pgwire port $pg_port, flight sql port $flight_port, pid $server_pid"
say "rustc $(rustc --version | cut -d' ' -f2), datafusion (rust) $(sed -n '/^name = "datafusion"$/{n;s/version = "\(.*\)"/\1/p;q}' Cargo.lock), arrow-flight $(sed -n '/^name = "arrow-flight"$/{n;s/version = "\(.*\)"/\1/p;q}' Cargo.lock)"

"$py" benches/export.py --pg-port "$pg_port" --flight-port "$flight_port" --scratch "$tmp/scratch" "$@"
