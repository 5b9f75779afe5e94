#!/usr/bin/env bash
# The one test command: sets up what the tests need on a fresh Debian machine
# (psql, openssl, a Python venv with psycopg 3 + SQLAlchemy 2, the tansu Kafka
# broker, rustfmt and clippy, ...), checks the code's form (cargo fmt --check,
# cargo clippy --all-targets -D warnings), then runs every Rust test once.
# Idempotent: when everything is already there it goes straight to the checks.
# A failed check does not stop the tests (one run shows everything); the
# script still exits non-zero at the end, naming the check that failed.
#
#   bash scripts/test.sh                 # set up, lint, then cargo test --locked --no-fail-fast
#   bash scripts/test.sh --setup-only    # set up and stop (CI debugging)
#   bash scripts/test.sh --lint-only     # set up, run fmt and clippy, stop
#   bash scripts/test.sh --test psql     # extra args go to cargo test
#
# Environment:
#   WEIR_CACHE        cache root (default ~/.cache/weir): holds venv/, node/, tansu/
#                     and target/
#   CARGO_TARGET_DIR  defaults to $WEIR_CACHE/target, so CI on the same machine
#                     reuses the developer's build
#   WEIR_PYTHON       exported for the tests: the venv's python
#   WEIR_TANSU        exported for the tests: the tansu broker binary
set -euo pipefail

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

setup_only=0
lint_only=0
cargo_args=()
for arg in "$@"; do
    case "$arg" in
        --setup-only) setup_only=1 ;;
        --lint-only) lint_only=1 ;;
        *) cargo_args+=("$arg") ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

WEIR_CACHE="${WEIR_CACHE:-$HOME/.cache/weir}"
mkdir -p "$WEIR_CACHE"

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 \
        || die "apt-get not found; install these packages by hand: $*"
    if [ "$apt_updated" -eq 0 ]; then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- tansu, part 1 (Kafka-protocol broker for the Kafka source/sink tests) ----
# Built from crates.io with in-memory storage (dynostore); no services, no JVM.
# The build takes a while on 2 cores, hence the cache; on a fresh machine it
# starts first, in the background, in cargo's own temporary target dir (never
# in weir's), and the packages and weir's build below run beside it.
command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (rustup) first"
tansu_version="0.6"
tansu="$WEIR_CACHE/tansu/bin/tansu"
tansu_log="$WEIR_CACHE/tansu-install.log"
tansu_pid=""
# True when the cached binary is tansu $tansu_version.x built with dynostore.
tansu_ready() {
    [ -x "$tansu" ] || return 1
    local version help
    version="$("$tansu" --version 2>/dev/null)" || return 1
    help="$("$tansu" --help 2>/dev/null)" || return 1
    [[ "$version" == "tansu $tansu_version."* && "$help" == *"Storage engines:"*dynostore* ]]
}
if ! tansu_ready; then
    say "cargo install tansu ~$tansu_version (dynostore) into $WEIR_CACHE/tansu, in the background (log: $tansu_log)"
    env -u CARGO_TARGET_DIR cargo install tansu --version "~$tansu_version" --features dynostore --force \
        --locked --root "$WEIR_CACHE/tansu" >"$tansu_log" 2>&1 &
    tansu_pid=$!
    # Do not leave it running if set-up fails on the way.
    trap '[ -n "$tansu_pid" ] && kill "$tansu_pid" 2>/dev/null || true' EXIT
fi

# --- psql ---------------------------------------------------------------------
if ! command -v psql >/dev/null 2>&1; then
    say "psql not found; installing postgresql-client"
    apt_install postgresql-client
    command -v psql >/dev/null 2>&1 || die "postgresql-client installed but psql is still not on PATH"
fi
say "psql: $(psql --version)"

# --- openssl (the TLS test makes a throwaway certificate) --------------------
if ! command -v openssl >/dev/null 2>&1; then
    say "openssl not found; installing it"
    apt_install openssl
fi

