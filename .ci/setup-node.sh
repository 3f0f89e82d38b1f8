#!/usr/bin/env bash
# Installs the independent Data Integrity verifier (tests/vc-verify: Digital Bazaar's
# eddsa-jcs-2022 cryptosuite on jsonld-signatures) into tests/vc-verify/node_modules, with the
# exact versions tests/vc-verify/package.json pins. Idempotent: does nothing when installed.
set -euo pipefail
cd "$(dirname "$0")/../tests/vc-verify"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq nodejs npm >/dev/null
fi
if [ -d node_modules/@digitalbazaar/eddsa-jcs-2022-cryptosuite ] \
  && node -e 'import("@digitalbazaar/eddsa-jcs-2022-cryptosuite")' 2>/dev/null; then
  echo "== node: tests/vc-verify ready"
  exit 0
fi
echo "== node: installing tests/vc-verify"
npm install --no-package-lock --no-audit --no-fund --loglevel=error
echo "== node: tests/vc-verify ready"
