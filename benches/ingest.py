"""Ingest benchmark: N seed-style JSON game events -> keep the sword purchases
-> Parquet, through a weir continuous query (trigger available_now) from a file
stream and from Kafka, against DuckDB and Spark Structured Streaming on the
same files.

Usage (normally run by benches/ingest.sh, which starts weir and the broker):

    python benches/ingest.py --scratch DIR [--events N] [--kafka-events M] [--runs K] [--only LIST]
        [--pg-port P --weir-pid PID --server-log FILE]       # weir-file, weir-kafka
        [--kafka HOST:PORT --tansu-bin T --tansu-pid PID --weir-bin W]  # weir-kafka

The events are generated once into DIR/events (newline-delimited JSON, split
over --files files); every engine reads those files, except weir-kafka, which
reads the first M of them from a topic (the broker, tansu with in-memory
storage, slows down as a partition grows, so M defaults to 200000). Each
engine gets one warm-up and K timed runs (the best is reported); every run
writes a fresh output and fails loudly unless it holds exactly the expected
rows (count, sum of ids, and a non-null timestamp on every row).
"""
import argparse
import datetime
import os
import platform
import random
import shutil
import subprocess
import sys
import time

import benchlib
from benchlib import BenchError, cpu_seconds, log_tail, machine_facts, peak_rss_mb, print_machine

ENGINES = ["weir-file", "weir-delta", "weir-s3", "weir-s3-delta", "weir-kafka", "duckdb", "spark"]
EVENT_TYPES = ["purchase_sword", "purchase_shield", "join_guild", "login", "logout", "level_up"]
HOSTS = ["user1.comcast.com", "user2.att.com", "user3.verizon.net", "user4.comcast.com", "user5.spectrum.net"]
AGENTS = ["curl/7.47.0", "curl/8.5.0", "Mozilla/5.0", "python-requests/2.31"]
POLL = 0.05  # seconds between status polls of a weir query
COLUMNS = ('(event_type TEXT, "Host" TEXT, "User-Agent" TEXT, "Accept" TEXT, ts TIMESTAMP, id BIGINT)')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scratch", required=True)
    p.add_argument("--events", type=int, default=2_000_000)
    p.add_argument("--kafka-events", type=int, default=200_000,
                   help="how many of the events go through Kafka (the first ones; default 200000, see BENCHMARKS.md)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--only", default=",".join(ENGINES), help="comma list of: " + ",".join(ENGINES))
    p.add_argument("--pg-port", type=int)
    p.add_argument("--weir-pid", type=int)
    p.add_argument("--weir-bin")
    p.add_argument("--server-log")
    p.add_argument("--kafka", help="host:port of the broker")
    p.add_argument("--tansu-bin")
    p.add_argument("--tansu-pid", type=int)
    args = p.parse_args()
    args.only = [e for e in args.only.split(",") if e]
    args.kafka_events = min(args.kafka_events, args.events)
    unknown = set(args.only) - set(ENGINES)
    if unknown:
        p.error(f"unknown engine(s) in --only: {', '.join(sorted(unknown))}; expected {', '.join(ENGINES)}")
    return args


# --- the events ----------------------------------------------------------------

