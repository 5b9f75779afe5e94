"""Per-statement time over pgwire and Flight SQL (see benches/statement.sh).

Usage: python benches/statement.py --pg-port P --flight-port F [--count N] [--runs R]
"""

import argparse
import time

import adbc_driver_flightsql.dbapi as flightsql
import psycopg

QUERIES = {
    "SELECT 1": "SELECT 1",
    "one-row lookup": "SELECT name FROM small WHERE id = 7",
}


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--flight-port", type=int, required=True)
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--runs", type=int, default=3)
    return p.parse_args()


def timed(run, count, runs):
    """Best of `runs` of `count` statements, as milliseconds per statement."""
    run(20)  # warm-up
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        run(count)
        best = min(best, (time.perf_counter() - start) / count)
    return best * 1000


def main():
    args = parse_args()
    with psycopg.connect(f"host=127.0.0.1 port={args.pg_port} user=weir dbname=weir", autocommit=True) as pg:
        pg.execute("CREATE EXTERNAL TABLE small (id BIGINT, name TEXT) STORED AS PARQUET LOCATION 'bench/small'")
        pg.execute("INSERT INTO small SELECT value, concat('n', CAST(value AS TEXT)) FROM range(0, 100)")
        with flightsql.connect(f"grpc://127.0.0.1:{args.flight_port}", autocommit=True) as fl, fl.cursor() as cur:
            print("| statement | pgwire ms | flight sql ms | flight ÷ pgwire |")
            print("|---|---:|---:|---:|")
            for name, sql in QUERIES.items():

                def run_pg(n, sql=sql):
                    for _ in range(n):
                        pg.execute(sql).fetchall()

                def run_flight(n, sql=sql):
                    for _ in range(n):
                        cur.execute(sql)
                        cur.fetch_arrow_table()

                p = timed(run_pg, args.count, args.runs)
                f = timed(run_flight, args.count, args.runs)
                print(f"| {name} | {p:.3f} | {f:.3f} | {f / p:.2f}x |")
                if name == "SELECT 1":
                    verdict = "MET" if f <= 2 * p else "NOT MET"
                    print(f"target: SELECT 1 over Flight within 2x of pgwire -> {f / p:.2f}x {verdict}", flush=True)


if __name__ == "__main__":
    main()
