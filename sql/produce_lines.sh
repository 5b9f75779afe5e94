#!/usr/bin/env bash
# A line server for the socket connector (scenario 2), in the role of
# `nc -lk 9999`: weir connects to it as a client and reads text lines. The
# first client to connect is sent the lines of the first FILE, the second
# client those of the second FILE, and so on; each connection is then held
# open (a closed connection makes weir reconnect). Later clients get nothing.
# Without FILEs, two verses of "Twinkle, Twinkle, Little Star" (Jane Taylor,
# 1806): verse 1 to the first client, verse 2 to the second, which is weir
# again after a restart. Sockets are not replayable: what weir had read
# before the restart is in its committed state, what it reads after is new.
# Runs until killed; needs python3 (or PYTHON=...).
#
#   bash sql/produce_lines.sh [PORT] [FILE ...]
#   default port 9999, on 127.0.0.1
set -euo pipefail
port="${1:-9999}"
shift $(($# > 0 ? 1 : 0))
exec "${PYTHON:-python3}" - "$port" "$@" <<'EOF'
import socket
import sys

VERSES = [
    "Twinkle, twinkle, little star,\nHow I wonder what you are!\n"
    "Up above the world so high,\nLike a diamond in the sky.\n",
    "When the blazing sun is gone,\nWhen he nothing shines upon,\n"
    "Then you show your little light,\nTwinkle, twinkle, all the night.\n",
]

port = int(sys.argv[1])
parts = [open(path, encoding="utf-8").read() for path in sys.argv[2:]] or VERSES
server = socket.create_server(("127.0.0.1", port))
print(f"serving {len(parts)} part(s) of lines on 127.0.0.1:{port}", flush=True)
held = []  # open connections; dropping one would close it
while True:
    conn, peer = server.accept()
    n = len(held)
    if n < len(parts):
        conn.sendall(parts[n].encode())
        print(f"client {n + 1} ({peer[0]}:{peer[1]}): sent part {n + 1}", flush=True)
    else:
        print(f"client {n + 1} ({peer[0]}:{peer[1]}): nothing left to send", flush=True)
    held.append(conn)
EOF