# --- Python venv with psycopg 3 and SQLAlchemy 2 -------------------------------
venv="$WEIR_CACHE/venv"
venv_python="$venv/bin/python"
# Minimum versions known to work together: psycopg 3.1 is SQLAlchemy 2's
# supported psycopg 3 line.
py_requirements=("psycopg[binary]>=3.1,<4" "SQLAlchemy>=2.0,<3" "greenlet>=3" "pandas>=2,<4" "polars>=1,<2"
                 "pyarrow>=14" "adbc-driver-flightsql>=1,<2" "adbc-driver-manager>=1,<2" "deltalake>=1,<2"
                 "moto[server]>=5,<6" "duckdb>=1")

pick_python() {
    for candidate in python3.11 python3 python; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# True when the venv imports every client library the tests use.
venv_ready() {
    [ -x "$venv_python" ] && "$venv_python" - <<'PY' >/dev/null 2>&1
import psycopg, sqlalchemy, sqlalchemy.ext.asyncio, greenlet, pandas, polars, pyarrow, adbc_driver_flightsql.dbapi, deltalake, moto.server, boto3, duckdb
assert int(psycopg.__version__.split(".")[0]) == 3
assert int(sqlalchemy.__version__.split(".")[0]) == 2
import psycopg.pq
assert psycopg.pq.__impl__ in ("binary", "c", "python")
PY
}

if ! venv_ready; then
    if [ ! -x "$venv_python" ] || ! "$venv_python" -m pip --version >/dev/null 2>&1; then
        base_python="$(pick_python)" || die "no python3 found; install python3 (>= 3.8) first"
        say "creating venv at $venv with $($base_python --version 2>&1)"
        rm -rf "$venv"
        if ! "$base_python" -m venv "$venv" 2>/dev/null; then
            # Debian's system python ships venv/ensurepip separately.
            rm -rf "$venv"
            py_minor="$("$base_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
            apt_install python3-venv "python${py_minor}-venv" || apt_install python3-venv
            "$base_python" -m venv "$venv" || die "could not create a venv with $base_python"
        fi
    fi
    say "pip install ${py_requirements[*]}"
    "$venv_python" -m pip install --quiet --disable-pip-version-check "${py_requirements[@]}" \
        || die "pip install failed in $venv"
    venv_ready || die "venv at $venv still lacks psycopg 3 / SQLAlchemy 2 after pip install"
fi
export WEIR_PYTHON="$venv_python"
say "python: $("$WEIR_PYTHON" -c 'import sys, psycopg, sqlalchemy; print(sys.version.split()[0], "psycopg", psycopg.__version__, "SQLAlchemy", sqlalchemy.__version__)')"

# --- JVM and Node clients -------------------------------------------------------
# pgjdbc (tests/jdbc.rs) runs tests/java/WeirJdbcCheck.java as a single-file
# program, which needs a JDK (the source launcher compiles), not just a JRE.
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
    say "no JDK found; installing default-jdk-headless"
    apt_install default-jdk-headless
    command -v javac >/dev/null 2>&1 || die "default-jdk-headless installed but javac is still not on PATH"
fi
pgjdbc_jar=/usr/share/java/postgresql.jar
if [ ! -f "$pgjdbc_jar" ]; then
    say "pgjdbc not found; installing libpostgresql-jdbc-java"
    apt_install libpostgresql-jdbc-java
    [ -f "$pgjdbc_jar" ] || die "libpostgresql-jdbc-java installed but $pgjdbc_jar is missing"
fi
say "java: $(java -version 2>&1 | head -n 1), pgjdbc: $(dpkg-query -W -f '${Version}' libpostgresql-jdbc-java 2>/dev/null || echo "$pgjdbc_jar")"

# node-postgres (tests/node_pg.rs): the versions pinned in tests/node/ are
# installed under the cache, never inside the repo. A copy of the lockfile is
# written beside node_modules only after a successful install, so a repeat run
# whose lockfile is unchanged skips npm.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node/npm not found; installing nodejs and npm"
    apt_install nodejs npm
fi
node_dir="$WEIR_CACHE/node"
if ! cmp -s tests/node/package-lock.json "$node_dir/installed-package-lock.json" \
    || [ ! -f "$node_dir/node_modules/pg/package.json" ]; then
    say "npm ci (tests/node) into $node_dir"
    rm -f "$node_dir/installed-package-lock.json"
    mkdir -p "$node_dir"
    cp tests/node/package.json tests/node/package-lock.json "$node_dir/"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error) \
        || die "npm ci failed in $node_dir"
    cp tests/node/package-lock.json "$node_dir/installed-package-lock.json"
