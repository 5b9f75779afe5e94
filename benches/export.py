"""Export benchmark: one 10M-row, 4-column SELECT over landed Parquet, fully
fetched through every way out of weir, against in-process DataFusion as the floor.

Usage (normally run by benches/export.sh, which starts the server):

    python benches/export.py --pg-port P --flight-port F --scratch DIR [--rows N] [--runs R]

DIR must be an absolute directory the server can write; the Parquet file lands
in DIR/t/part-0.parquet. Each path gets one warm-up and R timed runs (best is
reported); every run counts its rows and fails unless it saw exactly N.
"""
import argparse
import os
import platform
import sys
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import datafusion
import psycopg
import pyarrow as pa

from benchlib import machine_facts, pg_connect, print_machine

QUERY = "SELECT id, k, x, s FROM t"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--flight-port", type=int, required=True)
    p.add_argument("--scratch", required=True)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="", help="comma list of paths to run (text,binary,flight,datafusion)")
    p.add_argument("--pinned", action="store_true", help="(set by export.sh --pin) weir on CPU 0, this process on CPU 1")
    return p.parse_args()


def create_data(args):
    table_dir = os.path.join(args.scratch, "t")
    with pg_connect(args.pg_port) as conn:
        t0 = time.perf_counter()
        conn.execute(
            f"COPY (SELECT v AS id, v * 2 AS k, CAST(v AS DOUBLE) * 0.5 AS x, "
            f"concat('n', CAST(v % 1000 AS TEXT)) AS s FROM range(0, {args.rows}) AS r(v)) "
            f"TO '{table_dir}/part-0.parquet' STORED AS PARQUET"
        )
        conn.execute(f"CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{table_dir}'")
        n = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        assert n == args.rows, n
        server_version = conn.execute("SELECT version()").fetchone()[0]
    size = sum(os.path.getsize(os.path.join(table_dir, f)) for f in os.listdir(table_dir))
    print(f"data: {n} rows, {size / 1e6:.1f} MB Parquet in {table_dir} (written in {time.perf_counter() - t0:.1f}s)")
    return table_dir, server_version


# Each runner returns (rows, seconds_total, seconds_until_first_phase_done or None).
# For psycopg's client-side cursor, execute() returns once the whole result is in
# libpq's memory (server + wire); the rest is Python-side row conversion.

def run_psycopg(port, binary):
    with pg_connect(port) as conn:
        cur = conn.cursor(binary=binary)
        t0 = time.perf_counter()
        cur.execute(QUERY)
        t1 = time.perf_counter()
        n = 0
        while True:
            chunk = cur.fetchmany(100_000)
            if not chunk:
                break
            n += len(chunk)
        t2 = time.perf_counter()
        cur.close()
    return n, t2 - t0, t1 - t0


def run_flight(port):
    with flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        cur.execute(QUERY)
        t = cur.fetch_arrow_table()
        t2 = time.perf_counter()
    return t.num_rows, t2 - t0, None


def make_datafusion(table_dir):
    ctx = datafusion.SessionContext()
    ctx.register_parquet("t", table_dir)

    def run():
        t0 = time.perf_counter()
        t = ctx.sql(QUERY).to_arrow_table()
        t2 = time.perf_counter()
        return t.num_rows, t2 - t0, None

    return run


def bench(name, fn, args):
    n, secs, _ = fn()  # warm-up
    assert n == args.rows, f"{name}: warm-up saw {n} rows, want {args.rows}"
    results = []
    for i in range(args.runs):
        n, secs, phase = fn()
        assert n == args.rows, f"{name}: run {i} saw {n} rows, want {args.rows}"
        results.append((secs, phase))
        extra = f" (execute {phase:.2f}s, convert {secs - phase:.2f}s)" if phase is not None else ""
        print(f"  {name} run {i + 1}: {secs:.3f}s {args.rows / secs / 1e6:.2f}M rows/s{extra}", flush=True)
    return min(results)


def main():
    args = parse_args()
    args.scratch = os.path.abspath(args.scratch)
    only = set(filter(None, args.only.split(",")))
    print_machine(machine_facts())
    if args.pinned:
        print(f"pinned: weir on CPU 0; this client and the in-process floor on CPU {sorted(os.sched_getaffinity(0))}")
    table_dir, server_version = create_data(args)
    print("versions: python", platform.python_version(),
          "| psycopg", psycopg.__version__, f"(impl {psycopg.pq.__impl__}, libpq {psycopg.pq.version()})",
          "| pyarrow", pa.__version__,
          "| adbc-driver-flightsql", adbc_driver_flightsql.__version__,
          "| datafusion (python)", datafusion.__version__)
    print("server:", server_version)

    paths = [
        ("datafusion in-process", "datafusion", make_datafusion(table_dir)),
        ("flight sql (adbc)", "flight", lambda: run_flight(args.flight_port)),
        ("pgwire binary (psycopg)", "binary", lambda: run_psycopg(args.pg_port, True)),
        ("pgwire text (psycopg)", "text", lambda: run_psycopg(args.pg_port, False)),
    ]
    best = {}
    for label, key, fn in paths:
        if only and key not in only:
            continue
        print(f"{label}: warm-up + {args.runs} runs", flush=True)
        best[label] = bench(label, fn, args)

    floor = best.get("datafusion in-process", (None,))[0]
    print()
    print(f"{args.rows} rows, query: {QUERY}; best of {args.runs} after a warm-up")
    print(f"| path | best s | rows/s | time vs in-process floor | execute s (server+wire) |")
    print(f"|---|---:|---:|---:|---:|")
    for label, (secs, phase) in best.items():
        ratio = f"{secs / floor:.2f}x" if floor else "n/a"
        ph = f"{phase:.2f}" if phase is not None else "-"
        print(f"| {label} | {secs:.3f} | {args.rows / secs / 1e6:.2f}M | {ratio} | {ph} |")
    print()
    if floor and "flight sql (adbc)" in best:
        r = best["flight sql (adbc)"][0] / floor
        print(f"target flight sql within 1.5x of in-process: {r:.2f}x -> {'MET' if r <= 1.5 else 'NOT MET'}")
    if "pgwire binary (psycopg)" in best:
        rps = args.rows / best["pgwire binary (psycopg)"][0]
        print(f"target pgwire binary >= 3M rows/s: {rps / 1e6:.2f}M -> {'MET' if rps >= 3e6 else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(main())
