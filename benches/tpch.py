"""TPC-H: the 22 queries over one set of Parquet files, through weir over
pgwire and over Flight SQL, and through in-process DataFusion and DuckDB.

Usage (normally run by benches/tpch.sh, which makes the data and starts the server):

    python benches/tpch.py --data DIR --pg-port P --flight-port F [--scale N] [--runs R]
        [--only q1,q17] [--engines weir-pg,weir-flight,datafusion,duckdb]

DIR holds one directory of Parquet files per table (DIR/lineitem/, ...). The
query texts are benches/tpch/qNN.sql; a file may hold several statements
(q15: CREATE VIEW, the query, DROP VIEW), and all of them are timed. Each
query runs once on each engine as a warm-up, then R timed runs; the best is
reported, in seconds, with the result fully fetched (rows as Python objects
over pgwire, an Arrow table everywhere else). The warm-up's result is checked
across engines: the row count, then every value once numbers are rounded to 2
decimals and rows are sorted (a difference of 0.01 or of one part in 10^9 is
float rounding, not a mismatch). At scale 1 the row counts are also checked
against the specification's answer set. A failure or a mismatch is printed
as it happens and listed again under the table; the run goes on.
"""
import argparse
import datetime
import decimal
import math
import os
import sys
import time

from benchlib import log_tail, machine_facts, pg_connect, print_machine

