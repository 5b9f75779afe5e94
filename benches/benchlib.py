"""What the benchmark drivers (benches/export.py, ingest.py, nexmark.py, tpch.py) share:
the machine's facts, a pgwire connection to weir, and process CPU time and
peak memory from /proc. They import it as `benchlib` (Python puts the
script's own directory, benches/, on sys.path).
"""
import datetime
import os
import platform
import subprocess


class BenchError(Exception):
    pass


# --- the machine ---------------------------------------------------------------

def machine_facts():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = next((f"{int(l.split()[1]) / 1024 / 1024:.1f} GiB" for l in f if l.startswith("MemTotal")), "unknown")
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": nproc, "cpu": cpu, "memory": mem, "kernel": platform.release(),
    }


def print_machine(facts):
    print(f"machine: nproc={facts['nproc']} cpu={facts['cpu']!r} memory={facts['memory']} "
          f"kernel={facts['kernel']} date={facts['date']}", flush=True)


# --- CPU and memory of a process -----------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --- weir ----------------------------------------------------------------------

def pg_connect(port):
    # Imported on first use, so that ingest.py's DuckDB- and Spark-only runs do not load it.
    import psycopg
    return psycopg.connect(f"host=127.0.0.1 port={port} user=weir dbname=weir", autocommit=True)


def log_tail(path, lines=30):
    if not path or not os.path.exists(path):
        return "(no server log)"
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


class Weir:
    """A connection to the weir under test, from args.pg_port; a failing
    statement raises BenchError with the tail of args.server_log."""

    def __init__(self, args):
        self.args = args
        self.conn = pg_connect(args.pg_port)
        self.seq = 0

    def sql(self, text):
        try:
            cur = self.conn.execute(text)
            return cur.fetchall() if cur.description else None
        except Exception as e:
            raise BenchError(f"weir: {text}\n  -> {e}\n--- server log tail ---\n{log_tail(self.args.server_log)}")
