#!/usr/bin/env bash
# Ingest benchmark: N seed-style JSON game events (~140 bytes each) -> keep the
# sword purchases -> Parquet, through a weir continuous query with trigger
# available_now (from a file stream and from Kafka), against DuckDB and Spark
# Structured Streaming on the same files. Results: BENCHMARKS.md.
#
#   bash benches/ingest.sh                            # 2M events, best of 3 after a warm-up
#   bash benches/ingest.sh --events 200000 --runs 1   # extra args go to benches/ingest.py
#   bash benches/ingest.sh --only weir-file,duckdb    # any of weir-file,weir-delta,weir-s3,weir-s3-delta,weir-kafka,duckdb,spark
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

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Which engines run decides what to install and start; ingest.py checks the list.
only="weir-file,weir-delta,weir-s3,weir-s3-delta,weir-kafka,duckdb,spark"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --only) only="${args[i + 1]:-}" ;;
        --only=*) only="${args[i]#--only=}" ;;
    esac
done
wants() { [[ ",$only," == *",$1,"* ]]; }

setup_venv "the venv, JDK and tansu"

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

weir_binary

make_tmp ingest
bench_args=(--scratch "$tmp/scratch")
mkdir -p "$tmp/data" "$tmp/scratch"

if wants weir-s3 || wants weir-s3-delta; then
    # moto's S3 server (from the venv) on a free port, bucket `bench`; weir
    # gets its endpoint and credentials through the environment.
    moto_port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    say "starting moto_server on 127.0.0.1:$moto_port"
    "$(dirname "$py")/moto_server" -H 127.0.0.1 -p "$moto_port" >"$tmp/moto.log" 2>&1 &
    stop_pids+=("$!")
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
        AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_ALLOW_HTTP=true
    "$py" - <<'PY' || die "moto_server did not start (log: $tmp/moto.log)"
import os, time, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for _ in range(300):
    try:
        s3.create_bucket(Bucket="bench")
        break
    except Exception:
        time.sleep(0.1)
else:
    raise SystemExit("no answer")
PY
fi

if wants weir-file || wants weir-delta || wants weir-s3 || wants weir-s3-delta || wants weir-kafka; then
    start_weir
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
    stop_pids+=("$tansu_pid")
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

say "rustc $(rustc_version), datafusion (rust) $(version_of datafusion), rdkafka $(version_of rdkafka)"
"$py" benches/ingest.py "${bench_args[@]}" "$@"
