"""Per-statement time over pgwire and Flight SQL (see benches/statement.sh).

Flight SQL is measured with two clients: ADBC's driver (what applications
use; Go, through cgo) and pyarrow's C++ Flight client speaking the Flight SQL
commands itself, which costs the client far less per call. A Flight SQL
statement is two calls (GetFlightInfo, then DoGet on its ticket), so the
time of a call that does nothing on the server (ListActions) is printed as
the floor of half a statement.

Usage: python benches/statement.py --pg-port P --flight-port F [--count N] [--runs R]
"""

import argparse
import time

import adbc_driver_flightsql.dbapi as flightsql
import psycopg
import pyarrow.flight as flight

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


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def length_delimited(field, data):
    """One protobuf field of wire type 2 (bytes, strings, messages)."""
    return bytes([field << 3 | 2]) + varint(len(data)) + data


def statement_query(sql):
    """A Flight SQL CommandStatementQuery in its google.protobuf.Any."""
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return length_delimited(1, type_url) + length_delimited(2, length_delimited(1, sql.encode()))


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
        raw = flight.FlightClient(f"grpc://127.0.0.1:{args.flight_port}")

        def run_noop(n):
            for _ in range(n):
                raw.list_actions()

        floor = timed(run_noop, args.count, args.runs)
        print(f"one Flight call that does nothing on the server (ListActions, pyarrow): {floor:.3f} ms")
        with flightsql.connect(f"grpc://127.0.0.1:{args.flight_port}", autocommit=True) as fl, fl.cursor() as cur:
            print("| statement | pgwire ms | flight sql, ADBC ms | flight sql, pyarrow ms | ADBC ÷ pgwire | pyarrow ÷ pgwire |")
            print("|---|---:|---:|---:|---:|---:|")
            for name, sql in QUERIES.items():

                def run_pg(n, sql=sql):
                    for _ in range(n):
                        pg.execute(sql).fetchall()

                def run_flight(n, sql=sql):
                    for _ in range(n):
                        cur.execute(sql)
                        cur.fetch_arrow_table()

                descriptor = flight.FlightDescriptor.for_command(statement_query(sql))

                def run_raw(n, descriptor=descriptor):
                    for _ in range(n):
                        info = raw.get_flight_info(descriptor)
                        raw.do_get(info.endpoints[0].ticket).read_all()

                p = timed(run_pg, args.count, args.runs)
                f = timed(run_flight, args.count, args.runs)
                r = timed(run_raw, args.count, args.runs)
                print(f"| {name} | {p:.3f} | {f:.3f} | {r:.3f} | {f / p:.2f}x | {r / p:.2f}x |", flush=True)
                if name == "SELECT 1":
                    best = min(f, r)
                    verdict = "MET" if best <= 2 * p else "NOT MET"
                    print(f"target: SELECT 1 over Flight within 2x of pgwire -> {best / p:.2f}x {verdict}", flush=True)


if __name__ == "__main__":
    main()
