#!/usr/bin/env bash
# The billing counters of a retail chain, reduced to their sales (scenario 4):
# JSON records {store, counter, amount, ts} on Kafka topic `sales`, from 5,000
# counters (store = (counter - 1) % 10 + 1, so 500 counters per store), two
# sales a second. Deterministic: the same part always writes the same sales.
# Needs a broker and `weir` (cargo build --release, or on PATH).
#
#   bash sql/produce_sales.sh [PART] [BOOTSTRAP] [TOPIC]
#   defaults: part 1, 127.0.0.1:9092, sales
#
# Part 1: sales 0..4999 (one per counter), 10:00:00 to 10:41:39, in time
#   order. Run sql/retail_sales.sql after it: the watermark stops at 10:31:39,
#   so the 10:00 and 10:15 windows close and the 10:30 window stays open.
# Part 2: counter 4242 comes back online and uploads two sales it kept while
#   offline, 10:36:00 (newer than the watermark: counted in the open 10:30
#   window) and 10:28:00 (older than the watermark: late, not counted); then
#   sales 5000..6699 continue, 10:41:40 to 10:55:49, which closes the 10:30
#   window. Run the script again (a restart in between changes nothing).
#
# Create the topic with one partition; every record goes to partition 0.
# Which sales are late depends on the order they are read in, and one
# partition keeps that order exact (another partition, left empty, would
# also hold the watermark back until it counts as idle).
set -euo pipefail
part="${1:-1}"
bootstrap="${2:-127.0.0.1:9092}"
topic="${3:-sales}"
. "$(dirname "${BASH_SOURCE[0]}")/weir_binary.sh"
weir="$(weir_binary)"

# Sale i: counter i % 5000 + 1, at 10:00:00 + i/2 seconds, 1.00 to 99.99.
sale() {
    local i=$1 counter=$(($1 % 5000 + 1)) secs=$(($1 / 2)) cents=$((100 + $1 * 7919 % 9900))
    printf '{"store": %d, "counter": %d, "amount": %d.%02d, "ts": "2026-11-23T%02d:%02d:%02d"}\n' \
        $(((counter - 1) % 10 + 1)) "$counter" $((cents / 100)) $((cents % 100)) \
        $((10 + secs / 3600)) $((secs / 60 % 60)) $((secs % 60))
}

case "$part" in
    1) for ((i = 0; i < 5000; i++)); do sale "$i"; done ;;
    2)
        echo '{"store": 2, "counter": 4242, "amount": 19.99, "ts": "2026-11-23T10:36:00"}'
        echo '{"store": 2, "counter": 4242, "amount": 5.00, "ts": "2026-11-23T10:28:00"}'
        for ((i = 5000; i < 6700; i++)); do sale "$i"; done
        ;;
    *) echo "usage: $0 [1|2] [BOOTSTRAP] [TOPIC]" >&2; exit 2 ;;
esac | "$weir" produce --bootstrap-servers "$bootstrap" --topic "$topic" --partition 0
