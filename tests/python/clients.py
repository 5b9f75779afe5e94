"""Real Python clients against a running weir server: psycopg 3 and SQLAlchemy 2.

Usage: clients.py PORT SCRATCH_DIR

Lands a small Parquet table `items` through the server (COPY ... TO ... STORED
AS PARQUET, then CREATE EXTERNAL TABLE), then runs every check below on its own
connection, reports each one, and exits 1 if any failed. Run by
tests/python_clients.rs with the venv that scripts/test.sh builds.
"""

import datetime
import decimal
import pathlib
import sys
import traceback

import psycopg
import sqlalchemy
from sqlalchemy import create_engine, inspect, text
from checkrun import run_checks

PORT = int(sys.argv[1])
SCRATCH = pathlib.Path(sys.argv[2]).resolve()
CONNINFO = f"host=127.0.0.1 port={PORT} user=weir dbname=weir connect_timeout=30"
TABLE = "items"

# items: a INT, b TEXT, f DOUBLE, flag BOOLEAN for value in 1..=5:
# a = value, b = 'item-<value>', f = value * 0.5, flag = value is even.
ROWS = [(v, f"item-{v}", v * 0.5, v % 2 == 0) for v in range(1, 6)]


def connect(**kwargs):
    return psycopg.connect(CONNINFO, **kwargs)


def create_fixture():
    table_dir = SCRATCH / TABLE
    table_dir.mkdir(parents=True, exist_ok=True)
    part = table_dir / "part-0.parquet"
    with connect(autocommit=True) as conn:
        conn.execute(
            "COPY (SELECT CAST(value AS INT) AS a,"
            " CONCAT('item-', CAST(value AS VARCHAR)) AS b,"
            " CAST(value AS DOUBLE) * 0.5 AS f,"
            " value % 2 = 0 AS flag"
            " FROM generate_series(1, 5))"
            f" TO '{part}' STORED AS PARQUET"
        )
        assert part.exists(), f"COPY reported success but {part} does not exist"
        conn.execute(
            f"CREATE EXTERNAL TABLE {TABLE} (a INT, b TEXT, f DOUBLE, flag BOOLEAN)"
            f" STORED AS PARQUET LOCATION '{table_dir}'"
        )


# --- psycopg 3 ----------------------------------------------------------------


def check_connect_and_select():
    # Default (non-autocommit) mode: psycopg wraps statements in BEGIN/COMMIT.
    with connect() as conn:
        rows = conn.execute(f"SELECT a, b, f, flag FROM {TABLE} ORDER BY a").fetchall()
        assert rows == ROWS, rows
        conn.commit()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.rollback()


def check_server_side_parameters():
    with connect() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT a, b FROM {TABLE} WHERE a = %s", (3,))
        assert cur.fetchall() == [(3, "item-3")]
        cur.execute(f"SELECT a FROM {TABLE} WHERE b = %s", ("item-4",))
        assert cur.fetchall() == [(4,)]
        # f >= 1.0 and even: a = 2 (f 1.0) and a = 4 (f 2.0).
        cur.execute(f"SELECT count(*) FROM {TABLE} WHERE f >= %s AND flag = %s", (1.0, True))
        assert cur.fetchone() == (2,)
        conn.rollback()


def check_prepared_statements():
    with connect() as conn:
        cur = conn.cursor()
        query = f"SELECT count(*) FROM {TABLE} WHERE a > %s"
        # prepare=True makes psycopg Parse a named statement once and Bind it
        # each time; repeat with different values to use it more than once.
        for bound, expected in [(1, 4), (3, 2), (0, 5), (5, 0), (1, 4)]:
            cur.execute(query, (bound,), prepare=True)
            assert cur.fetchone() == (expected,), (bound, expected)
        conn.rollback()


def check_binary_results():
    with connect() as conn:
        cur = conn.cursor(binary=True)
        cur.execute(
            "SELECT CAST(42 AS INT), CAST(9000000000 AS BIGINT), CAST(1.5 AS DOUBLE PRECISION), 'hi',"
            " true, TIMESTAMP '2024-01-02 03:04:05', DATE '2024-01-02',"
            " CAST(12.34 AS DECIMAL(10, 2))"
        )
        row = cur.fetchone()
        expected = (
            42,
            9000000000,
            1.5,
            "hi",
            True,
            datetime.datetime(2024, 1, 2, 3, 4, 5),
            datetime.date(2024, 1, 2),
            decimal.Decimal("12.34"),
        )
        types = (int, int, float, str, bool, datetime.datetime, datetime.date, decimal.Decimal)
        for i, (got, want, ty) in enumerate(zip(row, expected, types)):
            assert type(got) is ty, f"column {i}: {got!r} is {type(got).__name__}, want {ty.__name__}"
            assert got == want, f"column {i}: {got!r} != {want!r}"
        assert row[5].tzinfo is None, f"TIMESTAMP (without time zone) came back aware: {row[5]!r}"

        # Binary results with a bound parameter, over the Parquet table.
        cur.execute(f"SELECT a, b, f, flag FROM {TABLE} WHERE a >= %s ORDER BY a", (4,))
        assert cur.fetchall() == ROWS[3:]
        conn.rollback()


