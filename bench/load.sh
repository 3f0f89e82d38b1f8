#!/usr/bin/env bash
# Load benchmark of a release `roam serve`, against a bare axum baseline in the same run:
# the baseline (`server/examples/bare_axum.rs`, a fixed 1 KiB JSON body from memory) and
# every read endpoint — GET /_matrix/key/v2/server, GET /account/whoami, POST /keys/query,
# GET /_roam/v1/users/{id} (bundle), GET /_roam/v1/accounts/{did} (bundle),
# GET /1.0/identifiers/{did} (DID resolution), POST /_roam/v1/query (bulk, 2 names) — each
# with wrk for DURATION seconds at CONNECTIONS connections. Prints requests/s, p50, p99 and
# the ratio to the baseline; the baseline runs first and last, so drift (other load on the
# machine) shows. Needs wrk (`apt-get install wrk`), python3 and openssl.
#
# The store: redb (default), or ROAM_BENCH_STORE=postgres: a fresh database on the cluster
# scripts/pg.sh runs (started if needed). ROAM_BENCH_NODES=2 (PostgreSQL only) starts two
# `roam serve` nodes on that one database, as behind a load balancer, and splits the
# connections (and wrk threads) between them: requests/s is the sum, p50/p99 are node 1's.
# Usage: bench/load.sh [DURATION=10] [CONNECTIONS=32] [THREADS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-32}
THREADS=${3:-2}
PORT=${ROAM_BENCH_PORT:-18448}
BASE_PORT=$((PORT + 1))
PORT2=$((PORT + 2))
STORE=${ROAM_BENCH_STORE:-redb}
NODES=${ROAM_BENCH_NODES:-1}
case "$STORE:$NODES" in
  redb:1 | postgres:1 | postgres:2) ;;
  *) echo "ROAM_BENCH_STORE=redb|postgres, ROAM_BENCH_NODES=1 (or 2 with postgres)" >&2; exit 2 ;;
esac
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }

cargo build --release --quiet --bin roam
cargo build --release --quiet -p roam-server --example bare_axum
TARGET="${CARGO_TARGET_DIR:-target}/release"
ROAM_BIN="$TARGET/roam"
DATA=$(mktemp -d)
LOG="$DATA/server.log"
STORE_ARGS=(--data-dir "$DATA/server")
if [ "$STORE" = postgres ]; then
  # An assignment, not `eval "$(…)"`: a cluster that does not start stops the run here.
  pg_env=$(bash scripts/pg.sh start)
  eval "$pg_env"
  DB="roam_bench_$$"
  PSQL=$(ls /usr/lib/postgresql/*/bin/psql | head -n 1)
  "$PSQL" -q "$ROAM_TEST_DATABASE_URL" -c "CREATE DATABASE $DB"
  STORE_ARGS+=(--database-url "${ROAM_TEST_DATABASE_URL%/*}/$DB")
fi
"$ROAM_BIN" serve --listen "127.0.0.1:$PORT" --server-name "localhost:$PORT" "${STORE_ARGS[@]}" >"$LOG" 2>&1 &
SERVERS=$!
if [ "$NODES" = 2 ]; then
  "$ROAM_BIN" serve --listen "127.0.0.1:$PORT2" --server-name "localhost:$PORT" "${STORE_ARGS[@]}" >"$DATA/server2.log" 2>&1 &
  SERVERS="$SERVERS $!"
fi
"$TARGET/examples/bare_axum" "127.0.0.1:$BASE_PORT" >"$DATA/baseline.log" 2>&1 &
BASELINE=$!
cleanup() {
  kill $SERVERS $BASELINE 2>/dev/null
  wait $SERVERS $BASELINE 2>/dev/null
  if [ "$STORE" = postgres ]; then
    "$PSQL" -q "$ROAM_TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $DB" || true
  fi
  rm -rf "$DATA"
}
trap cleanup EXIT
# A node answers /health; the baseline serves only `/`.
up() { curl -sf "http://127.0.0.1:$1${2:-/health}" >/dev/null; }
for i in $(seq 300); do
  up "$PORT" && up "$BASE_PORT" / && { [ "$NODES" = 1 ] || up "$PORT2"; } && break
  if [ "$i" = 300 ]; then
    echo "servers did not come up:" >&2; cat "$DATA"/server*.log >&2; exit 1
  fi
  sleep 0.1
done
BASE="http://127.0.0.1:$PORT"
BASE2="http://127.0.0.1:$PORT2"
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

echo "roam load benchmark: $STORE, $NODES node(s), ${DURATION}s, $CONNECTIONS connections, $THREADS wrk threads, $(nproc) cores (servers, database and wrk share them)"
printf '%-36s %12s %10s %10s %8s\n' endpoint "requests/s" p50 p99 "ratio"
BASE_RPS=""
# wrk's output for `$@` (options, then the URL); with two nodes, the roam URLs are loaded
# on both at once (half the connections each) and the outputs concatenated, node 1 first.
load() {
  local url=${*: -1}
  local opts=("${@:1:$#-1}")
  if [ "$NODES" = 1 ] || [[ $url != "$BASE"* ]]; then
    wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "$@"
    return
  fi
  local t=$(((THREADS + 1) / 2)) c=$((CONNECTIONS / 2))
  wrk --latency -t"$t" -c"$c" -d"${DURATION}s" "${opts[@]}" "$url" >"$DATA/wrk1" &
  local w1=$!
  wrk --latency -t"$t" -c"$c" -d"${DURATION}s" "${opts[@]}" "$BASE2${url#"$BASE"}" >"$DATA/wrk2"
  wait $w1
  cat "$DATA/wrk1" "$DATA/wrk2"
}
run() {
  local name=$1; shift
  local out
  out=$(load "$@")
  if echo "$out" | grep -q "Non-2xx"; then
    echo "$out" >&2
    echo "$name: non-2xx answers" >&2
    exit 1
  fi
  local rps p50 p99 ratio
  rps=$(echo "$out" | awk '/Requests\/sec/ {s += $2} END {printf "%.2f", s}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2; exit}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2; exit}')
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
