#!/usr/bin/env bash
# TPC-H benchmark: the 22 queries (benches/tpch/q01.sql .. q22.sql, the
# specification's texts with its validation parameters) over the same
# Parquet files through weir over pgwire (psycopg 3) and over Arrow Flight
# SQL (ADBC), and through in-process DataFusion (Python bindings) and DuckDB
# as references. Each query gets a warm-up, then the best of N runs, in
# seconds, result fully fetched; every engine's result is checked against
# the others (row count and values). A Markdown table (for BENCHMARKS.md)
# goes to stdout; progress, failures and mismatches to stderr as they happen,
# and failures and mismatches again under the table (the exit status is 1).
#
#   bash benches/tpch.sh                          # scale factor 1, best of 3
#   bash benches/tpch.sh --scale 0.1 --runs 1     # extra args go to benches/tpch.py
#   bash benches/tpch.sh --only q1,q17 --engines weir-pg,datafusion
#
# Steps: the venv (scripts/test.sh --setup-only, only if psycopg is missing),
# `pip install tpchgen-cli datafusion` into that venv if missing, the data
# (tpchgen-cli, Parquet, one directory per table) generated once into
# $WEIR_CACHE/tpch-sf<N> and reused after, a release build of weir, weir on
# ephemeral ports over a temporary data dir (allowed to read the data), then
# benches/tpch.py; the server is stopped and the temporary dir removed on exit.
#
# Environment:
#   WEIR_CACHE  cache root (default ~/.cache/weir): venv/, target/ and tpch-sf<N>/ live there
#   WEIR_BIN    use this weir binary instead of building one
#   KEEP_DATA=1 keep the temporary dir (its path is printed)
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Every argument goes to benches/tpch.py; --scale is the generator's too.
scale=1
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --scale) [ $((i + 1)) -lt ${#args[@]} ] || die "--scale needs a value"; scale="${args[i + 1]}" ;;
        --scale=*) scale="${args[i]#--scale=}" ;;
    esac
done
[[ "$scale" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--scale must be a number, not '$scale'"

if ! { [ -x "$py" ] && "$py" -c 'import psycopg' >/dev/null 2>&1; }; then
    setup_venv "the venv"
fi
# Benchmark-only packages: the data generator and the in-process DataFusion.
for pkg in tpchgen-cli datafusion; do
    if ! "$py" -m pip show --quiet "$pkg" >/dev/null 2>&1; then
        say "pip install $pkg"
        "$py" -m pip install --quiet --disable-pip-version-check "$pkg" || die "pip install $pkg failed"
    fi
done
tpchgen="$(dirname "$py")/tpchgen-cli"

data="$WEIR_CACHE/tpch-sf$scale"
if [ ! -f "$data/.complete" ]; then
    # Generated beside the final place and renamed, so an interrupted run
    # leaves nothing that looks finished.
    say "generating TPC-H scale factor $scale into $data ($("$tpchgen" --version))"
    rm -rf "$data.partial"
    start=$SECONDS
    "$tpchgen" parquet --scale-factor "$scale" --parts 1 \
        --output-dir "$data.partial" --quiet || die "tpchgen-cli failed"
    touch "$data.partial/.complete"
    rm -rf "$data"
    mv "$data.partial" "$data"
    say "generated in $((SECONDS - start)) s: $(du -sh "$data" | cut -f1)"
else
    say "TPC-H scale factor $scale: reusing $data ($(du -sh "$data" | cut -f1))"
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
weir_binary

make_tmp tpch
mkdir -p "$tmp/data"
start_weir --flight --allow-path "$data"

"$py" benches/tpch.py --data "$data" --pg-port "$pg_port" --flight-port "$flight_port" \
    --server-log "$tmp/server.log" \
    --versions "rustc $(rustc_version), datafusion (rust, weir's) $(version_of datafusion), arrow-flight $(version_of arrow-flight), pgwire $(version_of pgwire)" \
    "$@"
