"""DataFrames from SELECTs: pandas through SQLAlchemy, polars through read_database.

Usage: dataframes.py PORT SCRATCH_DIR

Lands a Parquet table `sales` (5,000 rows of mixed types, with a few NULLs)
through the server (COPY (SELECT ...) TO ... STORED AS PARQUET, then CREATE
EXTERNAL TABLE), then runs every check below, reports each one as `ok NAME` or
`FAIL NAME` plus a traceback, and exits 1 if any failed. Every expected value
is recomputed here in Python from the same arithmetic the SQL uses, never read
back from the server. Run by tests/dataframes.rs with the venv that
scripts/test.sh builds.
"""

import datetime
import decimal
import importlib.util
import pathlib
import sys
import traceback

import pandas as pd
import polars as pl
import psycopg
import sqlalchemy as sa
from checkrun import run_checks

PORT = int(sys.argv[1])
SCRATCH = pathlib.Path(sys.argv[2]).resolve()
URL = f"postgresql+psycopg://weir@127.0.0.1:{PORT}/weir"
URI = f"postgresql://weir@127.0.0.1:{PORT}/weir"
TABLE = "sales"
N = 5000
STORE = 3
COLUMNS = ["id", "store", "amount", "sku", "returned", "sold_at", "sold_on", "price"]

# sales, one row per value in range(0, 5000). The SQL and the Python below must
# stay the same arithmetic.
SALES_SQL = (
    "SELECT value AS id,"  # BIGINT
    " value % 7 AS store,"  # BIGINT
    " CASE WHEN value % 1000 = 999 THEN NULL ELSE CAST(value AS DOUBLE) * 0.25 END AS amount,"
    " CASE WHEN value % 1250 = 3 THEN NULL ELSE concat('sku-', CAST(value % 100 AS VARCHAR)) END AS sku,"
    " value % 3 = 0 AS returned,"
    " CAST(to_timestamp_seconds(1704067200 + value * 60) AS TIMESTAMP) AS sold_at,"
    " DATE '2024-01-01' + CAST(value % 366 AS INT) AS sold_on,"
    " CAST(CAST(value * 7919 % 100000 AS DECIMAL(10, 2)) / 100 AS DECIMAL(10, 2)) AS price"
    f" FROM range(0, {N})"
)

EPOCH = datetime.datetime(2024, 1, 1)  # 1704067200 seconds, naive (TIMESTAMP)
DAY0 = datetime.date(2024, 1, 1)


def sale(v):
    return {
        "id": v,
        "store": v % 7,
        "amount": None if v % 1000 == 999 else v * 0.25,
        "sku": None if v % 1250 == 3 else f"sku-{v % 100}",
        "returned": v % 3 == 0,
        "sold_at": EPOCH + datetime.timedelta(minutes=v),
        "sold_on": DAY0 + datetime.timedelta(days=v % 366),
        "price": decimal.Decimal(v * 7919 % 100000).scaleb(-2),
    }


SALES = [sale(v) for v in range(N)]
STORE_ROWS = [r for r in SALES if r["store"] == STORE]
STORE_QUERY = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE store = :s ORDER BY id"

# Per-store aggregates, recomputed in Python. SUM and MAX skip NULLs; COUNT(col)
# counts non-NULLs.
AGG_QUERY = (
    "SELECT store, count(*) AS n, sum(amount) AS total, count(sku) AS skus,"
    " sum(price) AS revenue, max(sold_at) AS last_sold"
    f" FROM {TABLE} GROUP BY store ORDER BY store"
)


def expected_aggregates():
    out = []
    for s in range(7):
        rows = [r for r in SALES if r["store"] == s]
        out.append(
            {
                "store": s,
                "n": len(rows),
                "total": sum(r["amount"] for r in rows if r["amount"] is not None),
                "skus": sum(1 for r in rows if r["sku"] is not None),
                "revenue": sum((r["price"] for r in rows), decimal.Decimal("0.00")),
                "last_sold": max(r["sold_at"] for r in rows),
            }
        )
    return out


BIG = 1_000_000
BIG_QUERY = f"SELECT value AS id, value * 2 AS twice FROM range(0, {BIG})"


def engine():
    return sa.create_engine(
        URL,
        connect_args={"connect_timeout": 30},
        poolclass=sa.pool.NullPool,
    )


