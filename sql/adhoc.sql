-- Ad-hoc SQL over Parquet: the Presto/Hive part of the classic stack.
-- Run with:  psql -h 127.0.0.1 -p 5433 -U weir -f sql/adhoc.sql
-- It writes its own Parquet files (relative paths land in weir's data dir),
-- declares tables over them, and queries them.

\echo '== writing sample Parquet files (two days of game events)'
COPY (SELECT * FROM (VALUES
        ('purchase_sword', 'user1.comcast.com', 'Mozilla/5.0', 5.0,  TIMESTAMP '2026-11-20 10:00:01'),
        ('join_guild',     'user2.att.com',     'curl/8.5',    NULL, TIMESTAMP '2026-11-20 10:00:05'),
        ('purchase_sword', 'user2.att.com',     'curl/8.5',    7.5,  TIMESTAMP '2026-11-20 10:02:00'))
      AS t(event_type, "Host", "User-Agent", price, ts))
  TO 'examples/events/day=2026-11-20/part-0.parquet' STORED AS PARQUET;
COPY (SELECT * FROM (VALUES
        ('purchase_sword', 'user1.comcast.com', 'Mozilla/5.0', 6.0,  TIMESTAMP '2026-11-21 09:30:00'),
        ('purchase_knife', 'user3.verizon.net', 'Mozilla/5.0', 2.0,  TIMESTAMP '2026-11-21 09:31:00'))
      AS t(event_type, "Host", "User-Agent", price, ts))
  TO 'examples/events/day=2026-11-21/part-0.parquet' STORED AS PARQUET;
COPY (SELECT * FROM (VALUES ('user1.comcast.com', 'gold'), ('user2.att.com', 'silver'))
      AS t("Host", tier))
  TO 'examples/hosts/hosts.parquet' STORED AS PARQUET;

\echo '== declaring tables (the catalog remembers them across restarts)'
CREATE EXTERNAL TABLE IF NOT EXISTS past_events
  STORED AS PARQUET PARTITIONED BY (day) LOCATION 'examples/events';
CREATE EXTERNAL TABLE IF NOT EXISTS hosts ("Host" TEXT, tier TEXT)
  STORED AS PARQUET LOCATION 'examples/hosts';

SHOW TABLES;
DESCRIBE past_events;

\echo '== sword purchases per host'
SELECT "Host", count(*) AS swords, sum(price) AS spent
FROM past_events WHERE event_type = 'purchase_sword'
GROUP BY "Host" ORDER BY swords DESC, "Host";

\echo '== joined with a dimension table, ranked per day'
SELECT day, e."Host", h.tier, price,
       rank() OVER (PARTITION BY day ORDER BY price DESC) AS rank_in_day
FROM past_events e LEFT JOIN hosts h ON e."Host" = h."Host"
WHERE price IS NOT NULL
ORDER BY day, rank_in_day;
