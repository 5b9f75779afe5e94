#!/usr/bin/env bash
# Ingest benchmark: N seed-style JSON game events (~140 bytes each) -> keep the
# sword purchases -> Parquet, through a weir continuous query with trigger
# available_now (from a file stream and from Kafka), against DuckDB and Spark
# Structured Streaming on the same files. Results: BENCHMARKS.md.
#
#   bash benches/ingest.sh                            # 2M events, best of 3 after a warm-up
#   bash benches/ingest.sh --events 200000 --runs 1   # extra args go to benches/ingest.py
#   bash benches/ingest.sh --only weir-file,duckdb    # any of weir-file,weir-kafka,duckdb,spark
#   bash benches/ingest.sh --kafka-events 500000      # events through Kafka (default 200000)
#
# Steps: scripts/test.sh --setup-only (the venv, a JDK, the tansu broker),
# `pip install duckdb pyspark` into that venv if missing, a release build of
# weir, weir on an ephemeral port over a temporary data dir, tansu (in-memory
# storage) on a free port when weir-kafka runs, then benches/ingest.py; the
# processes are stopped and the temporary dir removed on exit.
#
# Environment:
#   WEIR_CACHE  cache root (default ~/.cache/weir): venv/, tansu/ and target/ live there
#   WEIR_BIN    use this weir binary instead of building one (e.g. a debug build)
#   WEIR_TANSU  the tansu binary (default $WEIR_CACHE/tansu/bin/tansu)
#   KEEP_DATA=1 keep the temporary dir (its path is printed)
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export WEIR_CACHE

# Which engines run decides what to install and start; ingest.py checks the list.
only="weir-file,weir-kafka,duckdb,spark"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --only) only="${args[i + 1]:-}" ;;
        --only=*) only="${args[i]#--only=}" ;;
    esac
done
wants() { [[ ",$only," == *",$1,"* ]]; }

say "setting up the venv, JDK and tansu (scripts/test.sh --setup-only)"
bash scripts/test.sh --setup-only
py="$WEIR_CACHE/venv/bin/python"
[ -x "$py" ] || die "no venv python at $py"

pip_install() {
    say "pip install $1"
    "$py" -m pip install --quiet --disable-pip-version-check "$1" || die "pip install $1 failed"
}
if wants duckdb && ! "$py" -c 'import duckdb' >/dev/null 2>&1; then pip_install duckdb; fi
if wants spark; then
    command -v java >/dev/null 2>&1 || die "Spark needs Java and there is none on PATH (scripts/test.sh installs default-jdk-headless)"
    say "java: $(java -version 2>&1 | head -n 1)"
    if ! "$py" -c 'import pyspark' >/dev/null 2>&1; then pip_install pyspark; fi
fi

weir="${WEIR_BIN:-}"
if [ -z "$weir" ]; then
    say "cargo build --release --locked"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
    cargo build --release --locked
    weir="$CARGO_TARGET_DIR/release/weir"
fi
[ -x "$weir" ] || die "no weir binary at $weir"
say "weir binary: $weir"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/weir-ingest-bench.XXXXXX")"
server_pid=""
tansu_pid=""
stop() {
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
cleanup() {
    stop "$server_pid"
    stop "$tansu_pid"
    if [ "${KEEP_DATA:-0}" = 1 ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

bench_args=(--scratch "$tmp/scratch")
mkdir -p "$tmp/data" "$tmp/scratch"

if wants weir-file || wants weir-kafka; then
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
    bench_args+=(--pg-port "$pg_port" --weir-pid "$server_pid" --server-log "$tmp/server.log" --weir-bin "$weir")
fi

if wants weir-kafka; then
    tansu="${WEIR_TANSU:-$WEIR_CACHE/tansu/bin/tansu}"
    [ -x "$tansu" ] || die "no tansu binary at $tansu"
    kafka_port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    url="tcp://127.0.0.1:$kafka_port"
    mkdir -p "$tmp/tansu"
    say "starting tansu on $url (in-memory storage)"
    # tansu reads a .env from its working directory and these variables; keep
    # the developer's out.
    (cd "$tmp/tansu" && exec env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE \
        -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT RUST_LOG=warn NO_COLOR=1 \
        "$tansu" broker --listener-url "$url" --advertised-listener-url "$url" --storage-engine memory://tansu/ \
        >"$tmp/tansu.log" 2>&1 </dev/null) &
    tansu_pid=$!
    up=0
    for _ in $(seq 1 300); do
        kill -0 "$tansu_pid" 2>/dev/null || { cat "$tmp/tansu.log" >&2; die "tansu exited at start-up"; }
        if (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    [ "$up" = 1 ] || { cat "$tmp/tansu.log" >&2; die "tansu did not listen on $url"; }
    say "tansu: $("$tansu" --version), pid $tansu_pid"
    bench_args+=(--kafka "127.0.0.1:$kafka_port" --tansu-bin "$tansu" --tansu-pid "$tansu_pid")
fi

say "rustc $(rustc --version | cut -d' ' -f2), datafusion (rust) $(sed -n '/^name = "datafusion"$/{n;s/version = "\(.*\)"/\1/p;q}' Cargo.lock), rdkafka $(sed -n '/^name = "rdkafka"$/{n;s/version = "\(.*\)"/\1/p;q}' Cargo.lock)"
"$py" benches/ingest.py "${bench_args[@]}" "$@"
