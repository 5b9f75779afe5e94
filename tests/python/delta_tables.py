"""Delta Lake tables, from weir and from outside it: deltalake-python and polars.

Usage: delta_tables.py PORT SCRATCH_DIR

1. A table written by deltalake-python is read by weir (`STORED AS DELTA`),
   each query at the latest version; `OPTIONS ('version' '0')` pins one.
2. A sink lands a file stream into a Delta table, one input file (100 rows,
   ids contiguous) per epoch, rolled into 10 Parquet files per epoch. While
   it commits, deltalake-python and polars read the table in a tight loop:
   each read must hold whole epochs only (a count that is a multiple of 100,
   the ids 0..count-1 each once), never fewer rows than an earlier read.
3. The log carries the query's transaction: app id `weir:<query>`, version =
   the last epoch.
4. OPTIMIZE and VACUUM RETAIN 0 HOURS run again and again while a sink
   commits into the same table: no row is lost or duplicated, the small
   files are compacted and the unreferenced ones deleted; DESCRIBE HISTORY
   lists the commits.
5. A materialized view with format = 'delta': in complete mode each epoch
   is one overwrite commit, so deltalake and polars read exactly the current
   result; in append mode, whole epochs.
6. `compact_every = 4`: the sink compacts its table every 4 epochs.
7. Refused: a sink into a partitioned Delta table, a CREATE OR REPLACE that
   changes a view's format. A sink dropped and created again under its old
   name lands every row (the log forgets the old query's epochs).

Run by tests/delta.rs.
"""

import json
import os
import pathlib
import sys
import threading
import time

import deltalake
import polars as pl
import psycopg
import pyarrow as pa
from checkrun import run_checks

PORT = int(sys.argv[1])
SCRATCH = pathlib.Path(sys.argv[2]).resolve()
EPOCHS = 30
EPOCH_ROWS = 100
WAIT_S = 120


def connect():
    return psycopg.connect(f"host=127.0.0.1 port={PORT} user=weir dbname=weir", autocommit=True)


def count(cur, table):
    cur.execute(f"SELECT count(*) FROM {table}")
    return int(cur.fetchone()[0])


def drop_file(directory, name, records):
    """Writes `records` as JSON lines under a hidden name, then renames the
    file in: a file stream sees it whole."""
    staged = directory / f".{name}.tmp"
    staged.write_text("".join(json.dumps(r) + "\n" for r in records))
    staged.rename(directory / f"{name}.json")


def epoch_of_ids(epoch):
    """EPOCH_ROWS records whose ids continue where epoch - 1 stopped."""
    return [{"id": epoch * EPOCH_ROWS + i} for i in range(EPOCH_ROWS)]


def wait_for_rows(cur, table, want):
    deadline = time.monotonic() + WAIT_S
    while (got := count(cur, table)) != want:
        assert time.monotonic() < deadline, f"{table} has {got} of {want} rows"
        time.sleep(0.05)


def weir_reads_a_table_deltalake_wrote():
    path = SCRATCH / "made_elsewhere"
    deltalake.write_deltalake(str(path), pa.table({"id": pa.array(range(10), pa.int64()), "name": [f"n{i}" for i in range(10)]}))
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE EXTERNAL TABLE made_elsewhere STORED AS DELTA LOCATION '{path}'")
        assert count(cur, "made_elsewhere") == 10
        cur.execute("SELECT name FROM made_elsewhere WHERE id = 7")
        assert cur.fetchall() == [("n7",)]
        cur.execute("SELECT id FROM made_elsewhere WHERE name = 'n3' OR name LIKE 'n9%'")
        assert sorted(r[0] for r in cur.fetchall()) == [3, 9]
        # A later version, written outside weir, is what the next query reads.
        deltalake.write_deltalake(str(path), pa.table({"id": pa.array(range(10, 15), pa.int64()), "name": ["x"] * 5}), mode="append")
        assert count(cur, "made_elsewhere") == 15
        # Time travel: the table pinned to its first version.
        cur.execute(f"CREATE EXTERNAL TABLE made_elsewhere_v0 STORED AS DELTA LOCATION '{path}' OPTIONS ('version' '0')")
        assert count(cur, "made_elsewhere_v0") == 10
        cur.execute("SHOW TABLES")
        formats = {row[0]: row for row in cur.fetchall()}
        assert "DELTA" in " ".join(str(v) for v in formats["made_elsewhere"]), formats["made_elsewhere"]
        # Not a Delta table: a clear error, not an empty table.
        plain = SCRATCH / "plain_dir"
        plain.mkdir()
        try:
            cur.execute(f"CREATE EXTERNAL TABLE not_delta STORED AS DELTA LOCATION '{plain}'")
            raise AssertionError("a directory without a log was accepted")
        except psycopg.Error as e:
            assert "_delta_log" in str(e), e


