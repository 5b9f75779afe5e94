-- Nexmark q5, q7 and q8 as RisingWave writes them, over weir's built-in
-- Nexmark generator (no producer needed), each checked against the same
-- question asked as a batch query over the landed bids, persons and
-- auctions.
--
--   psql -h 127.0.0.1 -p 5433 -U weir -f sql/nexmark.sql
--   psql ... -v events=2000000 -f sql/nexmark.sql     # more events (default 500,000)
--
-- The queries combine windows (a stream read twice, an aggregation of an
-- aggregation, a join of aggregations), so weir evaluates each window once,
-- when the watermark passes its end (see the README). The generator is
-- deterministic: every run gives the same rows.

\if :{?events}
\else
  \set events 500000
\endif

\echo '== three streams over one Nexmark event sequence (10 events per millisecond of event time)'
CREATE STREAM IF NOT EXISTS bid (auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
  WITH (connector = 'nexmark', table = 'bid', events = :'events');
CREATE STREAM IF NOT EXISTS person (id BIGINT, name TEXT, date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
  WITH (connector = 'nexmark', table = 'person', events = :'events');
CREATE STREAM IF NOT EXISTS auction (id BIGINT, seller BIGINT, date_time TIMESTAMP,
    WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
  WITH (connector = 'nexmark', table = 'auction', events = :'events');

\echo '== q5, hot items: the auctions with the most bids per sliding 10-second window'
CREATE MATERIALIZED VIEW IF NOT EXISTS nexmark_q5 AS
SELECT AuctionBids.auction, AuctionBids.num FROM (
  SELECT bid.auction, count(*) AS num, window_start AS starttime
  FROM HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds')
  GROUP BY window_start, bid.auction
) AS AuctionBids
JOIN (
  SELECT max(CountBids.num) AS maxn, CountBids.starttime_c
  FROM (
    SELECT count(*) AS num, window_start AS starttime_c
    FROM HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds')
    GROUP BY bid.auction, window_start
  ) AS CountBids
  GROUP BY CountBids.starttime_c
) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn
WITH (trigger = 'available_now');

\echo '== q7, highest bid: the bids equal to their 10-second window''s highest price'
CREATE MATERIALIZED VIEW IF NOT EXISTS nexmark_q7 AS
SELECT B.auction, B.price, B.bidder, B.date_time
FROM bid B
JOIN (
  SELECT max(price) AS maxprice, window_end AS date_time
  FROM TUMBLE(bid, date_time, INTERVAL '10 seconds')
  GROUP BY window_end
) B1 ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10 seconds' AND B1.date_time
WITH (trigger = 'available_now');

\echo '== q8, new users: people who opened an auction in the 10-second window they joined in'
CREATE MATERIALIZED VIEW IF NOT EXISTS nexmark_q8 AS
SELECT P.id, P.name, P.starttime
FROM (
  SELECT id, name, window_start AS starttime, window_end AS endtime
  FROM TUMBLE(person, date_time, INTERVAL '10 seconds')
  GROUP BY id, name, window_start, window_end
) P
JOIN (
  SELECT seller, window_start AS starttime, window_end AS endtime
  FROM TUMBLE(auction, date_time, INTERVAL '10 seconds')
  GROUP BY seller, window_start, window_end
) A ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime
WITH (trigger = 'available_now');

\echo '== and every event as it came, for the batch check'
CREATE MATERIALIZED VIEW IF NOT EXISTS nexmark_bids AS SELECT auction, price, date_time FROM bid WITH (trigger = 'available_now');
CREATE MATERIALIZED VIEW IF NOT EXISTS nexmark_persons AS SELECT id, name, date_time FROM person WITH (trigger = 'available_now');
CREATE MATERIALIZED VIEW IF NOT EXISTS nexmark_auctions AS SELECT seller, date_time FROM auction WITH (trigger = 'available_now');

\echo '== waiting until all six have read every event'
SELECT count(*) = 6 AS done FROM weir.queries WHERE name LIKE 'nexmark_%' AND status = 'finished' \gset
\if :done \else \! sleep 5
SELECT count(*) = 6 AS done FROM weir.queries WHERE name LIKE 'nexmark_%' AND status = 'finished' \gset
\endif
\if :done \else \! sleep 10
SELECT count(*) = 6 AS done FROM weir.queries WHERE name LIKE 'nexmark_%' AND status = 'finished' \gset
\endif
\if :done \else \! sleep 20
SELECT count(*) = 6 AS done FROM weir.queries WHERE name LIKE 'nexmark_%' AND status = 'finished' \gset
\endif
\if :done \else \! sleep 40
\endif
SELECT name, status FROM weir.queries WHERE name LIKE 'nexmark_%' ORDER BY name;

\echo '== how far event time got: windows up to the last watermark are closed'
SELECT query, max(watermark) AS watermark, sum(input_rows) AS rows_read, sum(output_rows) AS rows_written
FROM weir.query_progress WHERE query IN ('nexmark_q5', 'nexmark_q7', 'nexmark_q8') GROUP BY query ORDER BY query;

\echo '== q7: the top bids of the first closed windows'
SELECT date_time, auction, price FROM nexmark_q7 ORDER BY date_time, auction LIMIT 5;

\echo '== each query against the same question asked as a batch over the landed events (closed windows only)'
WITH wm AS (SELECT query, max(watermark) AS w FROM weir.query_progress GROUP BY query),
q5 AS (
  SELECT auction, date_bin(INTERVAL '2 seconds', date_time) - k.back AS starttime, count(*) AS num
  FROM nexmark_bids CROSS JOIN (VALUES (INTERVAL '0 seconds'), (INTERVAL '2 seconds'), (INTERVAL '4 seconds'),
                                       (INTERVAL '6 seconds'), (INTERVAL '8 seconds')) AS k(back)
  GROUP BY 1, 2),
q5_top AS (SELECT starttime, max(num) AS maxn FROM q5 GROUP BY starttime),
q7_max AS (SELECT date_bin(INTERVAL '10 seconds', date_time) + INTERVAL '10 seconds' AS wend, max(price) AS maxprice
           FROM nexmark_bids GROUP BY 1),
q8_p AS (SELECT DISTINCT id, name, date_bin(INTERVAL '10 seconds', date_time) AS starttime FROM nexmark_persons),
q8_a AS (SELECT DISTINCT seller, date_bin(INTERVAL '10 seconds', date_time) AS starttime FROM nexmark_auctions)
SELECT 'q5' AS query,
       (SELECT count(*) FROM nexmark_q5) AS weir_rows,
       (SELECT count(*) FROM q5 JOIN q5_top t ON q5.starttime = t.starttime AND q5.num >= t.maxn
        WHERE q5.starttime + INTERVAL '10 seconds' <= (SELECT w FROM wm WHERE query = 'nexmark_q5')) AS batch_rows
UNION ALL
SELECT 'q7',
       (SELECT count(*) FROM nexmark_q7),
       (SELECT count(*) FROM nexmark_bids b JOIN q7_max m ON b.price = m.maxprice
          AND b.date_time BETWEEN m.wend - INTERVAL '10 seconds' AND m.wend
        WHERE m.wend < (SELECT w FROM wm WHERE query = 'nexmark_q7'))
UNION ALL
SELECT 'q8',
       (SELECT count(*) FROM nexmark_q8),
       (SELECT count(*) FROM q8_p JOIN q8_a ON q8_p.id = q8_a.seller AND q8_p.starttime = q8_a.starttime
        WHERE q8_p.starttime + INTERVAL '10 seconds' <= (SELECT w FROM wm WHERE query = 'nexmark_q8'))
ORDER BY query;