TABLES = ["lineitem", "orders", "customer", "part", "partsupp", "supplier", "nation", "region"]
ENGINES = {  # name -> column title, in the table's order
    "weir-pg": "weir pgwire s",
    "weir-flight": "weir flight s",
    "datafusion": "datafusion s",
    "duckdb": "duckdb s",
}
# Ratio columns: (numerator, denominator, title). Above 1, the numerator took longer.
RATIOS = [
    ("weir-pg", "datafusion", "weir pgwire ÷ datafusion"),
    ("weir-flight", "datafusion", "weir flight ÷ datafusion"),
    ("duckdb", "weir-pg", "duckdb ÷ weir pgwire"),
]
# Rows in the specification's answer set (scale factor 1, validation parameters).
SF1_ROWS = {
    1: 4, 2: 100, 3: 10, 4: 5, 5: 5, 6: 1, 7: 4, 8: 2, 9: 175, 10: 20, 11: 1048,
    12: 2, 13: 42, 14: 1, 15: 1, 16: 18314, 17: 1, 18: 57, 19: 1, 20: 186, 21: 100, 22: 7,
}
QUERY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tpch")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="directory with one Parquet directory per table")
    p.add_argument("--pg-port", type=int)
    p.add_argument("--flight-port", type=int)
    p.add_argument("--server-log", help="weir's log, whose tail is shown when a weir statement fails")
    p.add_argument("--scale", type=float, default=1.0, help="the data's scale factor (tpch.sh generates it)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="", help="comma list of queries (q1,q17 or 1,17); default all 22")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"comma list of {', '.join(ENGINES)}")
    p.add_argument("--versions", default="", help="versions to print (from tpch.sh: the crates weir is built with)")
    args = p.parse_args()
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown or not args.engines:
        p.error(f"unknown engine(s) {', '.join(unknown) or '(none)'}; expected some of: {', '.join(ENGINES)}")
    if "weir-pg" in args.engines and args.pg_port is None:
        p.error("weir-pg needs --pg-port")
    if "weir-flight" in args.engines and args.flight_port is None:
        p.error("weir-flight needs --flight-port")
    try:
        args.only = sorted({int(q.strip().lower().lstrip("q")) for q in args.only.split(",") if q.strip()}) or list(range(1, 23))
    except ValueError:
        p.error(f"--only takes query numbers such as q1,q17, not {args.only!r}")
    if any(q < 1 or q > 22 for q in args.only):
        p.error("--only: TPC-H has queries q1 to q22")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def load_query(n):
    """The statements of query n, comments dropped (no TPC-H text has ';' or '--' in a literal)."""
    with open(os.path.join(QUERY_DIR, f"q{n:02d}.sql")) as f:
        text = "\n".join(line for line in f.read().splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def is_ddl(sql):
    return sql.split(None, 1)[0].lower() in ("create", "drop")


def view_names(statements):
    """Views a query creates, to drop again if it fails half-way (q15's revenue0)."""
    names = []
    for s in statements:
        words = s.split()
        if [w.lower() for w in words[:2]] == ["create", "view"]:
            names.append(words[2])
    return names


# --- engines -------------------------------------------------------------------
# Each has ddl(sql), query(sql) -> a result as the client hands it over (all
# rows fetched), and rows(result) -> a list of tuples, outside the timing.

def arrow_rows(table):
    return list(zip(*(col.to_pylist() for col in table.columns))) if table.num_columns else []


def create_weir_tables(engine, data):
    """Tables are the server's, not a session's: the first weir engine set up
    creates them and the other finds them there."""
    for t in TABLES:
        engine.ddl(f"CREATE EXTERNAL TABLE IF NOT EXISTS {t} STORED AS PARQUET LOCATION '{os.path.join(data, t)}'")


class WeirPg:
    def __init__(self, args):
        self.conn = pg_connect(args.pg_port)
        create_weir_tables(self, args.data)

    def ddl(self, sql):
        self.conn.execute(sql)

    def query(self, sql):
        return self.conn.execute(sql).fetchall()

    def rows(self, result):
        return result

    def version(self):
        return None


class WeirFlight:
    def __init__(self, args):
        import adbc_driver_flightsql.dbapi as flightsql
        self.conn = flightsql.connect(f"grpc://127.0.0.1:{args.flight_port}", autocommit=True)
        self.cur = self.conn.cursor()
        create_weir_tables(self, args.data)

    def ddl(self, sql):
        # An update (CommandStatementUpdate), as a Flight SQL client sends DDL.
        self.cur.executescript(sql)

    def query(self, sql):
        self.cur.execute(sql)
        return self.cur.fetch_arrow_table()

    def rows(self, result):
        return arrow_rows(result)

    def version(self):
        return None


class DataFusion:
    def __init__(self, args):
        import datafusion
        self.module = datafusion
        self.ctx = datafusion.SessionContext()
        for t in TABLES:
            self.ctx.register_parquet(t, os.path.join(args.data, t))

    def ddl(self, sql):
        self.ctx.sql(sql).collect()

    def query(self, sql):
        df = self.ctx.sql(sql)
        return df.schema(), df.collect()

    def rows(self, result):
        import pyarrow as pa
        schema, batches = result
        return arrow_rows(pa.Table.from_batches(batches, schema=schema))

    def version(self):
        return f"datafusion (python) {self.module.__version__}"


class DuckDB:
    def __init__(self, args):
        import duckdb
        self.module = duckdb
        self.conn = duckdb.connect()
        for t in TABLES:
            self.conn.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{os.path.join(args.data, t)}/*.parquet')")

    def ddl(self, sql):
        self.conn.execute(sql)

    def query(self, sql):
        return self.conn.sql(sql).to_arrow_table()

    def rows(self, result):
        return arrow_rows(result)

    def version(self):
        return f"duckdb {self.module.__version__}"


CLASSES = {"weir-pg": WeirPg, "weir-flight": WeirFlight, "datafusion": DataFusion, "duckdb": DuckDB}


def run_once(engine, statements):
    result = None
    for sql in statements:
        if is_ddl(sql):
            engine.ddl(sql)
        else:
            result = engine.query(sql)
    return result


def measure(engine, statements, runs):
    """The warm-up's rows and the best of `runs` timed runs, in seconds."""
    try:
        rows = engine.rows(run_once(engine, statements))
        best = math.inf
        for _ in range(runs):
            start = time.perf_counter()
            run_once(engine, statements)
            best = min(best, time.perf_counter() - start)
        return rows, best
    except Exception:
        for name in view_names(statements):
            try:
                engine.ddl(f"DROP VIEW IF EXISTS {name}")
            except Exception:
                pass
        raise


# --- checking results ----------------------------------------------------------

def norm(v):
    """A value comparable across clients: numbers as floats rounded to 2 decimals, dates as text."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float, decimal.Decimal)):
        return round(float(v), 2)
    if isinstance(v, datetime.date):
        return v.isoformat()
    return str(v)


def sort_key(row):
    return tuple((0, "") if v is None else (1, v) if isinstance(v, float) else (2, str(v)) for v in row)


def normalized(rows):
    return sorted((tuple(norm(v) for v in row) for row in rows), key=sort_key)


def same_value(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= max(0.01, 1e-9 * max(abs(a), abs(b)))
    return a == b


def first_difference(ref, got):
    """None when the results agree; otherwise what differs, in a line."""
    if len(ref) != len(got):
        return f"{len(got)} rows, expected {len(ref)}"
    for i, (r, g) in enumerate(zip(ref, got)):
        if len(r) != len(g):
            return f"{len(g)} columns, expected {len(r)}"
        if not all(same_value(a, b) for a, b in zip(r, g)):
            return f"sorted row {i}: {g!r}, expected {r!r}"
    return None


# --- report --------------------------------------------------------------------

def fmt_s(t):
    return "error" if t is None else f"{t:.3f}"


def fmt_ratio(a, b):
    return "" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def print_table(args, times, checks):
    ratios = [r for r in RATIOS if r[0] in args.engines and r[1] in args.engines]
    header = ["query"] + [ENGINES[e] for e in args.engines] + [r[2] for r in ratios] + ["results"]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(args.engines) + len(ratios)) + "---|")
    complete = []
    for q in args.only:
        t = times[q]
        if all(t.get(e) is not None for e in args.engines):
            complete.append(q)
        cells = [f"q{q}"] + [fmt_s(t.get(e)) for e in args.engines]
        cells += [fmt_ratio(t.get(a), t.get(b)) for a, b, _ in ratios]
        cells.append(checks[q])
        print("| " + " | ".join(cells) + " |")
    for label, agg in (("geometric mean", geomean), ("sum", sum)):
        if not complete:
            break
        total = {e: agg([times[q][e] for q in complete]) for e in args.engines}
        what = f"{len(complete)} queries" if len(complete) == len(args.only) else \
            f"the {len(complete)} queries every engine ran"
        cells = [f"**{label}** ({what})"] + [f"**{fmt_s(total[e])}**" for e in args.engines]
        cells += [f"**{fmt_ratio(total[a], total[b])}**" for a, b, _ in ratios]
        cells.append("")
        print("| " + " | ".join(cells) + " |")


def main():
    args = parse_args()
    print_machine(machine_facts())
    engines = {}
    for name in args.engines:
        try:
            engines[name] = CLASSES[name](args)
        except Exception as e:
            sys.exit(f"error: could not set up {name}: {e}\n--- server log tail ---\n{log_tail(args.server_log)}"
                     if name.startswith("weir") else f"error: could not set up {name}: {e}")
    versions = [v for v in [args.versions] + [e.version() for e in engines.values()] if v]
    print(f"versions: {'; '.join(versions)}")
    print(f"TPC-H scale factor {args.scale:g}, data {args.data}; warm-up then best of {args.runs}, "
          f"seconds; engines: {', '.join(args.engines)}; a ratio A ÷ B is A's time over B's "
          f"(below 1x, A was faster)", flush=True)

    times = {q: {} for q in args.only}
    checks = {}
    problems = []
    wall = time.perf_counter()
    for q in args.only:
        statements = load_query(q)
        results = {}
        for name, engine in engines.items():
            try:
                rows, best = measure(engine, statements, args.runs)
            except Exception as e:
                message = str(e).strip()
                if name.startswith("weir"):
                    message += f"\n--- server log tail ---\n{log_tail(args.server_log, 10)}"
                problems.append(f"q{q} {name} FAILED: {message}")
                print(f"!!! q{q} {name} FAILED: {message}", file=sys.stderr, flush=True)
                continue
            times[q][name] = best
            results[name] = normalized(rows)
            print(f"q{q} {name}: {best:.3f} s, {len(rows)} row(s)", file=sys.stderr, flush=True)
        notes = []
        if results:
            ref_name = next(iter(results))
            ref = results[ref_name]
            for name, got in results.items():
                diff = first_difference(ref, got) if name != ref_name else None
                if diff:
                    notes.append(f"{name} ≠ {ref_name}")
                    problems.append(f"q{q} MISMATCH {name} vs {ref_name}: {diff}")
                    print(f"!!! q{q} MISMATCH {name} vs {ref_name}: {diff}", file=sys.stderr, flush=True)
            if args.scale == 1 and len(ref) != SF1_ROWS[q]:
                notes.append(f"{len(ref)} rows ≠ spec {SF1_ROWS[q]}")
                problems.append(f"q{q} {ref_name}: {len(ref)} rows, the answer set has {SF1_ROWS[q]}")
            if not notes:
                count = f"{len(ref)} row{'s' if len(ref) != 1 else ''}"
                notes.append(f"same, {count}" if len(results) > 1 else count)
        failed = [e for e in args.engines if e not in results]
        if failed:
            notes.append("failed: " + ", ".join(failed))
        checks[q] = "; ".join(notes)

    print()
    print_table(args, times, checks)
    print()
    print(f"run took {time.perf_counter() - wall:.0f} s")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print(f"- {p}")
        sys.exit(1)


if __name__ == "__main__":
    main()