def whole_epochs(ids, reader):
    n = len(ids)
    assert n % EPOCH_ROWS == 0, f"{reader} read {n} rows: part of an epoch"
    assert sorted(ids) == list(range(n)), f"{reader} read ids that are not 0..{n - 1} once each"
    return n


def outside_readers_see_whole_epochs_while_a_sink_commits():
    incoming = SCRATCH / "incoming"
    incoming.mkdir()
    table_dir = SCRATCH / "landed"
    table_dir.mkdir()  # an absolute location is the user's and must exist
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE STREAM arrivals (id BIGINT) WITH (connector = 'file', path = '{incoming}', format = 'json', max_files_per_trigger = 1)")
        cur.execute(f"CREATE EXTERNAL TABLE landed (id BIGINT) STORED AS DELTA LOCATION '{table_dir}'")
        cur.execute("CREATE SINK to_delta INTO landed AS SELECT id FROM arrivals WITH (flush_interval = '50ms', target_file_rows = 10)")

        stop = threading.Event()
        seen = {"deltalake": [0], "polars": [0]}
        failures = []

        def read_loop(name, read):
            while not stop.is_set():
                try:
                    n = whole_epochs(read(), name)
                    assert n >= seen[name][-1], f"{name} went back from {seen[name][-1]} to {n} rows"
                    seen[name].append(n)
                except Exception as e:  # reported after the loop
                    failures.append(f"{name}: {e!r}")
                    return

        readers = [
            threading.Thread(target=read_loop, args=("deltalake", lambda: deltalake.DeltaTable(str(table_dir)).to_pyarrow_table()["id"].to_pylist())),
            threading.Thread(target=read_loop, args=("polars", lambda: pl.read_delta(str(table_dir))["id"].to_list())),
        ]
        for r in readers:
            r.start()
        try:
            for epoch in range(EPOCHS):
                drop_file(incoming, f"e{epoch:04}", epoch_of_ids(epoch))
                time.sleep(0.03)
            wait_for_rows(cur, "landed", EPOCHS * EPOCH_ROWS)
        finally:
            stop.set()
            for r in readers:
                r.join()
        assert not failures, failures
        for name, counts in seen.items():
            assert len(counts) > 3, f"{name} read only {len(counts) - 1} times"
        table = deltalake.DeltaTable(str(table_dir))
        assert whole_epochs(table.to_pyarrow_table()["id"].to_pylist(), "deltalake") == EPOCHS * EPOCH_ROWS
        assert whole_epochs(pl.read_delta(str(table_dir))["id"].to_list(), "polars") == EPOCHS * EPOCH_ROWS
        # Many files per epoch, one commit per epoch, each with the query's txn.
        assert len(table.file_uris()) >= EPOCHS * 10, len(table.file_uris())
        cur.execute("SELECT max(batch_id) FROM weir.query_progress WHERE query = 'to_delta'")
        last_epoch = int(cur.fetchone()[0])
        log = sorted((table_dir / "_delta_log").glob("*.json"))
        last_txn = None
        for entry in log:
            for line in entry.read_text().splitlines():
                action = json.loads(line)
                if "txn" in action and action["txn"]["appId"] == "weir:to_delta":
                    last_txn = action["txn"]["version"]
        assert last_txn == last_epoch, f"log's last txn {last_txn}, weir's last epoch {last_epoch}"
        # weir.query_progress names the Delta version that holds each epoch,
        # the same one DESCRIBE HISTORY gives.
        cur.execute("SELECT batch_id, table_version FROM weir.query_progress WHERE query = 'to_delta' AND output_rows > 0 ORDER BY batch_id")
        noted = cur.fetchall()
        cur.execute("DESCRIBE HISTORY landed")
        history = {row[5]: row[0] for row in cur.fetchall() if row[4] == "to_delta"}
        assert noted and all(version is not None and version == history.get(batch) for batch, version in noted), (noted, history)