def generate(dir_, n, files, prefix):
    """Writes n events (ids 0..n-1, in file-name order) over `files` files.
    Returns the expected output for all of them and for the first `prefix`
    ones, each as (sword purchases, sum of their ids), and the bytes written."""
    os.makedirs(dir_, exist_ok=True)
    rng = random.Random(42)
    base = datetime.datetime(2026, 11, 23, 10, 0, 0)
    # About a third are sword purchases; the rest spread over other types.
    weights = [10, 4, 4, 4, 4, 4]
    types = rng.choices(EVENT_TYPES, weights=weights, k=n)
    swords = id_sum = size = 0
    expected_prefix = (0, 0)
    per_file = -(-n // files)
    for f in range(files):
        lines = []
        for i in range(f * per_file, min(n, (f + 1) * per_file)):
            t = base + datetime.timedelta(milliseconds=i * 7)
            ts = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
            et = types[i]
            if i == prefix:
                expected_prefix = (swords, id_sum)
            if et == "purchase_sword":
                swords += 1
                id_sum += i
            lines.append(
                f'{{"event_type": "{et}", "Host": "{HOSTS[i % len(HOSTS)]}", '
                f'"User-Agent": "{AGENTS[i % len(AGENTS)]}", "Accept": "*/*", "ts": "{ts}", "id": {i}}}\n'
            )
        data = "".join(lines).encode()
        size += len(data)
        # Written under a hidden name, then renamed in: readers see whole files.
        tmp = os.path.join(dir_, f".events-{f:03d}.json.tmp")
        with open(tmp, "wb") as out:
            out.write(data)
        os.rename(tmp, os.path.join(dir_, f"events-{f:03d}.json"))
    if prefix >= n:
        expected_prefix = (swords, id_sum)
    return (swords, id_sum), expected_prefix, size


# --- weir ----------------------------------------------------------------------

class Weir(benchlib.Weir):
    def __init__(self, args):
        super().__init__(args)
        self.streams = set()

    def version(self):
        return self.sql("SELECT version()")[0][0]

    def create_stream(self, name, with_):
        if name not in self.streams:
            self.sql(f"CREATE STREAM {name} {COLUMNS} WITH ({with_})")
            self.streams.add(name)

    def run_sink(self, stream, events, expected, extra_pids=(), extra_input=0, stored_as="PARQUET", root="warehouse"):
        """One timed sink over `stream` (which holds `events` events, plus
        `extra_input` records that the filter drops) into a new table stored
        as `stored_as` (PARQUET or DELTA) under `root` (a directory in the
        data dir, or an s3:// bucket); returns a result dict."""
        self.seq += 1
        sink, table = f"s_{stream}_{self.seq}", f"swords_{stream}_{self.seq}"
        self.sql(f"CREATE EXTERNAL TABLE {table} (id BIGINT, \"Host\" TEXT, ts TIMESTAMP) "
                 f"STORED AS {stored_as} LOCATION '{root}/{table}/'")
        timeout = 120 + events / 5_000
        cpu0 = cpu_seconds(self.args.weir_pid)
        others0 = [cpu_seconds(p) for p in extra_pids]
        t0 = time.perf_counter()
        self.sql(f"CREATE SINK {sink} INTO {table} AS SELECT id, \"Host\", ts FROM {stream} "
                 f"WHERE event_type = 'purchase_sword' WITH (trigger = 'available_now')")
        while True:
            rows = self.sql(f"SELECT status, last_error FROM weir.queries WHERE name = '{sink}'")
            status, error = rows[0] if rows else (None, None)
            if status == "finished":
                break
            elapsed = time.perf_counter() - t0
            if status in ("failed", "stopped") or elapsed > timeout:
                everything = self.sql(f"SELECT * FROM weir.queries WHERE name = '{sink}'")
                raise BenchError(
                    f"weir sink {sink} did not finish: status {status!r} after {elapsed:.1f}s, "
                    f"last_error {error!r}\n  weir.queries: {everything}\n"
                    f"--- server log tail ---\n{log_tail(self.args.server_log)}")
            time.sleep(POLL)
        secs = time.perf_counter() - t0
        cpu = cpu_seconds(self.args.weir_pid) - cpu0
        others = [cpu_seconds(p) - c for p, c in zip(extra_pids, others0)]
        count, ids, with_ts = self.sql(f"SELECT count(*), sum(id), count(ts) FROM {table}")[0]
        epochs, input_rows, files = self.sql(
            f"SELECT count(*), sum(input_rows), sum(files_written) FROM weir.query_progress WHERE query = '{sink}'")[0]
        check(f"weir {stream}", (count, ids, with_ts), expected)
        if input_rows != events + extra_input:
            raise BenchError(f"weir {stream}: weir.query_progress says {input_rows} input rows, "
                             f"want {events + extra_input}")
        self.sql(f"DROP SINK {sink}")
        self.sql(f"DROP TABLE {table}")
        return {"events": events, "secs": secs, "cpu": cpu, "other_cpu": others,
                "note": f"{epochs} epochs, {files} files"}


def check(engine, got, expected):
    count, ids, with_ts = got
    want_count, want_ids = expected
    if (count, ids, with_ts) != (want_count, want_ids, want_count):
        raise BenchError(f"{engine}: WRONG OUTPUT: count {count}, sum(id) {ids}, non-null ts {with_ts}; "
                         f"want count {want_count}, sum(id) {want_ids}, non-null ts {want_count}")


# tansu 0.6's in-memory storage answers ListOffsets(latest) with the base
# offset + 1 of the partition's newest record batch, not the high watermark, so
# a bounded read would stop short of a multi-record last batch. One filtered-out
# record per partition, produced alone after the events, makes that answer right.
KAFKA_PARTITIONS = 2
SENTINEL = b'{"event_type": "bench_end", "id": -1}\n'


def produce(args, topic, chunks, partition=None):
    command = [args.weir_bin, "produce", "--bootstrap-servers", args.kafka, "--topic", topic, "--timeout-secs", "60"]
    if partition is not None:
        command += ["--partition", str(partition)]
    producer = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for chunk in chunks:
        producer.stdin.write(chunk)
    producer.stdin.close()
    err = producer.stderr.read().decode(errors="replace")
    if producer.wait() != 0:
        raise BenchError(f"weir produce exited with {producer.returncode}: {err}")


def load_kafka(args, events_dir, topic, events):
    """Produces the first `events` lines of the event files to a new topic."""
    subprocess.run([args.tansu_bin, "topic", "create", topic, "--broker", f"tcp://{args.kafka}",
                    "--partitions", str(KAFKA_PARTITIONS)], check=True, stdout=subprocess.DEVNULL)
    t0 = time.perf_counter()

    def lines():
        left = events
        for name in sorted(os.listdir(events_dir)):
            with open(os.path.join(events_dir, name), "rb") as f:
                for line in f:
                    if left == 0:
                        return
                    left -= 1
                    yield line

    produce(args, topic, lines())
    for p in range(KAFKA_PARTITIONS):
        produce(args, topic, [SENTINEL], partition=p)
    return time.perf_counter() - t0


# --- DuckDB --------------------------------------------------------------------

def make_duckdb(events_dir, out_dir, events, expected):
    import duckdb
    con = duckdb.connect()
    con.execute("SET threads = 2")
    columns = ("{'event_type': 'VARCHAR', 'Host': 'VARCHAR', 'User-Agent': 'VARCHAR', 'Accept': 'VARCHAR', "
               "'ts': 'TIMESTAMP', 'id': 'BIGINT'}")
    seq = [0]

    def run():
        seq[0] += 1
        out = os.path.join(out_dir, f"duckdb-{seq[0]}.parquet")
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        con.execute(
            f"COPY (SELECT id, \"Host\", ts FROM read_json('{events_dir}/*.json', format = 'newline_delimited', "
            f"columns = {columns}) WHERE event_type = 'purchase_sword') TO '{out}' (FORMAT parquet)")
        secs = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        got = con.execute(f"SELECT count(*), sum(id), count(ts) FROM read_parquet('{out}')").fetchone()
        check("duckdb", got, expected)
        os.remove(out)
        return {"events": events, "secs": secs, "cpu": cpu, "other_cpu": [], "note": ""}

    return run, f"duckdb {duckdb.__version__}"


# --- Spark ---------------------------------------------------------------------

def make_spark(events_dir, out_dir, events, expected):
    import warnings
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    import pyspark
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import col
    from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

    t0 = time.perf_counter()
    spark = (SparkSession.builder.master("local[2]").appName("weir-ingest-bench")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "4g")
             .config("spark.sql.shuffle.partitions", "2")
             .config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    java = spark.sparkContext._jvm.java.lang.System.getProperty("java.version")
    print(f"spark session up in {time.perf_counter() - t0:.1f}s (JVM pid {jvm_pid}, not timed)", flush=True)
    schema = StructType([
        StructField("event_type", StringType()), StructField("Host", StringType()),
        StructField("User-Agent", StringType()), StructField("Accept", StringType()),
        StructField("ts", TimestampType()), StructField("id", LongType()),
    ])
    seq = [0]

    def run():
        seq[0] += 1
        out = os.path.join(out_dir, f"spark-{seq[0]}")
        checkpoint = os.path.join(out_dir, f"spark-{seq[0]}-checkpoint")
        stream = (spark.readStream.schema(schema).json(events_dir)
                  .filter(col("event_type") == "purchase_sword").select("id", "Host", "ts"))
        cpu0 = cpu_seconds(jvm_pid)
        t0 = time.perf_counter()
        query = (stream.writeStream.format("parquet").option("path", out).option("checkpointLocation", checkpoint)
                 .trigger(availableNow=True).start())
        query.awaitTermination()
        secs = time.perf_counter() - t0
        cpu = cpu_seconds(jvm_pid) - cpu0
        if query.exception() is not None:
            raise BenchError(f"spark: {query.exception()}")
        row = (spark.read.parquet(out).selectExpr("count(*)", "sum(id)", "count(ts)").collect()[0])
        check("spark", tuple(row), expected)
        shutil.rmtree(out)
        shutil.rmtree(checkpoint)
        return {"events": events, "secs": secs, "cpu": cpu, "other_cpu": [], "note": ""}

    def stop():
        spark.stop()

    return run, stop, f"pyspark {pyspark.__version__} (Java {java})"


# --- driver --------------------------------------------------------------------

def bench(name, fn, args):
    print(f"{name}: warm-up + {args.runs} runs", flush=True)
    results = []
    for i in range(args.runs + 1):
        r = fn()
        label = "warm-up" if i == 0 else f"run {i}"
        other = "".join(f", broker CPU {c:.2f}s" for c in r["other_cpu"])
        note = f", {r['note']}" if r["note"] else ""
        print(f"  {name} {label}: {r['events']} events in {r['secs']:.3f}s, {r['events'] / r['secs'] / 1e3:,.0f}k events/s, "
              f"CPU {r['cpu']:.2f}s{other}{note}", flush=True)
        if i > 0:
            results.append(r)
    return min(results, key=lambda r: r["secs"])


def main():
    args = parse_args()
    args.scratch = os.path.abspath(args.scratch)
    facts = machine_facts()
    print_machine(facts)
    events_dir = os.path.join(args.scratch, "events")
    out_dir = os.path.join(args.scratch, "out")
    os.makedirs(out_dir, exist_ok=True)

    t0 = time.perf_counter()
    expected, expected_kafka, size = generate(events_dir, args.events, args.files, args.kafka_events)
    print(f"events: {args.events} in {args.files} files, {size / 1e6:.1f} MB ({size / args.events:.0f} bytes/event), "
          f"{expected[0]} sword purchases; generated in {time.perf_counter() - t0:.1f}s (not timed) in {events_dir}",
          flush=True)

    versions = [f"python {platform.python_version()}"]
    best = {}
    weir = None
    try:
        if {"weir-file", "weir-delta", "weir-s3", "weir-s3-delta", "weir-kafka"} & set(args.only):
            weir = Weir(args)
            versions.append(weir.version())
        if {"weir-file", "weir-delta", "weir-s3", "weir-s3-delta"} & set(args.only):
            weir.create_stream("events_file", f"connector = 'file', path = '{events_dir}', format = 'json'")
        if "weir-file" in args.only:
            best["weir-file"] = bench("weir-file", lambda: weir.run_sink("events_file", args.events, expected), args)
        if "weir-delta" in args.only:
            # The same files and query, landing in a Delta table (one log
            # commit per epoch) instead of a Parquet directory.
            best["weir-delta"] = bench(
                "weir-delta", lambda: weir.run_sink("events_file", args.events, expected, stored_as="DELTA"), args)
        # The same again into a bucket of moto's S3 server (benches/ingest.sh
        # starts it and gives weir its endpoint through the environment).
        if "weir-s3" in args.only:
            best["weir-s3"] = bench(
                "weir-s3", lambda: weir.run_sink("events_file", args.events, expected, root="s3://bench"), args)
        if "weir-s3-delta" in args.only:
            best["weir-s3-delta"] = bench("weir-s3-delta", lambda: weir.run_sink(
                "events_file", args.events, expected, stored_as="DELTA", root="s3://bench"), args)
        if "weir-kafka" in args.only:
            secs = load_kafka(args, events_dir, "events", args.kafka_events)
            print(f"kafka: the first {args.kafka_events} events + {KAFKA_PARTITIONS} end markers produced to topic 'events' "
                  f"({KAFKA_PARTITIONS} partitions) in {secs:.1f}s (not timed)",
                  flush=True)
            weir.create_stream("events_kafka", f"connector = 'kafka', bootstrap_servers = '{args.kafka}', "
                               "topic = 'events', format = 'json', startup_mode = 'earliest'")
            best["weir-kafka"] = bench("weir-kafka", lambda: weir.run_sink(
                "events_kafka", args.kafka_events, expected_kafka, [args.tansu_pid], KAFKA_PARTITIONS), args)
        if weir is not None:
            print(f"weir peak RSS: {peak_rss_mb(args.weir_pid):.0f} MB")
        if "duckdb" in args.only:
            run, version = make_duckdb(events_dir, out_dir, args.events, expected)
            versions.append(version)
            best["duckdb"] = bench("duckdb", run, args)
        if "spark" in args.only:
            run, stop, version = make_spark(events_dir, out_dir, args.events, expected)
            versions.append(version)
            try:
                best["spark"] = bench("spark", run, args)
            finally:
                stop()
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 1

    report(args, facts, versions, best, size)
    return 0


def report(args, facts, versions, best, size):
    nproc = int(facts["nproc"])
    base = best.get("weir-file")
    print()
    print(f"machine: {facts['nproc']} cores ({facts['cpu']}), {facts['memory']}, Linux {facts['kernel']}; {facts['date']}")
    print("versions: " + "; ".join(versions))
    print(f"{args.events:,} events ({size / 1e6:.0f} MB JSON in {args.files} files) -> filter -> Parquet; "
          f"best of {args.runs} after a warm-up")
    if "weir-kafka" in best:
        print(f"weir-kafka reads the first {args.kafka_events:,} events from a 2-partition topic on tansu "
              "(in-memory storage) on the same machine; its CPU s leaves out the broker's, shown in brackets")
    print()
    print("| engine | events | best s | events/s | weir-file speed ÷ this | CPU s | events per CPU-s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in best.items():
        n = r["events"]
        rate = n / r["secs"]
        ratio = f"{(base['events'] / base['secs']) / rate:.2f}x" if base else "n/a"
        cpu_text = f"{r['cpu']:.2f}" + "".join(f" (+{c:.2f} broker)" for c in r["other_cpu"])
        print(f"| {name} | {n:,} | {r['secs']:.3f} | {rate / 1e3:,.0f}k | {ratio} | "
              f"{cpu_text} | {n / r['cpu'] / 1e3:,.0f}k |")
    print()
    verdict = lambda ok: "MET" if ok else "NOT MET"
    if base and "spark" in best:
        r = best["spark"]["secs"] / base["secs"]
        print(f"target weir-file >= 10x Spark: {r:.2f}x -> {verdict(r >= 10)}")
    if base and "duckdb" in best:
        r = best["duckdb"]["secs"] / base["secs"]
        print(f"target weir-file >= 0.8x DuckDB: {r:.2f}x -> {verdict(r >= 0.8)}")
    if "weir-kafka" in best:
        k = best["weir-kafka"]
        per_core = k["events"] / k["secs"] / nproc
        per_cpu = k["events"] / k["cpu"]
        print(f"target kafka >= 500k events/s per core: {per_core / 1e3:,.0f}k (events/s / {nproc} cores) -> "
              f"{verdict(per_core >= 5e5)}; {per_cpu / 1e3:,.0f}k per weir CPU-second -> {verdict(per_cpu >= 5e5)}")


if __name__ == "__main__":
    sys.exit(main())
