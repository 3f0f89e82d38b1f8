#!/usr/bin/env bash
# Load benchmark of a release `roam serve`: GET /_matrix/key/v2/server, GET /account/whoami
# and POST /keys/query, each with wrk for DURATION seconds at CONNECTIONS connections.
# Prints requests/s and the p50/p99 latencies. Needs wrk (`apt-get install wrk`), python3 and
# openssl. Usage: bench/load.sh [DURATION=10] [CONNECTIONS=32] [THREADS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-32}
THREADS=${3:-2}
PORT=${ROAM_BENCH_PORT:-18448}
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet --bin roam
ROAM_BIN="${CARGO_TARGET_DIR:-target}/release/roam"
DATA=$(mktemp -d)
LOG="$DATA/server.log"
"$ROAM_BIN" serve --listen "127.0.0.1:$PORT" --server-name "localhost:$PORT" --data-dir "$DATA" >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for i in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  if [ "$i" = 100 ] || ! kill -0 $SERVER 2>/dev/null; then
    echo "server did not come up:" >&2; cat "$LOG" >&2; exit 1
  fi
  sleep 0.1
done
BASE="http://127.0.0.1:$PORT"
export ROAM_BENCH_USER="@bench:localhost:$PORT"
ROAM_BENCH_TOKEN=$(python3 bench/setup_user.py "$BASE" bench)
export ROAM_BENCH_TOKEN

echo "roam load benchmark: ${DURATION}s, $CONNECTIONS connections, $THREADS wrk threads, $(nproc) cores (server and wrk share them)"
printf '%-28s %12s %10s %10s\n' endpoint "requests/s" p50 p99
run() {
  local name=$1; shift
  local out
  out=$(wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$@")
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$out" >&2
    echo "$name: non-2xx answers" >&2
    exit 1
  fi
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  printf '%-28s %12s %10s %10s\n' "$name" "$rps" "$p50" "$p99"
}
run "GET /_matrix/key/v2/server" "$BASE/_matrix/key/v2/server"
run "GET /account/whoami" -s bench/whoami.lua "$BASE/_matrix/client/v3/account/whoami"
run "POST /keys/query" -s bench/keys_query.lua "$BASE/_matrix/client/v3/keys/query"