def optimize_and_vacuum_while_a_sink_commits():
    incoming = SCRATCH / "incoming_m"
    incoming.mkdir()
    table_dir = SCRATCH / "compacted"
    table_dir.mkdir()
    epochs = 20
    with connect() as conn, conn.cursor() as cur, connect() as maint_conn, maint_conn.cursor() as maint:
        cur.execute(f"CREATE STREAM arrivals_m (id BIGINT) WITH (connector = 'file', path = '{incoming}', format = 'json', max_files_per_trigger = 1)")
        cur.execute(f"CREATE EXTERNAL TABLE compacted (id BIGINT) STORED AS DELTA LOCATION '{table_dir}'")
        cur.execute("CREATE SINK to_compacted INTO compacted AS SELECT id FROM arrivals_m WITH (flush_interval = '50ms', target_file_rows = 10)")
        compacted = 0
        vacuumed = 0
        for epoch in range(epochs):
            drop_file(incoming, f"m{epoch:04}", epoch_of_ids(epoch))
            if epoch % 4 == 1:
                maint.execute("OPTIMIZE compacted WITH (target_size = '1MB')")
                files_removed, files_added, _, _ = maint.fetchone()
                compacted += files_removed
            if epoch % 4 == 3:
                maint.execute("VACUUM compacted RETAIN 0 HOURS")
                vacuumed += len(maint.fetchall())
            time.sleep(0.05)
        want = epochs * EPOCH_ROWS
        wait_for_rows(cur, "compacted", want)
        maint.execute("OPTIMIZE compacted")
        maint.execute("VACUUM compacted RETAIN 0 HOURS")
        vacuumed += len(maint.fetchall())
        cur.execute("SELECT status FROM weir.queries WHERE name = 'to_compacted'")
        assert cur.fetchone()[0] == "running"
        cur.execute("SELECT id FROM compacted")
        assert whole_epochs([r[0] for r in cur.fetchall()], "weir") == want
        assert whole_epochs(deltalake.DeltaTable(str(table_dir)).to_pyarrow_table()["id"].to_pylist(), "deltalake") == want
        assert whole_epochs(pl.read_delta(str(table_dir))["id"].to_list(), "polars") == want
        assert compacted > 0, "OPTIMIZE compacted nothing"
        assert vacuumed > 0, "VACUUM deleted nothing"
        live = deltalake.DeltaTable(str(table_dir)).file_uris()
        assert len(live) < epochs * 10, f"{len(live)} files after OPTIMIZE"
        on_disk = sorted(p.name for p in table_dir.glob("*.parquet"))
        assert len(on_disk) == len(live), f"VACUUM left {len(on_disk)} files for {len(live)} live ones"
        cur.execute("DESCRIBE HISTORY compacted")
        operations = [row[2] for row in cur.fetchall()]
        for op in ("OPTIMIZE", "VACUUM END", "WRITE", "CREATE TABLE"):
            assert op in operations, f"{op} not in the history: {operations}"
        cur.execute("DESCRIBE HISTORY compacted LIMIT 1")
        assert len(cur.fetchall()) == 1
        # Each of the sink's commits names its query and epoch; the versions
        # run down from the latest without a gap.
        cur.execute("DESCRIBE HISTORY compacted")
        history = cur.fetchall()
        versions = [row[0] for row in history]
        assert versions == list(range(versions[0], versions[0] - len(versions), -1)), versions
        epochs = [row[5] for row in history if row[4] == "to_compacted"]
        assert epochs and epochs == sorted(epochs, reverse=True) and len(set(epochs)) == len(epochs), epochs
        cur.execute("SELECT max(batch_id) FROM weir.query_progress WHERE query = 'to_compacted'")
        assert epochs[0] == cur.fetchone()[0], (epochs[0], "the latest epoch")
        try:
            cur.execute("OPTIMIZE arrivals_m")
            raise AssertionError("OPTIMIZE of a stream was accepted")
        except psycopg.errors.WrongObjectType as e:
            assert "Delta table" in str(e), e


