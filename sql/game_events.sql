-- Scenario 1: game events. A web API logs JSON events to Kafka topic
-- `events`; a continuous query keeps only sword purchases and lands them as
-- Parquet every 2 seconds, exactly once; psql queries what landed. Mixed
-- event schemas and malformed lines on the topic do not break the query.
--
-- Needs a Kafka broker (default 127.0.0.1:9092, or psql -v kafka=host:port)
-- with a topic `events`, and events on it:  bash sql/produce_game_events.sh
-- Run with:  psql -h 127.0.0.1 -p 5433 -U weir -f sql/game_events.sql

\if :{?kafka}
\else
  \set kafka '127.0.0.1:9092'
\endif

\echo '== the stream: JSON events on Kafka, read from the beginning'
CREATE STREAM IF NOT EXISTS events (event_type TEXT, "Host" TEXT, "User-Agent" TEXT, ts TIMESTAMP)
  WITH (connector = 'kafka', bootstrap_servers = :'kafka', topic = 'events',
        format = 'json', startup_mode = 'earliest');

\echo '== a Parquet table, and a sink that keeps sword purchases in it'
CREATE EXTERNAL TABLE IF NOT EXISTS sword_purchases (event_type TEXT, "Host" TEXT, ts TIMESTAMP)
  STORED AS PARQUET LOCATION 'warehouse/sword_purchases';
CREATE SINK IF NOT EXISTS swords INTO sword_purchases AS
  SELECT event_type, "Host", ts FROM events WHERE event_type = 'purchase_sword'
  WITH (trigger = '2 seconds');

\echo '== waiting for a trigger or two'
\! sleep 5

\echo '== sword purchases per host (only committed files are visible)'
SELECT "Host", count(*) AS swords FROM sword_purchases GROUP BY 1 ORDER BY 1;

\echo '== the sink, and its last epochs (Spark''s lastProgress, in SQL)'
SHOW SINKS;
SELECT batch_id, input_rows, output_rows, error_rows, files_written
FROM weir.query_progress WHERE query = 'swords' ORDER BY batch_id DESC LIMIT 5;
