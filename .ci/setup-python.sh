#!/usr/bin/env bash
# Installs the real-client test's Python side (matrix-nio with end-to-end encryption) into
# .venv at the repository root. Idempotent and quiet: does nothing when .venv already works.
# matrix-nio >= 0.25 uses vodozemac (prebuilt wheels on PyPI), so no libolm or compiler is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

NIO_SPEC='matrix-nio[e2e]==0.26.0'
check='import nio, vodozemac; from nio.crypto import ENCRYPTION_ENABLED; assert ENCRYPTION_ENABLED'

if [ -x .venv/bin/python ] && .venv/bin/python -c "$check" 2>/dev/null; then
  echo "== python: .venv ready (matrix-nio)"
  exit 0
fi

echo "== python: creating .venv with $NIO_SPEC"
if ! python3 -m venv .venv 2>/dev/null; then
  # Debian splits venv support out of python3.
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-venv >/dev/null
  rm -rf .venv
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check "$NIO_SPEC"
.venv/bin/python -c "$check"
echo "== python: .venv ready (matrix-nio)"
