"""OPTIMIZE of a Delta table of many small files (see benches/optimize.sh).

Usage: python benches/optimize.py --pg-port P --scratch DIR [--files N] [--rows-per-file R] [--runs K]
"""

import argparse
import json
import pathlib
import time

import benchlib


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--scratch", required=True)
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--rows-per-file", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    return p.parse_args()


SCAN = "SELECT count(*), sum(id), count(DISTINCT k) FROM small_files"


def best_scan(cur, runs):
    cur.execute(SCAN)
    result = cur.fetchone()
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        cur.execute(SCAN)
        assert cur.fetchone() == result
        best = min(best, time.perf_counter() - t0)
    return best, result


def main():
    args = parse_args()
    benchlib.print_machine(benchlib.machine_facts())
    rows = args.files * args.rows_per_file
    incoming = pathlib.Path(args.scratch) / "incoming"
    incoming.mkdir(parents=True)
    with open(incoming / ".rows.tmp", "w") as f:
        for i in range(rows):
            f.write(json.dumps({"id": i, "k": f"key{i % 97}", "v": i * 0.5}) + "\n")
    (incoming / ".rows.tmp").rename(incoming / "rows.json")
    with benchlib.pg_connect(args.pg_port) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE STREAM rows_in (id BIGINT, k TEXT, v DOUBLE) WITH (connector = 'file', path = '{incoming}', format = 'json')")
        cur.execute("CREATE EXTERNAL TABLE small_files (id BIGINT, k TEXT, v DOUBLE) STORED AS DELTA LOCATION 'lake/small_files'")
        t0 = time.perf_counter()
        cur.execute(f"CREATE SINK land INTO small_files AS SELECT id, k, v FROM rows_in "
                    f"WITH (trigger = 'available_now', target_file_rows = {args.rows_per_file})")
        while True:
            cur.execute("SELECT status FROM weir.queries WHERE name = 'land'")
            if cur.fetchone()[0] == "finished":
                break
            time.sleep(0.05)
        print(f"landed {rows} rows as {args.files} files in one epoch: {time.perf_counter() - t0:.2f} s", flush=True)
        before, result = best_scan(cur, args.runs)
        assert result[0] == rows, result
        t0 = time.perf_counter()
        cur.execute("OPTIMIZE small_files")
        removed, added, bytes_removed, bytes_added = cur.fetchone()
        optimize_s = time.perf_counter() - t0
        after, result_after = best_scan(cur, args.runs)
        assert result_after == result, (result_after, result)
        print("| | files | scan best s | rows/s |")
        print("|---|---:|---:|---:|")
        print(f"| before OPTIMIZE | {removed} | {before:.3f} | {rows / before:,.0f} |")
        print(f"| after OPTIMIZE | {added} | {after:.3f} | {rows / after:,.0f} |")
        print(f"OPTIMIZE: {removed} files ({bytes_removed / 1e6:.1f} MB) -> {added} ({bytes_added / 1e6:.1f} MB) "
              f"in {optimize_s:.2f} s; scan {before / after:.2f}x faster after", flush=True)


if __name__ == "__main__":
    main()
