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

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export WEIR_CACHE

py="$WEIR_CACHE/venv/bin/python"
if ! { [ -x "$py" ] && "$py" -c 'import psycopg' >/dev/null 2>&1; }; then
    say "setting up the venv (scripts/test.sh --setup-only)"
    bash scripts/test.sh --setup-only
fi
[ -x "$py" ] || die "no venv python at $py"

weir="${WEIR_BIN:-}"
if [ -z "$weir" ]; then
    say "cargo build --release --locked"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
    cargo build --release --locked
    weir="$CARGO_TARGET_DIR/release/weir"
fi
[ -x "$weir" ] || die "no weir binary at $weir"
say "weir binary: $weir"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/weir-nexmark-bench.XXXXXX")"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "${KEEP_DATA:-0}" = 1 ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

mkdir -p "$tmp/data"
say "starting weir (data dir $tmp/data)"
NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$weir" serve --listen 127.0.0.1:0 --no-flight \
    --data-dir "$tmp/data" 2>"$tmp/server.log" &
server_pid=$!
pg_port=""
for _ in $(seq 1 300); do
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; die "weir exited at start-up"; }
    pg_port="$(sed -n 's/.*weir listening on [0-9.]*:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -n 1)"
    [ -n "$pg_port" ] && break
    sleep 0.1
done
[ -n "$pg_port" ] || { cat "$tmp/server.log" >&2; die "could not read the pgwire port"; }
say "weir: pgwire port $pg_port, pid $server_pid"

version_of() { sed -n "/^name = \"$1\"\$/{n;s/version = \"\(.*\)\"/\1/p;q}" Cargo.lock; }
say "rustc $(rustc --version | cut -d' ' -f2), datafusion (rust) $(version_of datafusion), nexmark $(version_of nexmark)"
"$py" benches/nexmark.py --pg-port "$pg_port" --weir-pid "$server_pid" --server-log "$tmp/server.log" --data-dir "$tmp/data" \
    --versions "rustc $(rustc --version | cut -d' ' -f2), DataFusion $(version_of datafusion), nexmark crate $(version_of nexmark)" \
    "$@"
