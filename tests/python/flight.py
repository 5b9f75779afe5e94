"""ADBC Flight SQL against weir's Arrow Flight SQL endpoint.

Usage: flight.py FLIGHT_PORT PASSWORD_FLIGHT_PORT SCRATCH_DIR
The second server was started with --password s3cret. Prints one
`ok <check>` / `FAIL <check>` line per check; exits 1 if any failed.
"""
import pathlib
import sys

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
from checkrun import run_checks

PORT, PW_PORT = int(sys.argv[1]), int(sys.argv[2])
SCRATCH = pathlib.Path(sys.argv[3]).resolve()
TLS_PORT = int(sys.argv[4])
URI = f"grpc://127.0.0.1:{PORT}"


def connect(port=PORT, **db_kwargs):
    return flightsql.connect(f"grpc://127.0.0.1:{port}", db_kwargs=db_kwargs or None, autocommit=True)


def check_ddl_and_table_through_flight():
    with connect() as conn, conn.cursor() as cur:
        cur.execute(
            f"COPY (SELECT v AS id, v * 1.5 AS price, concat('item-', CAST(v AS TEXT)) AS name "
            f"FROM range(0, 100) AS r(v)) TO '{SCRATCH}/items/part-0.parquet' STORED AS PARQUET"
        )
        cur.fetch_arrow_table()
        cur.execute(f"CREATE EXTERNAL TABLE items STORED AS PARQUET LOCATION '{SCRATCH}/items'")
        cur.fetch_arrow_table()
        cur.execute("SELECT count(*) AS n, sum(id) AS s FROM items")
        t = cur.fetch_arrow_table()
        assert t.to_pylist() == [{"n": 100, "s": 4950}], t.to_pylist()
        # Strings from Parquet (string views inside DataFusion) arrive as
        # plain strings, which every Arrow client reads.
        cur.execute("SELECT name, make_array(name) AS names FROM items WHERE id = 7")
        t = cur.fetch_arrow_table()
        assert t.schema.field("name").type == pa.string(), t.schema
        assert t.schema.field("names").type == pa.list_(pa.string()), t.schema
        assert t.to_pylist() == [{"name": "item-7", "names": ["item-7"]}], t.to_pylist()


def check_show_and_describe_through_flight():
    # The schema a statement announces is the schema of its rows: ADBC
    # refuses rows that do not match ("inconsistent schema").
    with connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE EXTERNAL TABLE shown (id BIGINT, name TEXT) STORED AS PARQUET LOCATION 'shown'")
        cur.fetch_arrow_table()
        cur.execute("SHOW TABLES")
        names = [r["name"] for r in cur.fetch_arrow_table().to_pylist()]
        assert "shown" in names, names
        cur.execute("DESCRIBE shown")
        columns = [(r["column_name"], r["data_type"]) for r in cur.fetch_arrow_table().to_pylist()]
        assert columns[:2] == [("id", "bigint"), ("name", "text")], columns
        cur.execute("SHOW CREATE TABLE shown")
        assert "CREATE EXTERNAL TABLE" in str(cur.fetch_arrow_table().to_pylist()), "SHOW CREATE TABLE"
        for statement in ["SHOW STREAMS", "SHOW SINKS", "SHOW MATERIALIZED VIEWS", "SHOW search_path"]:
            cur.execute(statement)
            cur.fetch_arrow_table()
        # Prepared first, as BI tools and the ADBC driver's own prepare do:
        # the prepared statement announces its schema before it runs.
        for statement, column in [("SHOW TABLES", "name"), ("DESCRIBE shown", "column_name")]:
            cur.adbc_prepare(statement)
            cur.execute(statement)
            rows = cur.fetch_arrow_table().to_pylist()
            assert rows and column in rows[0], (statement, rows)


def check_million_rows_as_arrow():
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT v, v * 2 AS w FROM range(0, 1000000) AS r(v)")
        t = cur.fetch_arrow_table()
        assert t.num_rows == 1_000_000, t.num_rows
        assert t.schema.field("v").type == pa.int64(), t.schema
        assert pa.compute.sum(t.column("w")).as_py() == 2 * sum(range(1_000_000))


def check_client_leaving_mid_result():
    # A client takes the first batch of a 100M-row result and hangs up; the
    # server must drop the query, and answer the next client in full.
    conn = connect()
    cur = conn.cursor()
    cur.execute("SELECT v FROM range(0, 100000000) AS r(v)")
    reader = cur.fetch_record_batch()
    assert reader.read_next_batch().num_rows > 0
    cur.close()
    conn.close()
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT v * 2 AS w FROM range(0, 1000000) AS r(v)")
        t = cur.fetch_arrow_table()
        assert pa.compute.sum(t.column("w")).as_py() == 2 * sum(range(1_000_000))


