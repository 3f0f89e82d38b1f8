#!/usr/bin/env bash
# Installs the npm sides of two tests, idempotently (each step does nothing when already
# installed) and loudly (a missing or too old Node.js fails: the tests never skip):
#  - tests/js-sdk: the matrix-js-sdk real-client test, `npm ci` from the committed
#    package-lock.json (pinned versions and integrity hashes);
#  - tests/vc-verify: the independent Data Integrity verifier (Digital Bazaar's
#    eddsa-jcs-2022 cryptosuite on jsonld-signatures), the exact versions its package.json pins.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "== node: installing nodejs and npm (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "setup-node.sh: '$tool' is not installed; the tests need Node.js >= 20 with npm" >&2
    exit 1
  fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "setup-node.sh: Node.js $(node --version) is too old; matrix-js-sdk 37.5 needs >= 20" >&2
  exit 1
fi

# --- tests/js-sdk (npm ci) ---
# npm writes node_modules/.package-lock.json on install; when it equals the lock file's
# package set, the tree is the one the lock file describes.
(
  cd tests/js-sdk
  check='const a=require("./package-lock.json").packages,b=require("./node_modules/.package-lock.json").packages;
delete a[""];process.exit(JSON.stringify(Object.keys(a).sort().map(k=>[k,a[k].version,a[k].integrity]))===JSON.stringify(Object.keys(b).sort().map(k=>[k,b[k].version,b[k].integrity]))?0:1)'
  if [ -f node_modules/.package-lock.json ] && node -e "$check" 2>/dev/null \
    && node -e 'import("matrix-js-sdk").then(()=>process.exit(0),()=>process.exit(1))'; then
    echo "== node: tests/js-sdk/node_modules ready (matrix-js-sdk)"
  else
    echo "== node: npm ci in tests/js-sdk"
    npm ci --no-audit --no-fund --loglevel=error
    node -e 'import("matrix-js-sdk").then(()=>process.exit(0),(e)=>{console.error(e);process.exit(1)})'
    echo "== node: tests/js-sdk/node_modules ready (matrix-js-sdk)"
  fi
)

# --- tests/vc-verify (npm install, exact versions) ---
(
  cd tests/vc-verify
  if [ -d node_modules/@digitalbazaar/eddsa-jcs-2022-cryptosuite ] \
    && node -e 'import("@digitalbazaar/eddsa-jcs-2022-cryptosuite")' 2>/dev/null; then
    echo "== node: tests/vc-verify ready"
  else
    echo "== node: installing tests/vc-verify"
    npm install --no-package-lock --no-audit --no-fund --loglevel=error
    echo "== node: tests/vc-verify ready"
  fi
)
