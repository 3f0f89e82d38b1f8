#!/usr/bin/env bash
# Installs the matrix-js-sdk real-client test's npm side into tests/js-sdk/node_modules with
# `npm ci` from the committed package-lock.json (pinned versions and integrity hashes).
# Idempotent and quiet: does nothing when node_modules already matches the lock file.
# Fails loudly when node or npm is missing: the test needs them and never skips.
set -euo pipefail
cd "$(dirname "$0")/../tests/js-sdk"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup-node.sh: '$tool' is not installed; the matrix-js-sdk test needs Node.js >= 20 with npm" >&2
    exit 1
  fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "setup-node.sh: Node.js $(node --version) is too old; matrix-js-sdk 37.5 needs >= 20" >&2
  exit 1
fi

# npm writes node_modules/.package-lock.json on install; when it equals the lock file's
# package set, the tree is the one the lock file describes.
check='const a=require("./package-lock.json").packages,b=require("./node_modules/.package-lock.json").packages;
delete a[""];process.exit(JSON.stringify(Object.keys(a).sort().map(k=>[k,a[k].version,a[k].integrity]))===JSON.stringify(Object.keys(b).sort().map(k=>[k,b[k].version,b[k].integrity]))?0:1)'
if [ -f node_modules/.package-lock.json ] && node -e "$check" 2>/dev/null \
  && node -e 'import("matrix-js-sdk").then(()=>process.exit(0),()=>process.exit(1))'; then
  echo "== node: tests/js-sdk/node_modules ready (matrix-js-sdk)"
  exit 0
fi

echo "== node: npm ci in tests/js-sdk"
npm ci --no-audit --no-fund --loglevel=error
node -e 'import("matrix-js-sdk").then(()=>process.exit(0),(e)=>{console.error(e);process.exit(1)})'
echo "== node: tests/js-sdk/node_modules ready (matrix-js-sdk)"
