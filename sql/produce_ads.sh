#!/usr/bin/env bash
# Scenario 5's data: orders, ad impressions and clicks as JSON on three
# Kafka topics (`orders`, `impressions`, `clicks`). Deterministic, so the
# script's results are exact. Needs a broker and `weir` (cargo build, or on
# PATH).
#
#   bash sql/produce_ads.sh [BOOTSTRAP]        default 127.0.0.1:9092
set -euo pipefail
bootstrap="${1:-127.0.0.1:9092}"
. "$(dirname "${BASH_SOURCE[0]}")/weir_binary.sh"
weir="$(weir_binary)"
produce() { "$weir" produce --bootstrap-servers "$bootstrap" --topic "$1"; }

# Orders from customers 1-3, and one from customer 9, who is not in the
# customers table (yet).
printf '%s\n' \
    '{"order_id": 1, "customer_id": 1, "amount": 25.0, "ts": "2026-11-23T10:00:00Z"}' \
    '{"order_id": 2, "customer_id": 2, "amount": 12.5, "ts": "2026-11-23T10:01:00Z"}' \
    '{"order_id": 3, "customer_id": 1, "amount": 40.0, "ts": "2026-11-23T10:02:00Z"}' \
    '{"order_id": 4, "customer_id": 9, "amount": 99.0, "ts": "2026-11-23T10:03:00Z"}' \
    '{"order_id": 5, "customer_id": 3, "amount": 7.25, "ts": "2026-11-23T10:04:00Z"}' | produce orders

# Six impressions of two ads, five minutes apart from 10:00.
for i in 1 2 3 4 5 6; do
    ad=$(( i % 2 == 1 ? 100 : 200 ))
    printf '{"imp_id": %d, "ad_id": %d, "ts": "2026-11-23T10:%02d:00Z"}\n' "$i" "$ad" $(( (i - 1) * 5 ))
done | produce impressions

# Impression 1 is clicked after 10 minutes, 3 after 50, 6 after 55;
# impression 4's click comes two hours later, outside the one-hour bound.
# The last click, at 13:00, moves the clicks' watermark past every
# impression's hour, so the unclicked ones are written too.
printf '%s\n' \
    '{"imp_id": 1, "ts": "2026-11-23T10:10:00Z"}' \
    '{"imp_id": 3, "ts": "2026-11-23T11:00:00Z"}' \
    '{"imp_id": 6, "ts": "2026-11-23T11:20:00Z"}' \
    '{"imp_id": 4, "ts": "2026-11-23T12:15:00Z"}' \
    '{"imp_id": 99, "ts": "2026-11-23T13:00:00Z"}' | produce clicks
