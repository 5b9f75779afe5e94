"""Tables on an S3-compatible object store (moto_server), from weir and from
outside it: deltalake-python, polars and boto3.

Usage: s3_tables.py PORT ENDPOINT SCRATCH_DIR

weir runs with the store's endpoint and credentials in its environment; the
bucket `lake` exists.

1. weir reads a Delta table deltalake-python wrote to s3://lake/..., and a
   Parquet table whose files were put there with boto3; a table in another
   bucket configured by its own OPTIONS (endpoint and keys) is read too, and
   SHOW CREATE TABLE never shows its secret.
2. A sink lands a file stream into a Delta table on S3 (one input file of
   100 rows per epoch, 10 files per epoch). deltalake-python and polars read
   it in a tight loop while it commits: whole epochs only, never fewer rows
   than before. The log's txn names the query's last epoch. OPTIMIZE,
   VACUUM and DESCRIBE HISTORY work on it.
3. A sink lands into a plain Parquet table on S3 (published by copy): weir
   reads whole epochs only while it commits, polars reads the landed files,
   and no staged object is left once it is done. COPY ... TO s3:// exports
   that table as one object polars reads back (a missing bucket: 58P01).
4. File streams over prefixes in the bucket (JSON lines and Parquet
   objects): each object read once, hidden names skipped, new objects
   picked up while the query runs.
5. Bad input, refused at CREATE with the cause: a bucket that does not
   exist (58P01), an endpoint nobody listens on (58030), an endpoint host
   the server may not reach (42501), an unknown aws.* option (22023).

Run by tests/s3.rs.
"""

import json
import os
import pathlib
import sys
import threading
import time

import boto3
import deltalake
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from checkrun import run_checks

PORT = int(sys.argv[1])
ENDPOINT = sys.argv[2]
SCRATCH = pathlib.Path(sys.argv[3]).resolve()
EPOCHS = 30
EPOCH_ROWS = 100
WAIT_S = 180