def create_fixture():
    table_dir = SCRATCH / TABLE
    table_dir.mkdir(parents=True, exist_ok=True)
    part = table_dir / "part-0.parquet"
    eng = engine()
    try:
        with eng.connect() as conn:
            conn.execute(sa.text(f"COPY ({SALES_SQL}) TO '{part}' STORED AS PARQUET"))
            assert part.exists(), f"COPY reported success but {part} does not exist"
            conn.execute(
                sa.text(f"CREATE EXTERNAL TABLE {TABLE} STORED AS PARQUET LOCATION '{table_dir}'")
            )
            conn.commit()
            n = conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one()
            assert n == N, n
    finally:
        eng.dispose()


def values(series):
    """A Series as plain Python values, missing values as None."""
    return [None if pd.isna(v) else v for v in series.tolist()]


def assert_column(name, got, want):
    assert len(got) == len(want), f"{name}: {len(got)} values, want {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w or type(g) is not type(w):
            raise AssertionError(f"{name}[{i}]: got {g!r} ({type(g).__name__}), want {w!r} ({type(w).__name__})")


# --- pandas -------------------------------------------------------------------

# pandas' read_sql defaults to coerce_float=True, which turns decimal.Decimal
# values into float64 (as it does against PostgreSQL); coerce_float=False keeps
# the Decimals in an object column.


def read_store_frame(**kwargs):
    eng = engine()
    try:
        return pd.read_sql(sa.text(STORE_QUERY), eng, params={"s": STORE}, **kwargs)
    finally:
        eng.dispose()


def check_pandas_read_sql_bound_parameter():
    df = read_store_frame()
    assert df.shape == (len(STORE_ROWS), len(COLUMNS)), df.shape
    assert list(df.columns) == COLUMNS, list(df.columns)
    dtypes = {c: str(t) for c, t in df.dtypes.items()}
    assert dtypes["id"] == "int64", dtypes
    assert dtypes["store"] == "int64", dtypes
    assert dtypes["amount"] == "float64", dtypes  # a NULL becomes NaN
    assert pd.api.types.is_string_dtype(df["sku"]), dtypes  # object (pandas 2) or str (pandas 3)
    assert dtypes["returned"] == "bool", dtypes
    assert pd.api.types.is_datetime64_dtype(df["sold_at"]), dtypes  # naive: TIMESTAMP
    assert dtypes["sold_on"] == "object", dtypes  # datetime.date values
    assert dtypes["price"] == "float64", dtypes  # coerce_float=True

    assert_column("id", df["id"].tolist(), [r["id"] for r in STORE_ROWS])
    assert set(df["store"].tolist()) == {STORE}
    assert_column("amount", values(df["amount"]), [r["amount"] for r in STORE_ROWS])
    assert df["amount"].isna().sum() == sum(r["amount"] is None for r in STORE_ROWS) > 0
    assert_column("sku", values(df["sku"]), [r["sku"] for r in STORE_ROWS])
    assert df["sku"].isna().sum() == sum(r["sku"] is None for r in STORE_ROWS) > 0
    assert_column("returned", df["returned"].tolist(), [r["returned"] for r in STORE_ROWS])
    got_ts = [t.to_pydatetime() for t in df["sold_at"]]
    assert_column("sold_at", got_ts, [r["sold_at"] for r in STORE_ROWS])
    assert_column("sold_on", df["sold_on"].tolist(), [r["sold_on"] for r in STORE_ROWS])
    assert_column("price", df["price"].tolist(), [float(r["price"]) for r in STORE_ROWS])


def check_pandas_read_sql_decimals_kept():
    df = read_store_frame(coerce_float=False)
    assert str(df["price"].dtype) == "object", df.dtypes
    assert_column("price", df["price"].tolist(), [r["price"] for r in STORE_ROWS])
    # Scale 2 is kept: 791.90 comes back as Decimal('791.90'), not Decimal('791.9').
    assert all(p.as_tuple().exponent == -2 for p in df["price"]), df["price"].head().tolist()


def check_pandas_read_sql_aggregates():
    eng = engine()
    try:
        df = pd.read_sql(sa.text(AGG_QUERY), eng, coerce_float=False)
    finally:
        eng.dispose()
    want = expected_aggregates()
    assert list(df.columns) == ["store", "n", "total", "skus", "revenue", "last_sold"], list(df.columns)
    assert df.shape == (7, 6), df.shape
    dtypes = {c: str(t) for c, t in df.dtypes.items()}
    for c in ["store", "n", "skus"]:
        assert dtypes[c] == "int64", dtypes
    assert dtypes["total"] == "float64", dtypes
    assert dtypes["revenue"] == "object", dtypes  # sum(numeric) is numeric
    assert pd.api.types.is_datetime64_dtype(df["last_sold"]), dtypes
    for c in ["store", "n", "total", "skus", "revenue"]:
        assert_column(c, df[c].tolist(), [w[c] for w in want])
    assert_column("last_sold", [t.to_pydatetime() for t in df["last_sold"]], [w["last_sold"] for w in want])
    assert df["n"].sum() == N


