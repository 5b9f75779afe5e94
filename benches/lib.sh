# Shared by the benchmark drivers (benches/export.sh, ingest.sh, nexmark.sh,
# statement.sh, tpch.sh),
# which source it after `set -euo pipefail`; it is not run on its own. It cds
# to the repository root and exports WEIR_CACHE (default ~/.cache/weir).

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
export WEIR_CACHE

# The venv's python; scripts/test.sh --setup-only makes it.
py="$WEIR_CACHE/venv/bin/python"

# Runs scripts/test.sh --setup-only; $1 says what that sets up for this benchmark.
setup_venv() {
    say "setting up $1 (scripts/test.sh --setup-only)"
    bash scripts/test.sh --setup-only
    [ -x "$py" ] || die "no venv python at $py"
}

# Sets weir to $WEIR_BIN, or to a release build made here.
weir_binary() {
    weir="${WEIR_BIN:-}"
    if [ -z "$weir" ]; then
        say "cargo build --release --locked"
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
        cargo build --release --locked
        weir="$CARGO_TARGET_DIR/release/weir"
    fi
    [ -x "$weir" ] || die "no weir binary at $weir"
    say "weir binary: $weir"
}

# The temporary dir: make_tmp NAME sets tmp to a new
# ${TMPDIR:-/tmp}/weir-NAME-bench.XXXXXX. On exit the processes in stop_pids
# are stopped, in order, and the dir is removed (kept with KEEP_DATA=1).
stop_pids=()
stop() {
    if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
    fi
}
cleanup() {
    local pid
    for pid in ${stop_pids[@]+"${stop_pids[@]}"}; do
        stop "$pid"
    done
    if [ "${KEEP_DATA:-0}" = 1 ]; then
        say "kept $tmp"
    else
        rm -rf "$tmp"
    fi
}
make_tmp() {
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/weir-$1-bench.XXXXXX")"
    trap cleanup EXIT
}

# Starts `weir serve` over $tmp/data on ephemeral ports, its log in
# $tmp/server.log, and waits for it to listen; sets server_pid and pg_port.
# With --flight it serves Flight SQL too and sets flight_port; without, it
# runs with --no-flight. `--allow-path DIR` (repeatable) allows DIR as well
# as $tmp, for input kept under $WEIR_CACHE between runs.
start_weir() {
    local flight=(--no-flight) allow=(--allow-path "$tmp") with_flight=0 ports
    while [ $# -gt 0 ]; do
        case "$1" in
            --flight) flight=(--flight-listen 127.0.0.1:0); with_flight=1 ;;
            --allow-path) [ $# -ge 2 ] || die "start_weir: --allow-path needs a directory"
                allow+=(--allow-path "$2"); shift ;;
            *) die "start_weir: unknown argument $1" ;;
        esac
        shift
    done
    say "starting weir (data dir $tmp/data)"
    # The benchmark's own temporary dir (its generated input files sit
    # beside the data dir) is allowed, and whatever the caller named;
    # nothing else beyond the data dir.
    NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$weir" serve --listen 127.0.0.1:0 "${flight[@]}" \
        --data-dir "$tmp/data" "${allow[@]}" 2>"$tmp/server.log" &
    server_pid=$!
    stop_pids+=("$server_pid")
    # The server logs "weir flight sql listening at ADDR" (when it serves
    # Flight SQL), then "weir listening on ADDR".
    pg_port=""
    for _ in $(seq 1 300); do
        kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; die "weir exited at start-up"; }
        pg_port="$(sed -n 's/.*weir listening on [0-9.]*:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -n 1)"
        [ -n "$pg_port" ] && break
        sleep 0.1
    done
    [ -n "$pg_port" ] || { cat "$tmp/server.log" >&2; die "could not read the pgwire port"; }
    ports="pgwire port $pg_port"
    if [ "$with_flight" = 1 ]; then
        flight_port="$(sed -n 's/.*weir flight sql listening at [0-9.]*:\([0-9]*\).*/\1/p' "$tmp/server.log" | head -n 1)"
        [ -n "$flight_port" ] || { cat "$tmp/server.log" >&2; die "could not read the flight sql port"; }
        ports+=", flight sql port $flight_port"
    fi
    say "weir: $ports, pid $server_pid"
}

# The version of a crate in Cargo.lock, and rustc's.
version_of() { sed -n "/^name = \"$1\"\$/{n;s/version = \"\(.*\)\"/\1/p;q}" Cargo.lock; }
rustc_version() { rustc --version | cut -d' ' -f2; }