# What deltalake-python and polars need to use the same store.
STORAGE = {
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
    "AWS_CONDITIONAL_PUT": "etag",
}
S3 = boto3.client("s3", endpoint_url=ENDPOINT, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


def connect():
    return psycopg.connect(f"host=127.0.0.1 port={PORT} user=weir dbname=weir", autocommit=True)


def count(cur, table):
    cur.execute(f"SELECT count(*) FROM {table}")
    return int(cur.fetchone()[0])


def drop_file(directory, name, records):
    staged = directory / f".{name}.tmp"
    staged.write_text("".join(json.dumps(r) + "\n" for r in records))
    staged.rename(directory / f"{name}.json")


def wait_for_rows(cur, table, want):
    deadline = time.monotonic() + WAIT_S
    while (got := count(cur, table)) != want:
        assert time.monotonic() < deadline, f"{table} has {got} of {want} rows"
        time.sleep(0.05)


def whole_epochs(ids, reader):
    n = len(ids)
    assert n % EPOCH_ROWS == 0, f"{reader} read {n} rows: part of an epoch"
    assert sorted(ids) == list(range(n)), f"{reader} read ids that are not 0..{n - 1} once each"
    return n


def keys(bucket, prefix):
    listed = S3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def weir_reads_tables_written_elsewhere():
    deltalake.write_deltalake(
        "s3://lake/made_elsewhere",
        pa.table({"id": pa.array(range(10), pa.int64()), "name": [f"n{i}" for i in range(10)]}),
        storage_options=STORAGE,
    )
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": pa.array(range(7), pa.int64())}), buffer)
    S3.put_object(Bucket="lake", Key="plain/part-0.parquet", Body=buffer.getvalue().to_pybytes())
    # A file a writer has not finished: hidden by the listing rule.
    S3.put_object(Bucket="lake", Key="plain/_temporary/part-1.parquet", Body=buffer.getvalue().to_pybytes())
    S3.create_bucket(Bucket="other")
    S3.put_object(Bucket="other", Key="t/part-0.parquet", Body=buffer.getvalue().to_pybytes())
    with connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE EXTERNAL TABLE made_elsewhere STORED AS DELTA LOCATION 's3://lake/made_elsewhere'")
        assert count(cur, "made_elsewhere") == 10
        deltalake.write_deltalake(
            "s3://lake/made_elsewhere",
            pa.table({"id": pa.array(range(10, 15), pa.int64()), "name": [f"n{i}" for i in range(10, 15)]}),
            mode="append",
            storage_options=STORAGE,
        )
        assert count(cur, "made_elsewhere") == 15, "each query reads the latest version"
        cur.execute("CREATE EXTERNAL TABLE plain STORED AS PARQUET LOCATION 's3://lake/plain/'")
        assert count(cur, "plain") == 7, "the hidden file is not read"
        cur.execute(
            "CREATE EXTERNAL TABLE elsewhere STORED AS PARQUET LOCATION 's3://other/t/' "
            f"OPTIONS ('aws.endpoint' '{ENDPOINT}', 'aws.access_key_id' 'testing', 'aws.secret_access_key' 'testing', 'aws.region' 'us-east-1')"
        )
        assert count(cur, "elsewhere") == 7
        cur.execute("SHOW CREATE TABLE elsewhere")
        shown = cur.fetchone()[1]
        assert "'aws.secret_access_key' '********'" in shown and "'testing', 'aws.region'" not in shown.split("secret")[1], shown


def outside_readers_see_whole_delta_epochs_on_s3():
    incoming = SCRATCH / "incoming"
    incoming.mkdir()
    url = "s3://lake/landed"
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE STREAM arrivals (id BIGINT) WITH (connector = 'file', path = '{incoming}', format = 'json', max_files_per_trigger = 1)")
        cur.execute(f"CREATE EXTERNAL TABLE landed (id BIGINT) STORED AS DELTA LOCATION '{url}'")
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
            threading.Thread(target=read_loop, args=("deltalake", lambda: deltalake.DeltaTable(url, storage_options=STORAGE).to_pyarrow_table()["id"].to_pylist())),
            threading.Thread(target=read_loop, args=("polars", lambda: pl.read_delta(url, storage_options=STORAGE)["id"].to_list())),
        ]
        for r in readers:
            r.start()
        try:
            for epoch in range(EPOCHS):
                drop_file(incoming, f"e{epoch:04}", [{"id": epoch * EPOCH_ROWS + i} for i in range(EPOCH_ROWS)])
                time.sleep(0.03)
            wait_for_rows(cur, "landed", EPOCHS * EPOCH_ROWS)
        finally:
            stop.set()
            for r in readers:
                r.join()
        assert not failures, failures
        for name, counts in seen.items():
            assert len(counts) > 3, f"{name} read only {len(counts) - 1} times"
        table = deltalake.DeltaTable(url, storage_options=STORAGE)
        assert whole_epochs(table.to_pyarrow_table()["id"].to_pylist(), "deltalake") == EPOCHS * EPOCH_ROWS
        assert len(table.file_uris()) >= EPOCHS * 10, len(table.file_uris())
        cur.execute("SELECT max(batch_id) FROM weir.query_progress WHERE query = 'to_delta'")
        last_epoch = int(cur.fetchone()[0])
        txns = [a["txn"]["version"] for a in (json.loads(line) for key in sorted(keys("lake", "landed/_delta_log/")) if key.endswith(".json")
                for line in S3.get_object(Bucket="lake", Key=key)["Body"].read().decode().splitlines()) if "txn" in a and a["txn"]["appId"] == "weir:to_delta"]
        assert txns and txns[-1] == last_epoch, f"log's last txn {txns[-1:]}, weir's last epoch {last_epoch}"
        assert not [k for k in keys("lake", "landed/") if k.endswith(".pending")], "staged objects left behind"
        # weir.query_progress names the Delta version that holds each epoch,
        # the same one DESCRIBE HISTORY gives.
        cur.execute("SELECT batch_id, table_version FROM weir.query_progress WHERE query = 'to_delta' AND output_rows > 0 ORDER BY batch_id")
        noted = cur.fetchall()
        cur.execute("DESCRIBE HISTORY landed")
        history = {row[5]: row[0] for row in cur.fetchall() if row[4] == "to_delta"}
        assert noted and all(version is not None and version == history.get(batch) for batch, version in noted), (noted, history)

        cur.execute("OPTIMIZE landed")
        files_removed, files_added = cur.fetchone()[:2]
        assert files_removed >= EPOCHS * 10 and files_added >= 1, (files_removed, files_added)
        cur.execute("VACUUM landed RETAIN 0 HOURS")
        deleted = cur.fetchall()
        assert len(deleted) >= EPOCHS * 10, len(deleted)
        assert count(cur, "landed") == EPOCHS * EPOCH_ROWS
        assert whole_epochs(pl.read_delta(url, storage_options=STORAGE)["id"].to_list(), "polars") == EPOCHS * EPOCH_ROWS
        cur.execute("DESCRIBE HISTORY landed LIMIT 3")
        operations = [row[2] for row in cur.fetchall()]
        assert "VACUUM END" in operations or "OPTIMIZE" in operations, operations
        # psql's \d+ prints pg_class.reloptions: the format and the location.
        cur.execute("SELECT array_to_string(reloptions, ',') FROM pg_catalog.pg_class WHERE relname = 'landed'")
        assert cur.fetchone()[0] == f"format=delta,location={url}/", "pg_class.reloptions of a Delta table in a bucket"
        cur.execute("DROP SINK to_delta")


