#!/usr/bin/env bash
# Tweets for the trending-hashtags scenario (3): JSON records {author, text, ts}
# on Kafka topic `tweets`, one every 30 seconds from 10:00:00 to 10:29:30,
# then one at 10:41:00 that moves the watermark past 10:40. The hashtags come
# in mixed case with punctuation around them; #weir starts trending at 10:10.
# Every seventh tweet arrives 50 seconds late (a phone that was offline),
# within the 1-minute watermark, so it still counts. Deterministic: the same
# tweets every run. Needs a broker and `weir` (cargo build --release, or on PATH).
#
#   bash sql/produce_tweets.sh [BOOTSTRAP] [TOPIC]
#   defaults: 127.0.0.1:9092, tweets
#
# Create the topic with one partition; every record goes to partition 0, so
# the tweets are read in the order they were sent and which of them are late
# is exact (another partition, left empty, would also hold the watermark
# back until it counts as idle).
set -euo pipefail
bootstrap="${1:-127.0.0.1:9092}"
topic="${2:-tweets}"
. "$(dirname "${BASH_SOURCE[0]}")/weir_binary.sh"
weir="$(weir_binary)"

texts=("Reading about #Streaming today." "#SQL is all you need!" "Who runs #kafka on a laptop?" "Rewriting it in #Rust, again.")
authors=(ana ben chen dara eli)
tweet() { # seconds after 10:00:00, author, text
    printf '{"author": "%s", "text": "%s", "ts": "2026-11-23T%02d:%02d:%02d"}\n' \
        "$2" "$3" $((10 + $1 / 3600)) $(($1 / 60 % 60)) $(($1 % 60))
}
{
    for ((i = 0; i < 60; i++)); do
        secs=$((i * 30))
        if ((i % 7 == 6)); then secs=$((secs - 50)); fi
        text="${texts[$((i % 4))]}"
        if ((i >= 40 || (i >= 20 && i % 2 == 0))); then text="$text Trying #weir."; fi
        tweet "$secs" "${authors[$((i % 5))]}" "$text"
    done
    tweet 2460 ana "Lunch. #food"
} | "$weir" produce --bootstrap-servers "$bootstrap" --topic "$topic" --partition 0
