#!/usr/bin/env bash
# Load benchmark of a release `roam serve`, against a bare axum baseline in the same run:
# the baseline (`server/examples/bare_axum.rs`, a fixed 1 KiB JSON body from memory) and
# every read endpoint — GET /_matrix/key/v2/server, GET /account/whoami, POST /keys/query,
# GET /_roam/v1/users/{id} (bundle), GET /_roam/v1/accounts/{did} (bundle),
# GET /1.0/identifiers/{did} (DID resolution), POST /_roam/v1/query (bulk, 2 names) — each
# with wrk for DURATION seconds at CONNECTIONS connections. Prints requests/s, p50, p99 and
# the ratio to the baseline; the baseline runs first and last, so drift (other load on the
# machine) shows. Needs wrk (`apt-get install wrk`), python3 and openssl.
# Usage: bench/load.sh [DURATION=10] [CONNECTIONS=32] [THREADS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-32}
THREADS=${3:-2}
PORT=${ROAM_BENCH_PORT:-18448}
BASE_PORT=$((PORT + 1))
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet --bin roam
cargo build --release --quiet -p roam-server --example bare_axum
TARGET="${CARGO_TARGET_DIR:-target}/release"
ROAM_BIN="$TARGET/roam"
DATA=$(mktemp -d)
LOG="$DATA/server.log"
"$ROAM_BIN" serve --listen "127.0.0.1:$PORT" --server-name "localhost:$PORT" --data-dir "$DATA/server" >"$LOG" 2>&1 &
SERVER=$!
"$TARGET/examples/bare_axum" "127.0.0.1:$BASE_PORT" >"$DATA/baseline.log" 2>&1 &
BASELINE=$!
trap 'kill $SERVER $BASELINE 2>/dev/null; wait $SERVER $BASELINE 2>/dev/null; rm -rf "$DATA"' EXIT
for i in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && curl -sf "http://127.0.0.1:$BASE_PORT/" >/dev/null && break
  if [ "$i" = 100 ] || ! kill -0 $SERVER 2>/dev/null; then
    echo "server did not come up:" >&2; cat "$LOG" >&2; exit 1
  fi
  sleep 0.1
done
BASE="http://127.0.0.1:$PORT"
export ROAM_BENCH_USER="@bench:localhost:$PORT"
ROAM_BENCH_TOKEN=$(python3 bench/setup_user.py "$BASE" bench)
export ROAM_BENCH_TOKEN

# A portable account (a DID with its genesis) for the identity reads, made by the roam client.
export ROAM_KEYSTORE="$DATA/pbench.json" ROAM_PASSPHRASE=bench-passphrase ROAM_INSECURE_FAST_KDF=1
DID=$("$ROAM_BIN" key new --no-phrase --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["did"])')
"$ROAM_BIN" --allow-private-fetch --federation-override "localhost:$PORT=$BASE" \
  account create --homeserver "$BASE" --user pbench >/dev/null
PUSER="@pbench:localhost:$PORT"
PUSER_ENC=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$PUSER")
curl -sf "$BASE/_roam/v1/users/$PUSER_ENC" >/dev/null || { echo "no bundle for $PUSER" >&2; exit 1; }

echo "roam load benchmark: ${DURATION}s, $CONNECTIONS connections, $THREADS wrk threads, $(nproc) cores (server and wrk share them)"
printf '%-36s %12s %10s %10s %8s\n' endpoint "requests/s" p50 p99 "ratio"
BASE_RPS=""
run() {
  local name=$1; shift
  local out
  out=$(wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$@")
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$out" >&2
    echo "$name: non-2xx answers" >&2
    exit 1
  fi
  local rps p50 p99 ratio
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  [ -n "$BASE_RPS" ] || BASE_RPS=$rps
  ratio=$(python3 -c "print(f'{$rps / $BASE_RPS * 100:.0f}%')")
  printf '%-36s %12s %10s %10s %8s\n' "$name" "$rps" "$p50" "$p99" "$ratio"
}
run "baseline: bare axum (1 KiB)" "http://127.0.0.1:$BASE_PORT/"
run "GET /_matrix/key/v2/server" "$BASE/_matrix/key/v2/server"
run "GET /account/whoami" -s bench/whoami.lua "$BASE/_matrix/client/v3/account/whoami"
run "POST /keys/query" -s bench/keys_query.lua "$BASE/_matrix/client/v3/keys/query"
run "GET /_roam/v1/users/{id}" "$BASE/_roam/v1/users/$PUSER_ENC"
run "GET /_roam/v1/accounts/{did}" "$BASE/_roam/v1/accounts/$DID"
run "GET /1.0/identifiers/{did}" "$BASE/1.0/identifiers/$DID"
ROAM_BENCH_BODY="{\"user_ids\": [\"$PUSER\"], \"dids\": [\"$DID\"]}" \
  run "POST /_roam/v1/query (2 names)" -s bench/post_json.lua "$BASE/_roam/v1/query"
run "baseline again (drift check)" "http://127.0.0.1:$BASE_PORT/"
