#!/usr/bin/env bash
# Memory of a release `roam serve`: resident set size (VmRSS) idle on an empty store, then
# with N accounts (default 100000, loaded by server/examples/bulk_load.rs through the real
# write path): idle after start, and after reading 2000 different accounts' bundles.
# Usage: bench/memory.sh [N=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
PORT=${ROAM_BENCH_PORT:-18458}
NAME="localhost:$PORT"
cargo build --release --quiet --bin roam
cargo build --release --quiet -p roam-server --example bulk_load
TARGET="${CARGO_TARGET_DIR:-target}/release"
DATA=$(mktemp -d)
SERVER=""
trap '[ -z "$SERVER" ] || kill $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
rss() { awk '/VmRSS/ {printf "%.1f MB", $2/1024}' "/proc/$1/status"; }
serve() {
  "$TARGET/roam" serve --listen "127.0.0.1:$PORT" --server-name "$NAME" --data-dir "$1" >"$DATA/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
  sleep 2
}
stop() { kill $SERVER; wait $SERVER 2>/dev/null || true; SERVER=""; }

serve "$DATA/empty"
echo "idle, empty store:                 $(rss $SERVER)"
stop
"$TARGET/examples/bulk_load" "$DATA/full" "$N" "$NAME"
echo "store file: $(du -h "$DATA/full/roam.redb" | cut -f1) for $N accounts"
serve "$DATA/full"
echo "idle, $N accounts:            $(rss $SERVER)"
curl -sf "http://127.0.0.1:$PORT/_roam/v1/export?limit=2000" | python3 -c '
import json, sys
for line in sys.stdin:
    did = json.loads(line)["did"]
    print(f"url = \"http://127.0.0.1:'"$PORT"'/_roam/v1/accounts/{did}\"\noutput = \"/dev/null\"")
' > "$DATA/urls"
curl -sf --no-progress-meter --parallel --parallel-max 16 -K "$DATA/urls" || { echo "reading bundles failed" >&2; exit 1; }
echo "after reading 2000 bundles:        $(rss $SERVER)"
stop