def a_parquet_sink_on_s3_publishes_whole_epochs():
    incoming = SCRATCH / "incoming_pq"
    incoming.mkdir()
    with connect() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE STREAM arrivals_pq (id BIGINT) WITH (connector = 'file', path = '{incoming}', format = 'json', max_files_per_trigger = 1)")
        cur.execute("CREATE EXTERNAL TABLE landed_pq (id BIGINT) STORED AS PARQUET LOCATION 's3://lake/landed_pq/'")
        cur.execute("CREATE SINK to_parquet INTO landed_pq AS SELECT id FROM arrivals_pq WITH (flush_interval = '50ms', target_file_rows = 10)")
        stop = threading.Event()
        failures = []
        reads = [0]

        def weir_loop():
            with connect() as reader, reader.cursor() as rcur:
                while not stop.is_set():
                    try:
                        rcur.execute("SELECT id FROM landed_pq")
                        whole_epochs([r[0] for r in rcur.fetchall()], "weir")
                        reads[0] += 1
                    except Exception as e:
                        failures.append(repr(e))
                        return

        reader = threading.Thread(target=weir_loop)
        reader.start()
        try:
            for epoch in range(EPOCHS):
                drop_file(incoming, f"e{epoch:04}", [{"id": epoch * EPOCH_ROWS + i} for i in range(EPOCH_ROWS)])
                time.sleep(0.03)
            wait_for_rows(cur, "landed_pq", EPOCHS * EPOCH_ROWS)
        finally:
            stop.set()
            reader.join()
        assert not failures, failures
        assert reads[0] > 3, reads
        landed = keys("lake", "landed_pq/")
        assert not [k for k in landed if not k.endswith(".parquet")], f"staged objects left: {landed}"
        options = {"aws_endpoint_url": ENDPOINT, "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_region": "us-east-1", "aws_allow_http": "true"}
        ids = pl.read_parquet("s3://lake/landed_pq/*.parquet", storage_options=options)["id"].to_list()
        assert whole_epochs(ids, "polars") == EPOCHS * EPOCH_ROWS
        cur.execute("DROP SINK to_parquet")