fi
export WEIR_NODE_MODULES="$node_dir/node_modules"
say "node: $(node --version), pg $(NODE_PATH="$WEIR_NODE_MODULES" node -p 'require("pg/package.json").version')"

# --- cargo, rustfmt and clippy ------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo not found; install the Rust toolchain (rustup) first"

# The toolchain comes from rustup, which leaves rustfmt and clippy out of a
# minimal profile: add them to the active toolchain when they are missing.
for component in rustfmt clippy; do
    probe=(cargo fmt --version)
    [ "$component" = clippy ] && probe=(cargo clippy --version)
    if ! "${probe[@]}" >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 || die "cargo $component not found and no rustup to add it"
        say "rustup component add $component"
        rustup component add "$component" || die "rustup component add $component failed"
    fi
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WEIR_CACHE/target}"
say "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

# Form before tests, in the same target dir. rustfmt builds nothing. Clippy's
# check build cannot reuse the test build's compiled code, but its checked
# dependencies stay in the target dir, so after the first run only weir is
# checked again; --all-targets type-checks the tests and benches once, and
# the test build below then only adds code generation.
failed_checks=()
run_lints() {
    say "cargo fmt --check"
    if ! cargo fmt --check >/dev/null; then
        say "cargo fmt --check found unformatted files (run 'cargo fmt --check' to see the diff, 'cargo fmt' to fix)"
        failed_checks+=("cargo fmt --check")
    fi
    say "cargo clippy --all-targets --locked -- -D warnings"
    if ! cargo clippy --all-targets --locked -- -D warnings; then
        failed_checks+=("cargo clippy")
    fi
}
# Exits non-zero, naming each failed check, once everything has run.
report_checks() {
    if [ "${#failed_checks[@]}" -gt 0 ]; then
        die "failed: $(printf '%s; ' "${failed_checks[@]}")"
    fi
}

# --- tansu, part 2: wait for the background build ----------------------------
# Meanwhile the lints and weir's own test build run, so both builds share the two cores
# (each has long single-threaded stretches: big crates, linking).
if [ -n "$tansu_pid" ]; then
    if [ "$setup_only" -eq 0 ]; then
        run_lints
        linted=1
        if [ "$lint_only" -eq 0 ]; then
            say "cargo test --locked --no-run (while tansu builds)"
            cargo test --locked --no-run "${cargo_args[@]}" || { kill "$tansu_pid" 2>/dev/null || true; die "building weir's tests failed"; }
        fi
    fi
    say "waiting for the tansu build (log: $tansu_log)"
    if ! wait "$tansu_pid"; then
        tail -n 40 "$tansu_log" >&2 || true
        die "cargo install tansu failed (log: $tansu_log)"
    fi
    tansu_pid=""
    tansu_ready || die "tansu installed but $tansu is not a tansu $tansu_version binary with dynostore"
fi
export WEIR_TANSU="$tansu"
say "tansu: $("$WEIR_TANSU" --version)"

if [ "$setup_only" -eq 1 ]; then
    say "set-up done (--setup-only): WEIR_PYTHON=$WEIR_PYTHON WEIR_TANSU=$WEIR_TANSU"
    exit 0
fi

if [ "${linted:-0}" -eq 0 ]; then
    run_lints
fi
if [ "$lint_only" -eq 1 ]; then
    report_checks
    say "lints passed (--lint-only)"
    exit 0
fi

# --no-fail-fast: one failing test binary must not hide the results of the rest.
say "cargo test --locked --no-fail-fast ${cargo_args[*]:-}"
test_status=0
cargo test --locked --no-fail-fast "${cargo_args[@]}" || test_status=$?
report_checks
exit "$test_status"
