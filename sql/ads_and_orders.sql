-- Scenario 5: joins on streams.
--   * Orders from Kafka enriched with a static customers table
--     (stream-static; customers that land later are seen by later epochs).
--   * Ad impressions joined with the clicks that follow within one hour
--     (stream-stream, watermarks on both streams): the clicked pairs, and
--     every impression with its click or, once the clicks' watermark shows
--     none can come, without one.
--
-- Needs a Kafka broker (default 127.0.0.1:9092, or psql -v kafka=host:port)
-- with topics orders, impressions and clicks:  bash sql/produce_ads.sh
-- Run with:  psql -h 127.0.0.1 -p 5433 -U weir -f sql/ads_and_orders.sql

\if :{?kafka}
\else
  \set kafka '127.0.0.1:9092'
\endif

\echo '== the customers table (Parquet; relative paths land in the data dir)'
COPY (SELECT * FROM (VALUES (1, 'alice', 'gold'), (2, 'bob', 'silver'), (3, 'carol', 'gold'))
      AS t(customer_id, name, tier))
  TO 'examples/customers/customers.parquet' STORED AS PARQUET;
CREATE EXTERNAL TABLE IF NOT EXISTS customers (customer_id INT, name TEXT, tier TEXT)
  STORED AS PARQUET LOCATION 'examples/customers';

\echo '== three streams on Kafka; impressions and clicks with event-time watermarks'
CREATE STREAM IF NOT EXISTS orders (order_id INT, customer_id INT, amount DOUBLE, ts TIMESTAMP)
  WITH (connector = 'kafka', bootstrap_servers = :'kafka', topic = 'orders', startup_mode = 'earliest');
CREATE STREAM IF NOT EXISTS impressions (imp_id INT, ad_id INT, ts TIMESTAMP,
                                         WATERMARK FOR ts AS ts - INTERVAL '10 minutes')
  WITH (connector = 'kafka', bootstrap_servers = :'kafka', topic = 'impressions', startup_mode = 'earliest');
CREATE STREAM IF NOT EXISTS clicks (imp_id INT, ts TIMESTAMP,
                                    WATERMARK FOR ts AS ts - INTERVAL '10 minutes')
  WITH (connector = 'kafka', bootstrap_servers = :'kafka', topic = 'clicks', startup_mode = 'earliest');

\echo '== orders enriched with their customer (LEFT JOIN: unknown customers keep their order)'
CREATE MATERIALIZED VIEW IF NOT EXISTS enriched_orders AS
  SELECT o.order_id, o.amount, c.name, c.tier
  FROM orders o LEFT JOIN customers c ON o.customer_id = c.customer_id
  WITH (flush_interval = '500ms');

\echo '== impressions clicked within one hour'
CREATE MATERIALIZED VIEW IF NOT EXISTS ad_clicks AS
  SELECT i.imp_id, i.ad_id, i.ts AS shown_at, c.ts AS clicked_at
  FROM impressions i JOIN clicks c
    ON c.imp_id = i.imp_id AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '1 hour'
  WITH (flush_interval = '500ms');

\echo '== every impression, clicked or not'
CREATE MATERIALIZED VIEW IF NOT EXISTS ad_outcomes AS
  SELECT i.imp_id, i.ad_id, c.ts AS clicked_at
  FROM impressions i LEFT JOIN clicks c
    ON c.imp_id = i.imp_id AND c.ts BETWEEN i.ts AND i.ts + INTERVAL '1 hour'
  WITH (flush_interval = '500ms');

\echo '== waiting for the first epochs'
\! sleep 6

\echo '== enriched orders'
SELECT * FROM enriched_orders ORDER BY order_id;

\echo '== clicks within the hour'
SELECT * FROM ad_clicks ORDER BY imp_id;

\echo '== click-through per ad'
SELECT ad_id, count(*) AS impressions, count(clicked_at) AS clicks
FROM ad_outcomes GROUP BY ad_id ORDER BY ad_id;

\echo '== rows each join has read'
SELECT query, sum(input_rows) AS input_rows
FROM weir.query_progress WHERE query IN ('ad_clicks', 'ad_outcomes') GROUP BY query ORDER BY query;
