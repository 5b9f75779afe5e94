-- Scenario 6: a directory as a stream. JSON files of orders dropped into a
-- folder are picked up once each; completed orders land as Parquet.
-- Run with:  psql -h 127.0.0.1 -p 5433 -U weir -f sql/orders_dir.sql
-- Relative paths live in weir's data directory. Drop more files in any time:
--   COPY (SELECT ...) TO 'incoming/orders/<name>.json' STORED AS JSON;
-- or move finished files into <data dir>/incoming/orders (never write them in
-- place: a half-written file would be read half).

\echo '== the stream: every JSON file that appears in incoming/orders'
CREATE STREAM IF NOT EXISTS order_files (order_id BIGINT, customer TEXT, status TEXT, amount DOUBLE, ts TIMESTAMP)
  WITH (connector = 'file', path = 'incoming/orders', format = 'json');

\echo '== completed orders, landed as Parquet by a continuous query'
CREATE MATERIALIZED VIEW IF NOT EXISTS completed_orders AS
  SELECT order_id, customer, amount, ts FROM order_files WHERE status = 'completed';

\echo '== two files of orders arrive (COPY TO writes each file whole, then renames it)'
COPY (SELECT * FROM (VALUES
        (1, 'alice', 'completed', 30.0, TIMESTAMP '2026-11-23 09:00:00'),
        (2, 'bob',   'cancelled', 12.5, TIMESTAMP '2026-11-23 09:05:00'),
        (3, 'alice', 'completed', 7.25, TIMESTAMP '2026-11-23 09:10:00')) AS t(order_id, customer, status, amount, ts))
  TO 'incoming/orders/orders-0900.json' STORED AS JSON;
COPY (SELECT * FROM (VALUES
        (4, 'carol', 'completed', 99.0, TIMESTAMP '2026-11-23 10:00:00'),
        (5, 'bob',   'pending',   5.0,  TIMESTAMP '2026-11-23 10:01:00')) AS t(order_id, customer, status, amount, ts))
  TO 'incoming/orders/orders-1000.json' STORED AS JSON;

\echo '== waiting for the next commit (default trigger: within about a second)'
\! sleep 3

\echo '== revenue per customer, from the landed Parquet'
SELECT customer, count(*) AS orders, sum(amount) AS revenue
FROM completed_orders GROUP BY customer ORDER BY customer;

\echo '== the query and its progress'
SELECT name, status, last_batch_id IS NOT NULL AS committed FROM weir.queries WHERE name = 'completed_orders';
SELECT sum(input_rows) AS rows_read, sum(output_rows) AS rows_landed FROM weir.query_progress WHERE query = 'completed_orders';