def check_prepared_statement_with_parameters():
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, name FROM items WHERE id > ? ORDER BY id", parameters=(96,))
        rows = cur.fetch_arrow_table().to_pylist()
        assert rows == [{"id": 97, "name": "item-97"}, {"id": 98, "name": "item-98"}, {"id": 99, "name": "item-99"}], rows
        # The same statement again with another value.
        cur.execute("SELECT id, name FROM items WHERE id > ? ORDER BY id", parameters=(98,))
        assert [r["id"] for r in cur.fetch_arrow_table().to_pylist()] == [99]


def check_get_objects_lists_tables_and_columns():
    with connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE OR REPLACE VIEW cheap_items AS SELECT id, name FROM items WHERE price < 10")
        cur.fetch_arrow_table()
        objects = conn.adbc_get_objects().read_all().to_pylist()
        # Views by type, as GetTables answers it.
        views = conn.adbc_get_objects(table_types_filter=["VIEW"]).read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "weir" in catalogs, list(catalogs)
    schemas = {s["db_schema_name"]: s for s in catalogs["weir"]["catalog_db_schemas"]}
    assert "public" in schemas, list(schemas)
    tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert "items" in tables, list(tables)
    columns = [c["column_name"] for c in tables["items"]["table_columns"]]
    assert columns == ["id", "price", "name"], columns
    assert tables["cheap_items"]["table_type"] == "VIEW", tables["cheap_items"]
    assert tables["items"]["table_type"] == "TABLE", tables["items"]
    view_names = [
        t["table_name"]
        for c in views
        for s in c["catalog_db_schemas"] or []
        for t in s["db_schema_tables"] or []
    ]
    assert view_names == ["cheap_items"], view_names


def check_error_carries_sqlstate():
    with connect() as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT * FROM no_such_table")
            cur.fetch_arrow_table()
        except Exception as e:  # the driver raises a DB-API error subclass
            assert "42P01" in str(e), str(e)
            # The SQLSTATE on its own too, which the driver passes on as
            # error details (it sets no e.sqlstate from anything a server
            # sends): the status's metadata, and its details (a
            # google.rpc.ErrorInfo whose reason is the SQLSTATE).
            details = [(k.decode() if isinstance(k, bytes) else k, v) for k, v in (getattr(e, "details", None) or [])]
            assert ("x-sqlstate", b"42P01") in details, details
            infos = [v for k, v in details if k == "grpc-status-details-bin"]
            assert any(b"google.rpc.ErrorInfo" in v and b"42P01" in v and b"weir.sqlstate" in v for v in infos), details
        else:
            raise AssertionError("query over a missing table succeeded")
        cur.execute("SELECT 1 AS one")
        assert cur.fetch_arrow_table().to_pylist() == [{"one": 1}]


def check_password_is_required():
    with connect(PW_PORT, username="weir", password="s3cret") as conn, conn.cursor() as cur:
        cur.execute("SELECT 41 + 1 AS answer")
        assert cur.fetch_arrow_table().to_pylist() == [{"answer": 42}]
    for kwargs in ({"username": "weir", "password": "wrong"}, {}):
        try:
            with connect(PW_PORT, **kwargs) as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetch_arrow_table()
        except Exception as e:
            assert "auth" in str(e).lower() or "unauthenticated" in str(e).lower(), str(e)
        else:
            raise AssertionError(f"connected without the right password: {kwargs}")


def check_tls_endpoint():
    # The certificate is self-signed: the client skips verification, as a
    # user would with a throwaway certificate.
    options = {"adbc.flight.sql.client_option.tls_skip_verify": "true"}
    with flightsql.connect(f"grpc+tls://127.0.0.1:{TLS_PORT}", db_kwargs=options, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT 'over tls' AS t")
        assert cur.fetch_arrow_table().to_pylist() == [{"t": "over tls"}]
        # Many frames through TLS and the server's coalesced socket writes.
        cur.execute("SELECT v FROM range(0, 1000000) AS r(v)")
        t = cur.fetch_arrow_table()
        assert t.num_rows == 1_000_000 and pa.compute.sum(t.column("v")).as_py() == sum(range(1_000_000))
    try:
        with connect(TLS_PORT) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetch_arrow_table()
    except Exception:
        pass
    else:
        raise AssertionError("plaintext gRPC reached the TLS endpoint")


CHECKS = [
    check_show_and_describe_through_flight,
    check_tls_endpoint,
    check_ddl_and_table_through_flight,
    check_million_rows_as_arrow,
    check_client_leaving_mid_result,
    check_prepared_statement_with_parameters,
    check_get_objects_lists_tables_and_columns,
    check_error_carries_sqlstate,
    check_password_is_required,
]


def main():
    return run_checks(CHECKS, "flight sql checks")

if __name__ == "__main__":
    sys.exit(main())
