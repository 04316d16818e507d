#!/usr/bin/env bash
# Runs the examples (pytest, then curl) against a fresh `vphone serve` on loopback with the
# built-in sandbox, then stops the server. `.ci/run` calls it; it also works by hand.
# Needs python3 with pytest and requests, curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin vphone
BIN="${CARGO_TARGET_DIR:-target}/debug/vphone"
WORK=$(mktemp -d)
"$BIN" serve --listen 127.0.0.1:0 --home "$WORK/home" >"$WORK/out" 2>"$WORK/err" &
PID=$!
stop() {
  # Ctrl-C is how `vphone serve` stops cleanly; KILL only if it has not within 5 s.
  kill -INT "$PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop EXIT

URL=""
for _ in $(seq 100); do # up to 10 s for the server to say where it listens
  URL=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$WORK/out" | head -n 1 || true)
  [ -n "$URL" ] && break
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/err" >&2; echo "vphone serve ended" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { echo "vphone serve did not start within 10 s" >&2; exit 1; }
export VPHONE_URL="$URL"
echo "vphone serve at $URL (pid $PID)"

PYTHONDONTWRITEBYTECODE=1 timeout 300 python3 -m pytest -q -p no:cacheprovider examples/python/test_vphone.py
timeout 120 bash examples/curl/approve.sh
