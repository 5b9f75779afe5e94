-- Scenario 4: retail. 5,000 billing counters send their sales to Kafka topic
-- `sales`; a continuous query totals them per store every 15 minutes of
-- event time, with a 10-minute watermark, in append mode: each window's
-- totals land once, when the watermark passes the window's end. A late sale
-- within the watermark is still counted; one older than the watermark is
-- not counted, and kept aside in the table sales_15m_late.
--
-- Needs a Kafka broker (default 127.0.0.1:9092, or psql -v kafka=host:port)
-- with a topic `sales` of one partition. Then:
--   bash sql/produce_sales.sh 1      # 5,000 sales, 10:00:00 to 10:41:39
--   psql -h 127.0.0.1 -p 5433 -U weir -f sql/retail_sales.sql
--   bash sql/produce_sales.sh 2      # two late sales, then up to 10:55:49
--   psql -h 127.0.0.1 -p 5433 -U weir -f sql/retail_sales.sql
-- Restarting weir in between changes nothing: the open windows are part of
-- every commit and come back with the query.

\if :{?kafka}
\else
  \set kafka '127.0.0.1:9092'
\endif

\echo '== the stream: sales on Kafka, event time ts, watermark 10 minutes behind'
CREATE STREAM IF NOT EXISTS sales (store INT, counter INT, amount DECIMAL(10, 2), ts TIMESTAMP,
                                   WATERMARK FOR ts AS ts - INTERVAL '10 minutes')
  WITH (connector = 'kafka', bootstrap_servers = :'kafka', topic = 'sales',
        format = 'json', startup_mode = 'earliest');

\echo '== total per store every 15 minutes, written once per window; late sales kept aside'
CREATE MATERIALIZED VIEW IF NOT EXISTS sales_15m AS
  SELECT window_start, window_end, store, sum(amount) AS total, count(*) AS sales
  FROM TUMBLE(sales, ts, INTERVAL '15 minutes')
  GROUP BY window_start, window_end, store
  WITH (output_mode = 'append', late_rows = 'table');

\echo '== waiting for the query to read the topic'
\! sleep 5

\echo '== closed windows: stores, sales and revenue (a window appears once the watermark passes its end)'
SELECT window_start, window_end, count(*) AS stores, sum(sales) AS sales, sum(total) AS revenue
FROM sales_15m GROUP BY window_start, window_end ORDER BY window_start;

\echo '== the best store of each closed window'
SELECT window_start, store, total, sales
FROM (SELECT *, rank() OVER (PARTITION BY window_start ORDER BY total DESC) AS place FROM sales_15m) ranked
WHERE place = 1 ORDER BY window_start;

\echo '== the query: sales read, watermark, groups of open windows held in state, late sales'
SELECT sum(input_rows) AS sales_read, max(watermark) AS watermark,
       (SELECT state_rows FROM weir.query_progress WHERE query = 'sales_15m' ORDER BY batch_id DESC LIMIT 1) AS open_groups,
       sum(late_rows) AS late_sales
FROM weir.query_progress WHERE query = 'sales_15m';

\echo '== late sales, older than the watermark when they arrived (late_rows = ''table'')'
SELECT store, counter, amount, ts FROM sales_15m_late ORDER BY ts;