def copy_writes_into_a_bucket():
    with connect() as conn, conn.cursor() as cur:
        cur.execute("COPY (SELECT id FROM landed_pq ORDER BY id) TO 's3://lake/exports/ids.parquet' STORED AS PARQUET")
        options = {"aws_endpoint_url": ENDPOINT, "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "aws_region": "us-east-1", "aws_allow_http": "true"}
        ids = pl.read_parquet("s3://lake/exports/ids.parquet", storage_options=options)["id"].to_list()
        assert ids == list(range(EPOCHS * EPOCH_ROWS)), f"{len(ids)} ids exported"
        cur.execute("CREATE EXTERNAL TABLE exported STORED AS PARQUET LOCATION 's3://lake/exports/'")
        assert count(cur, "exported") == EPOCHS * EPOCH_ROWS
        try:
            cur.execute("COPY (SELECT 1 AS x) TO 's3://no-such-bucket/x.parquet' STORED AS PARQUET")
            raise AssertionError("a COPY into a missing bucket was accepted")
        except psycopg.Error as e:
            assert e.sqlstate == "58P01", f"{e.sqlstate} {e}"


def file_streams_read_objects_in_a_bucket():
    lines = lambda ids: "".join(json.dumps({"id": i}) + "\n" for i in ids).encode()
    S3.put_object(Bucket="lake", Key="inbox/a.json", Body=lines(range(0, 50)))
    S3.put_object(Bucket="lake", Key="inbox/_b.json", Body=lines(range(1000, 1010)))  # hidden
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": pa.array(range(100, 130), pa.int64())}), buffer)
    S3.put_object(Bucket="lake", Key="pq_inbox/x.parquet", Body=buffer.getvalue().to_pybytes())
    with connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE STREAM inbox (id BIGINT) WITH (connector = 'file', path = 's3://lake/inbox/', format = 'json')")
        cur.execute("CREATE STREAM pq_inbox (id BIGINT) WITH (connector = 'file', path = 's3://lake/pq_inbox', format = 'parquet')")
        cur.execute("CREATE MATERIALIZED VIEW inbox_ids AS SELECT id FROM inbox WITH (flush_interval = '100ms')")
        cur.execute("CREATE MATERIALIZED VIEW pq_ids AS SELECT id FROM pq_inbox WITH (flush_interval = '100ms')")
        wait_for_rows(cur, "inbox_ids", 50)
        wait_for_rows(cur, "pq_ids", 30)
        S3.put_object(Bucket="lake", Key="inbox/c.json", Body=lines(range(50, 80)))
        wait_for_rows(cur, "inbox_ids", 80)
        cur.execute("SELECT count(DISTINCT id), min(id), max(id) FROM inbox_ids")
        assert cur.fetchone() == (80, 0, 79)
        cur.execute("SELECT sum(id) FROM pq_ids")
        assert cur.fetchone()[0] == sum(range(100, 130))
        try:
            cur.execute("CREATE STREAM nowhere (id BIGINT) WITH (connector = 'file', path = 's3://no-such-bucket/in/', format = 'json')")
            raise AssertionError("a stream over a missing bucket was accepted")
        except psycopg.Error as e:
            assert e.sqlstate == "58P01", f"{e.sqlstate} {e}"


def bad_locations_are_refused_with_the_cause():
    with connect() as conn, conn.cursor() as cur:
        cases = [
            ("CREATE EXTERNAL TABLE nb (id BIGINT) STORED AS PARQUET LOCATION 's3://no-such-bucket/x/'", "58P01", "does not exist"),
            ("CREATE EXTERNAL TABLE down (id BIGINT) STORED AS PARQUET LOCATION 's3://down/x/' OPTIONS ('aws.endpoint' 'http://127.0.0.1:1')", "58030", "s3://down/x/"),
            ("CREATE EXTERNAL TABLE far (id BIGINT) STORED AS PARQUET LOCATION 's3://far/x/' OPTIONS ('aws.endpoint' 'http://203.0.113.7:9000')", "42501", "203.0.113.7"),
            ("CREATE EXTERNAL TABLE odd (id BIGINT) STORED AS PARQUET LOCATION 's3://lake/odd/' OPTIONS ('aws.bogus' '1')", "22023", "aws.bogus"),
            # A region becomes part of a host name: no way around the host list.
            ("CREATE EXTERNAL TABLE rg (id BIGINT) STORED AS PARQUET LOCATION 's3://rg/x/' OPTIONS ('aws.region' 'x.example.com/')", "22023", "aws.region"),
            ("CREATE EXTERNAL TABLE nd STORED AS DELTA LOCATION 's3://lake/plain/'", "42809", "_delta_log"),
        ]
        for statement, sqlstate, needle in cases:
            try:
                cur.execute(statement)
                raise AssertionError(f"accepted: {statement}")
            except psycopg.Error as e:
                assert e.sqlstate == sqlstate and needle in str(e), f"{statement}: {e.sqlstate} {e}"


status = run_checks(
    [
        weir_reads_tables_written_elsewhere,
        outside_readers_see_whole_delta_epochs_on_s3,
        a_parquet_sink_on_s3_publishes_whole_epochs,
        copy_writes_into_a_bucket,
        file_streams_read_objects_in_a_bucket,
        bad_locations_are_refused_with_the_cause,
    ],
    "s3 tables",
)
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
