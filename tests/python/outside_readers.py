"""Outside readers of a rewritten view's directory: DuckDB and pyarrow.

Usage: outside_readers.py PORT SCRATCH_DIR VIEW_DIR

A materialized view in complete mode writes its whole result as a new version
directory each epoch. This script feeds a file stream one file per epoch and,
after each epoch commits, reads the view's directory the way a tool outside
weir does (DuckDB's read_parquet over a recursive glob, a pyarrow dataset):
each must find exactly the rows weir serves, one per group, never a group
twice from an older version. Run by tests/outside_readers.rs.
"""

import json
import pathlib
import sys
import time

import duckdb
import psycopg
import pyarrow.dataset as ds
from checkrun import run_checks

PORT = int(sys.argv[1])
SCRATCH = pathlib.Path(sys.argv[2]).resolve()
VIEW_DIR = pathlib.Path(sys.argv[3]).resolve()
INPUT = SCRATCH / "events"
EPOCHS = 6
WAIT_S = 60


def connect():
    return psycopg.connect(f"host=127.0.0.1 port={PORT} user=weir dbname=weir", autocommit=True)


def weir_rows(cur):
    cur.execute("SELECT k, n FROM totals ORDER BY k")
    return [(k, int(n)) for k, n in cur.fetchall()]


def duckdb_rows():
    glob = str(VIEW_DIR / "**" / "*.parquet")
    return [(k, int(n)) for k, n in duckdb.sql(f"SELECT k, n FROM read_parquet('{glob}') ORDER BY k").fetchall()]


def pyarrow_rows():
    table = ds.dataset(str(VIEW_DIR), format="parquet").to_table()
    return sorted((k, int(n)) for k, n in zip(table["k"].to_pylist(), table["n"].to_pylist()))


def each_epoch_is_read_once_from_outside():
    INPUT.mkdir(parents=True, exist_ok=True)
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE STREAM events (k TEXT, v BIGINT) WITH (connector = 'file', path = '{INPUT}', format = 'json')")
        cur.execute(
            "CREATE MATERIALIZED VIEW totals AS SELECT k, count(*) AS n FROM events GROUP BY k "
            "WITH (output_mode = 'complete', flush_interval = '100ms')"
        )
        expected = {}
        for epoch in range(EPOCHS):
            records = [{"k": f"key{(epoch + i) % 4}", "v": i} for i in range(epoch + 3)]
            for r in records:
                expected[r["k"]] = expected.get(r["k"], 0) + 1
            staged = INPUT / f".part{epoch}.tmp"
            staged.write_text("".join(json.dumps(r) + "\n" for r in records))
            staged.rename(INPUT / f"part{epoch}.json")
            want = sorted(expected.items())
            deadline = time.monotonic() + WAIT_S
            while weir_rows(cur) != want:
                assert time.monotonic() < deadline, f"epoch {epoch}: weir shows {weir_rows(cur)}, want {want}"
                time.sleep(0.05)
            # The commit that made `want` visible has deleted the older version.
            assert duckdb_rows() == want, f"epoch {epoch}: DuckDB reads {duckdb_rows()}, want {want}"
            assert pyarrow_rows() == want, f"epoch {epoch}: pyarrow reads {pyarrow_rows()}, want {want}"
        versions = sorted(p.name for p in VIEW_DIR.iterdir() if p.is_dir())
        assert len(versions) == 1, f"version directories left: {versions}"


sys.exit(run_checks([each_epoch_is_read_once_from_outside], "outside readers"))