def check_pandas_read_sql_pyarrow_backend():
    df = read_store_frame(dtype_backend="pyarrow")
    assert df.shape == (len(STORE_ROWS), len(COLUMNS)), df.shape
    types = {c: str(t) for c, t in df.dtypes.items()}
    # sold_on is left out: pandas turns an object column of datetime.date
    # into string[pyarrow] here, against PostgreSQL too.
    want = {
        "id": "int64[pyarrow]",
        "store": "int64[pyarrow]",
        "amount": "double[pyarrow]",
        "sku": "string[pyarrow]",
        "returned": "bool[pyarrow]",
        "sold_at": "timestamp[us][pyarrow]",
        "price": "double[pyarrow]",
    }
    assert {c: types[c] for c in want} == want, types
    assert_column("amount", values(df["amount"].astype(object)), [r["amount"] for r in STORE_ROWS])
    assert_column("sku", values(df["sku"].astype(object)), [r["sku"] for r in STORE_ROWS])
    assert_column("price", df["price"].tolist(), [float(r["price"]) for r in STORE_ROWS])


def check_pandas_read_sql_table():
    # read_sql_table reflects the table through SQLAlchemy (columns, primary
    # key, indexes and unique constraints from pg_catalog), then SELECTs every
    # column; DATE columns come back as datetime64 and numeric as float64, as
    # they do against PostgreSQL.
    eng = engine()
    try:
        df = pd.read_sql_table(TABLE, eng)
    finally:
        eng.dispose()
    assert list(df.columns) == COLUMNS, list(df.columns)
    assert df.shape == (N, len(COLUMNS)), df.shape
    df = df.sort_values("id").reset_index(drop=True)
    dtypes = {c: str(t) for c, t in df.dtypes.items()}
    assert dtypes["id"] == "int64", dtypes
    assert dtypes["amount"] == "float64", dtypes
    assert dtypes["returned"] == "bool", dtypes
    assert dtypes["price"] == "float64", dtypes
    assert pd.api.types.is_datetime64_dtype(df["sold_at"]), dtypes
    assert pd.api.types.is_datetime64_dtype(df["sold_on"]), dtypes
    assert_column("id", df["id"].tolist(), list(range(N)))
    assert_column("amount", values(df["amount"]), [r["amount"] for r in SALES])
    assert_column("sku", values(df["sku"]), [r["sku"] for r in SALES])
    assert_column("sold_at", [t.to_pydatetime() for t in df["sold_at"]], [r["sold_at"] for r in SALES])
    assert_column("sold_on", [t.date() for t in df["sold_on"]], [r["sold_on"] for r in SALES])
    assert_column("price", df["price"].tolist(), [float(r["price"]) for r in SALES])


def check_sqlalchemy_reflects_numeric_precision():
    # Table reflection (what read_sql_table builds on) should see DECIMAL(10, 2)
    # as NUMERIC(10, 2): pg_attribute.atttypmod carries precision and scale.
    eng = engine()
    try:
        columns = {c["name"]: c["type"] for c in sa.inspect(eng).get_columns(TABLE)}
    finally:
        eng.dispose()
    price = columns["price"]
    assert isinstance(price, sa.Numeric), repr(price)
    assert (price.precision, price.scale) == (10, 2), f"price reflected as {price!r}, want NUMERIC(10, 2)"


def check_pandas_one_million_rows():
    eng = engine()
    try:
        df = pd.read_sql(sa.text(BIG_QUERY), eng)
    finally:
        eng.dispose()
    assert len(df) == BIG, len(df)
    assert str(df["id"].dtype) == "int64" and str(df["twice"].dtype) == "int64", df.dtypes
    assert int(df["id"].sum()) == BIG * (BIG - 1) // 2, int(df["id"].sum())
    assert int(df["twice"].sum()) == BIG * (BIG - 1), int(df["twice"].sum())
    assert df["id"].nunique() == BIG


# --- polars -------------------------------------------------------------------