def check_version():
    with connect() as conn:
        (version,) = conn.execute("select version()").fetchone()
        assert isinstance(version, str) and version.strip(), repr(version)
        print(f"    version() = {version!r}")
        assert conn.info.server_version > 0, conn.info.server_version


def check_current_schema():
    with connect() as conn:
        assert conn.execute("select current_schema()").fetchone() == ("public",)


def check_transaction_isolation_level():
    with connect() as conn:
        (level,) = conn.execute("show transaction isolation level").fetchone()
        assert level.lower() == "read committed", repr(level)


def check_error_keeps_connection_usable():
    with connect() as conn:
        try:
            conn.execute("SELECT * FROM nope")
        except psycopg.errors.UndefinedTable:
            pass  # SQLSTATE 42P01, as PostgreSQL reports it
        except psycopg.Error as e:
            raise AssertionError(f"missing table should be 42P01, got {e.sqlstate}: {e}") from e
        else:
            raise AssertionError("SELECT * FROM nope succeeded")
        conn.rollback()
        assert conn.execute("SELECT 7").fetchone() == (7,)


# --- SQLAlchemy 2 -------------------------------------------------------------


def engine():
    return create_engine(
        f"postgresql+psycopg://weir@127.0.0.1:{PORT}/weir",
        connect_args={"connect_timeout": 30},
        poolclass=sqlalchemy.pool.NullPool,
    )


def check_sqlalchemy_connect_and_bound_select():
    eng = engine()
    try:
        with eng.connect() as conn:
            b = conn.execute(text(f"SELECT b FROM {TABLE} WHERE a = :a"), {"a": 2}).scalar_one()
            assert b == "item-2", repr(b)
            rows = conn.execute(
                text(f"SELECT a, flag FROM {TABLE} WHERE f >= :lo ORDER BY a"), {"lo": 2.0}
            ).all()
            assert [tuple(r) for r in rows] == [(4, True), (5, False)], rows
    finally:
        eng.dispose()


def check_sqlalchemy_inspect_tables():
    eng = engine()
    try:
        names = inspect(eng).get_table_names()
        assert TABLE in names, names
    finally:
        eng.dispose()


def check_sqlalchemy_inspect_columns():
    eng = engine()
    try:
        columns = inspect(eng).get_columns(TABLE)
        got = [(c["name"], type(c["type"])) for c in columns]
        names = [name for name, _ in got]
        assert names == ["a", "b", "f", "flag"], got
        want = [sqlalchemy.Integer, sqlalchemy.Text, sqlalchemy.Float, sqlalchemy.Boolean]
        for (name, ty), base in zip(got, want):
            assert issubclass(ty, base), f"column {name}: {ty.__name__} is not a {base.__name__}"
    finally:
        eng.dispose()


def check_sqlalchemy_reflects_a_whole_table():
    # Table(autoload_with=) runs every reflection query SQLAlchemy has:
    # columns, primary key, foreign keys, indexes, unique and check
    # constraints, comment. Weir tables have no keys, indexes or constraints.
    eng = engine()
    try:
        table = sqlalchemy.Table(TABLE, sqlalchemy.MetaData(), autoload_with=eng)
        assert [c.name for c in table.columns] == ["a", "b", "f", "flag"], table.columns
        assert list(table.primary_key.columns) == [], table.primary_key
        assert table.indexes == set() and table.foreign_keys == set(), (table.indexes, table.foreign_keys)
        insp = inspect(eng)
        assert insp.get_pk_constraint(TABLE)["constrained_columns"] == []
        assert insp.get_indexes(TABLE) == []
        assert insp.get_unique_constraints(TABLE) == []
        with eng.connect() as conn:
            rows = conn.execute(sqlalchemy.select(table.c.a, table.c.b).where(table.c.a == 3)).all()
        assert [tuple(r) for r in rows] == [(3, "item-3")], rows
    finally:
        eng.dispose()


CHECKS = [
    check_connect_and_select,
    check_server_side_parameters,
    check_prepared_statements,
    check_binary_results,
    check_version,
    check_current_schema,
    check_transaction_isolation_level,
    check_error_keeps_connection_usable,
    check_sqlalchemy_connect_and_bound_select,
    check_sqlalchemy_inspect_tables,
    check_sqlalchemy_inspect_columns,
    check_sqlalchemy_reflects_a_whole_table,
]


def main():
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), SQLAlchemy {sqlalchemy.__version__}")
    try:
        create_fixture()
    except Exception:
        print("FAIL create_fixture (no check can run without it)")
        traceback.print_exc(file=sys.stdout)
        return 1
    return run_checks(CHECKS, "python client checks")

if __name__ == "__main__":
    sys.exit(main())
