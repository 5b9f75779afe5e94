#!/usr/bin/env bash
# The game's web API, reduced to its log: N JSON events on Kafka topic
# `events`, mixed event types with different schemas, and the odd malformed
# line (scenario 1). Every record goes to partition 0, as with the other
# producers, so a run reads them in the order written. Needs a broker and
# `weir` (cargo build --release, or on PATH).
#
#   bash sql/produce_game_events.sh [N] [BOOTSTRAP] [TOPIC]
#   defaults: 30 events, 127.0.0.1:9092, events
set -euo pipefail
n="${1:-30}"
bootstrap="${2:-127.0.0.1:9092}"
topic="${3:-events}"
. "$(dirname "${BASH_SOURCE[0]}")/weir_binary.sh"
weir="$(weir_binary)"

hosts=(user1.comcast.com user2.att.com user3.verizon.net)
for ((i = 0; i < n; i++)); do
    host="${hosts[$((i % 3))]}"
    ts="2026-11-23T10:$(printf '%02d' $((i / 60 % 60))):$(printf '%02d' $((i % 60)))Z"
    case $((i % 3)) in
        0) printf '{"event_type": "purchase_sword", "Host": "%s", "User-Agent": "curl/7.47.0", "sword_type": "claymore", "ts": "%s"}\n' "$host" "$ts" ;;
        1) printf '{"event_type": "join_guild", "Host": "%s", "guild": "knights", "ts": "%s"}\n' "$host" "$ts" ;;
        2) printf '{"event_type": "purchase_knife", "Host": "%s", "ts": "%s"}\n' "$host" "$ts" ;;
    esac
    if ((i % 10 == 9)); then
        echo 'GET /purchase_sword HTTP/1.1 (not JSON: an old client)'
    fi
done | "$weir" produce --bootstrap-servers "$bootstrap" --topic "$topic" --partition 0