def delta_materialized_views():
    incoming = SCRATCH / "incoming_v"
    incoming.mkdir()
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE STREAM clicks (k TEXT, v BIGINT) WITH (connector = 'file', path = '{incoming}', format = 'json', max_files_per_trigger = 1)")
        cur.execute(
            "CREATE MATERIALIZED VIEW totals_delta AS SELECT k, count(*) AS n, sum(v) AS total FROM clicks GROUP BY k "
            "WITH (output_mode = 'complete', format = 'delta', flush_interval = '50ms')"
        )
        cur.execute("CREATE MATERIALIZED VIEW clicks_delta AS SELECT k, v FROM clicks WITH (format = 'delta', flush_interval = '50ms')")
        cur.execute("SHOW TABLES")
        formats = {row[0]: row[1] for row in cur.fetchall()}
        assert formats["totals_delta"] == "DELTA" and formats["clicks_delta"] == "DELTA", formats
        assert count(cur, "totals_delta") == 0, "an empty view before the first epoch"
        totals_dir = pathlib.Path(table_location(cur, "totals_delta"))
        clicks_dir = pathlib.Path(table_location(cur, "clicks_delta"))
        expected = {}
        sent = 0
        for epoch in range(6):
            records = [{"k": f"key{(epoch + i) % 3}", "v": i} for i in range(epoch + 2)]
            for r in records:
                n, total = expected.get(r["k"], (0, 0))
                expected[r["k"]] = (n + 1, total + r["v"])
            sent += len(records)
            drop_file(incoming, f"v{epoch:04}", records)
            want = sorted((k, n, t) for k, (n, t) in expected.items())
            deadline = time.monotonic() + WAIT_S
            while True:
                cur.execute("SELECT k, n, total FROM totals_delta ORDER BY k")
                got = [(k, int(n), int(t)) for k, n, t in cur.fetchall()]
                if got == want:
                    break
                assert time.monotonic() < deadline, f"epoch {epoch}: weir shows {got}, want {want}"
                time.sleep(0.05)
            table = deltalake.DeltaTable(str(totals_dir)).to_pyarrow_table()
            outside = sorted(zip(table["k"].to_pylist(), table["n"].to_pylist(), table["total"].to_pylist()))
            assert outside == want, f"epoch {epoch}: deltalake reads {outside}, want {want}"
            frame = pl.read_delta(str(totals_dir)).sort("k")
            assert list(zip(frame["k"], frame["n"], frame["total"])) == want, f"epoch {epoch}: polars reads {frame}"
        wait_for_rows(cur, "clicks_delta", sent)
        assert len(pl.read_delta(str(clicks_dir))) == sent
        cur.execute("DESCRIBE HISTORY totals_delta")
        operations = [row[2] for row in cur.fetchall()]
        assert operations.count("WRITE") >= 6, operations


def automatic_compaction():
    incoming = SCRATCH / "incoming_c"
    incoming.mkdir()
    table_dir = SCRATCH / "auto_compacted"
    table_dir.mkdir()
    epochs = 12
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE STREAM arrivals_c (id BIGINT) WITH (connector = 'file', path = '{incoming}', format = 'json', max_files_per_trigger = 1)")
        cur.execute(f"CREATE EXTERNAL TABLE auto_compacted (id BIGINT) STORED AS DELTA LOCATION '{table_dir}'")
        try:
            cur.execute("CREATE MATERIALIZED VIEW not_delta AS SELECT id FROM arrivals_c WITH (compact_every = 4)")
            raise AssertionError("compact_every on a Parquet view was accepted")
        except psycopg.errors.InvalidParameterValue as e:
            assert "Delta" in str(e), e
        cur.execute(
            "CREATE SINK to_auto INTO auto_compacted AS SELECT id FROM arrivals_c "
            "WITH (flush_interval = '50ms', target_file_rows = 10, compact_every = 4)"
        )
        for epoch in range(epochs):
            drop_file(incoming, f"c{epoch:04}", epoch_of_ids(epoch))
            time.sleep(0.05)
        want = epochs * EPOCH_ROWS
        deadline = time.monotonic() + WAIT_S
        while True:
            cur.execute("DESCRIBE HISTORY auto_compacted")
            compactions = [row for row in cur.fetchall() if row[2] == "OPTIMIZE"]
            if count(cur, "auto_compacted") == want and len(compactions) >= 2:
                break
            assert time.monotonic() < deadline, f"{count(cur, 'auto_compacted')} of {want} rows, {len(compactions)} compactions"
            time.sleep(0.1)
        cur.execute("SELECT id FROM auto_compacted")
        assert whole_epochs([r[0] for r in cur.fetchall()], "weir") == want
        live = deltalake.DeltaTable(str(table_dir)).file_uris()
        assert len(live) < epochs * 10, f"{len(live)} live files: nothing compacted"


