-- Scenario 2: word count over a socket of text lines, output mode complete.
-- weir connects to a line server (like Spark's socket source reading
-- `nc -lk 9999`), splits each line into words and keeps a running count per
-- word; every epoch writes the whole current result as a new version of the
-- view, and readers see exactly one version.
--
-- Start a line server first (default 127.0.0.1:9999, or psql -v port=N):
--   bash sql/produce_lines.sh          # verse 1 now, verse 2 to the next client
--   psql -h 127.0.0.1 -p 5433 -U weir -f sql/word_count.sql
-- Restart weir and run the script again: the counts from before the restart
-- come back from the last commit, and weir, connecting anew, reads verse 2.

\if :{?port}
\else
  \set port 9999
\endif

\echo '== the stream: text lines from the socket, one value column'
CREATE STREAM IF NOT EXISTS lines WITH (connector = 'socket', host = '127.0.0.1', port = :port);

\echo '== word counts: lower-case, punctuation out, split on spaces, counted (complete mode)'
CREATE MATERIALIZED VIEW IF NOT EXISTS word_counts AS
  SELECT word, count(*) AS n
  FROM (SELECT unnest(string_to_array(regexp_replace(lower(value), '[^a-z'']+', ' ', 'g'), ' ')) AS word
        FROM lines) words
  WHERE word <> ''
  GROUP BY word
  WITH (output_mode = 'complete');

\echo '== waiting for the lines'
\! sleep 4

\echo '== the most frequent words'
SELECT word, n FROM word_counts ORDER BY n DESC, word LIMIT 5;

\echo '== words and distinct words so far'
SELECT sum(n) AS words, count(*) AS distinct_words FROM word_counts;

\echo '== lines read so far'
SELECT sum(input_rows) AS lines_read FROM weir.query_progress WHERE query = 'word_counts';