POLARS_SCHEMA = {
    "id": pl.Int64,
    "store": pl.Int64,
    "amount": pl.Float64,
    "sku": pl.String,
    "returned": pl.Boolean,
    "sold_on": pl.Date,
}


def assert_polars_store_frame(df):
    assert df.columns == COLUMNS, df.columns
    assert df.height == len(STORE_ROWS), df.shape
    schema = dict(df.schema)
    for name, dtype in POLARS_SCHEMA.items():
        assert schema[name] == dtype, f"{name}: {schema[name]} (want {dtype}); schema {schema}"
    assert isinstance(schema["sold_at"], pl.Datetime) and schema["sold_at"].time_zone is None, schema
    assert isinstance(schema["price"], pl.Decimal) and schema["price"].scale == 2, schema
    for name in COLUMNS:
        assert_column(name, df[name].to_list(), [r[name] for r in STORE_ROWS])


def assert_polars_aggregates(df):
    want = expected_aggregates()
    assert df.columns == ["store", "n", "total", "skus", "revenue", "last_sold"], df.columns
    for name in ["store", "n", "skus"]:
        assert df.schema[name] == pl.Int64, df.schema
    assert df.schema["total"] == pl.Float64, df.schema
    assert isinstance(df.schema["revenue"], pl.Decimal), df.schema
    assert isinstance(df.schema["last_sold"], pl.Datetime), df.schema
    for name in df.columns:
        assert_column(name, df[name].to_list(), [w[name] for w in want])


def require_greenlet():
    # polars.read_database, handed any SQLAlchemy object, imports
    # sqlalchemy.ext.asyncio, which SQLAlchemy 2.1 only ships working with
    # greenlet (the sqlalchemy[asyncio] extra).
    if importlib.util.find_spec("greenlet") is None:
        raise AssertionError(
            "polars.read_database(connection=<SQLAlchemy Engine>) needs the 'greenlet' package"
            " (SQLAlchemy[asyncio]), which this venv lacks; add it to py_requirements in scripts/test.sh"
        )


def check_polars_read_database_engine():
    require_greenlet()
    eng = engine()
    try:
        df = pl.read_database(
            sa.text(STORE_QUERY), connection=eng, execute_options={"parameters": {"s": STORE}}
        )
        assert_polars_store_frame(df)
        assert_polars_aggregates(pl.read_database(AGG_QUERY, connection=eng))
    finally:
        eng.dispose()


def check_polars_read_database_psycopg():
    # The same frames through a plain DB-API connection (no SQLAlchemy).
    with psycopg.connect(f"host=127.0.0.1 port={PORT} user=weir dbname=weir connect_timeout=30") as conn:
        df = pl.read_database(
            STORE_QUERY.replace(":s", "%(s)s"), connection=conn, execute_options={"params": {"s": STORE}}
        )
        assert_polars_store_frame(df)
        assert_polars_aggregates(pl.read_database(AGG_QUERY, connection=conn))


def check_polars_read_database_uri():
    # read_database_uri's default engine is connectorx; engine="adbc" needs
    # adbc-driver-postgresql. Neither is in the test venv: say so and skip.
    if importlib.util.find_spec("connectorx") is None:
        print("    skip: polars.read_database_uri needs connectorx, which is not installed")
        return
    df = pl.read_database_uri(STORE_QUERY.replace(":s", str(STORE)), URI)
    assert_polars_store_frame(df)
    assert_polars_aggregates(pl.read_database_uri(AGG_QUERY, URI))


CHECKS = [
    check_pandas_read_sql_bound_parameter,
    check_pandas_read_sql_decimals_kept,
    check_pandas_read_sql_aggregates,
    check_pandas_read_sql_pyarrow_backend,
    check_pandas_read_sql_table,
    check_sqlalchemy_reflects_numeric_precision,
    check_pandas_one_million_rows,
    check_polars_read_database_engine,
    check_polars_read_database_psycopg,
]

# Not covered: polars.read_database_uri, whose engines (connectorx, or ADBC's
# PostgreSQL driver) are not installed.


def main():
    print(f"pandas {pd.__version__}, polars {pl.__version__}, SQLAlchemy {sa.__version__}")
    try:
        create_fixture()
    except Exception:
        print("FAIL create_fixture (no check can run without it)")
        traceback.print_exc(file=sys.stdout)
        return 1
    return run_checks(CHECKS, "dataframe checks")

if __name__ == "__main__":
    sys.exit(main())