def refusals_and_a_sink_created_again():
    incoming = SCRATCH / "incoming_r"
    incoming.mkdir()
    with connect() as conn, conn.cursor() as cur:
        # A partitioned table written elsewhere: weir's sink would write no
        # partition values, so it refuses.
        parted = SCRATCH / "parted"
        deltalake.write_deltalake(str(parted), pa.table({"id": pa.array([1], pa.int64()), "p": ["a"]}), partition_by=["p"])
        cur.execute(f"CREATE EXTERNAL TABLE parted STORED AS DELTA LOCATION '{parted}'")
        cur.execute(f"CREATE STREAM arrivals_r (id BIGINT, p TEXT) WITH (connector = 'file', path = '{incoming}', format = 'json')")
        try:
            cur.execute("CREATE SINK into_parted INTO parted AS SELECT id, p FROM arrivals_r")
            raise AssertionError("a sink into a partitioned Delta table was accepted")
        except psycopg.errors.FeatureNotSupported as e:
            assert "partitioned" in str(e), e
        # A Parquet view cannot become a Delta view by CREATE OR REPLACE.
        cur.execute("CREATE MATERIALIZED VIEW shape AS SELECT id FROM arrivals_r")
        try:
            cur.execute("CREATE OR REPLACE MATERIALIZED VIEW shape AS SELECT id FROM arrivals_r WITH (format = 'delta')")
            raise AssertionError("a view's format changed by CREATE OR REPLACE")
        except psycopg.errors.FeatureNotSupported as e:
            assert "format" in str(e), e
        cur.execute("DROP MATERIALIZED VIEW shape")
        # A sink dropped and created again under the same name starts at
        # epoch 0; the log still holds the old one's epochs, which must not
        # make the new epochs count as committed.
        target = SCRATCH / "again"
        target.mkdir()
        cur.execute(f"CREATE EXTERNAL TABLE again (id BIGINT) STORED AS DELTA LOCATION '{target}'")
        sent = 0
        for round_ in range(2):
            # Each round reads a stream of its own (a new query reads its
            # stream from the start).
            round_dir = SCRATCH / f"incoming_round{round_}"
            round_dir.mkdir()
            cur.execute(f"CREATE STREAM round{round_} (id BIGINT) WITH (connector = 'file', path = '{round_dir}', format = 'json')")
            cur.execute(f"CREATE SINK into_again INTO again AS SELECT id FROM round{round_} WITH (flush_interval = '50ms')")
            for epoch in range(4):
                drop_file(round_dir, f"r{epoch:04}", [{"id": sent + i} for i in range(10)])
                sent += 10
                wait_for_rows(cur, "again", sent)
            cur.execute("DROP SINK into_again")
        assert len(deltalake.DeltaTable(str(target)).to_pyarrow_table()) == sent


def table_location(cur, name):
    cur.execute("SHOW TABLES")
    return next(row[2] for row in cur.fetchall() if row[0] == name).rstrip("/")


status = (
    run_checks(
        [
            weir_reads_a_table_deltalake_wrote,
            outside_readers_see_whole_epochs_while_a_sink_commits,
            optimize_and_vacuum_while_a_sink_commits,
            delta_materialized_views,
            automatic_compaction,
            refusals_and_a_sink_created_again,
        ],
        "delta tables",
    )
)
# Leave without the interpreter's finalisation: a native thread pool of one
# of the readers can abort the process on its way out ("terminate called
# without an active exception") after every check has passed.
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
