-- Scenario 3: trending hashtags. Tweets arrive as JSON on Kafka topic
-- `tweets`; hashtags are extracted from the text and counted per sliding
-- window (10 minutes long, every 5 minutes) of event time, with a 1-minute
-- watermark. The counts land in a view, and are also written back to Kafka
-- topic `trending` as JSON, one record per hashtag and window, once the
-- window has closed.
--
-- Needs a Kafka broker (default 127.0.0.1:9092, or psql -v kafka=host:port)
-- with topics `tweets` (one partition) and `trending`, and tweets:
--   bash sql/produce_tweets.sh
-- Run with:  psql -h 127.0.0.1 -p 5433 -U weir -f sql/trending_hashtags.sql

\if :{?kafka}
\else
  \set kafka '127.0.0.1:9092'
\endif

\echo '== the stream: tweets on Kafka, event time ts, watermark 1 minute behind'
CREATE STREAM IF NOT EXISTS tweets (author TEXT, text TEXT, ts TIMESTAMP,
                                    WATERMARK FOR ts AS ts - INTERVAL '1 minute')
  WITH (connector = 'kafka', bootstrap_servers = :'kafka', topic = 'tweets',
        format = 'json', startup_mode = 'earliest');

\echo '== hashtag counts per 10-minute window, every 5 minutes (a window lands once closed)'
-- Lower-case the text, turn everything but letters, digits, _ and # into
-- spaces, split into words and keep those that start with #.
CREATE MATERIALIZED VIEW IF NOT EXISTS trending AS
  SELECT window_start, window_end, tag, count(*) AS tweets
  FROM (SELECT window_start, window_end,
               unnest(string_to_array(regexp_replace(lower(text), '[^a-z0-9_#]+', ' ', 'g'), ' ')) AS tag
        FROM HOP(tweets, ts, INTERVAL '5 minutes', INTERVAL '10 minutes')) words
  WHERE tag LIKE '#_%'
  GROUP BY window_start, window_end, tag
  WITH (output_mode = 'append');

\echo '== the same counts, written to Kafka topic trending as JSON'
CREATE SINK IF NOT EXISTS trending_to_kafka
  INTO KAFKA (bootstrap_servers = :'kafka', topic = 'trending') AS
  SELECT window_start, window_end, tag, count(*) AS tweets
  FROM (SELECT window_start, window_end,
               unnest(string_to_array(regexp_replace(lower(text), '[^a-z0-9_#]+', ' ', 'g'), ' ')) AS tag
        FROM HOP(tweets, ts, INTERVAL '5 minutes', INTERVAL '10 minutes')) words
  WHERE tag LIKE '#_%'
  GROUP BY window_start, window_end, tag
  WITH (output_mode = 'append');

\echo '== and read back from that topic, as raw JSON lines'
CREATE STREAM IF NOT EXISTS trending_json
  WITH (connector = 'kafka', bootstrap_servers = :'kafka', topic = 'trending',
        format = 'text', startup_mode = 'earliest');
CREATE MATERIALIZED VIEW IF NOT EXISTS trending_seen AS SELECT value FROM trending_json;

\echo '== waiting for the queries'
\! sleep 6

\echo '== hashtags of each closed window, most tweeted first'
SELECT window_start, window_end, string_agg(tag || ' ' || tweets, ', ' ORDER BY tweets DESC, tag) AS hashtags
FROM trending GROUP BY window_start, window_end ORDER BY window_start;

\echo '== #weir over time'
SELECT window_start, tweets FROM trending WHERE tag = '#weir' ORDER BY window_start;

\echo '== topic trending: one JSON record per hashtag and closed window'
SELECT count(*) AS records FROM trending_seen;
SELECT value FROM trending_seen WHERE value LIKE '%"window_start":"2026-11-23T10:20:00%' ORDER BY value;

\echo '== the queries'
SELECT name, kind, target, status FROM weir.queries WHERE stream IN ('tweets', 'trending_json') ORDER BY name;
SELECT query, sum(input_rows) AS rows_read, sum(output_rows) AS rows_written, sum(late_rows) AS late
FROM weir.query_progress WHERE query IN ('trending', 'trending_to_kafka') GROUP BY query ORDER BY query;
