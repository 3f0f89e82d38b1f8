#!/usr/bin/env bash
# Installs the real-client tests' Python side into .venv at the repository root: matrix-nio
# with end-to-end encryption (tests/matrix_nio) and mautrix-python with its olm crypto
# (tests/mautrix). Idempotent and quiet: does nothing when .venv already has both, and only
# adds what is missing to an existing .venv.
# matrix-nio >= 0.26 uses vodozemac (prebuilt wheels), so it needs no libolm or compiler.
# mautrix's crypto needs python-olm: its wheel bundles libolm (a few seconds to install);
# where no wheel fits this Python, pip builds it from source, and this script first installs
# the Debian packages that build needs (libolm-dev, cmake, a C/C++ toolchain). It fails loudly
# if that is impossible.
set -euo pipefail
cd "$(dirname "$0")/.."

NIO_SPEC='matrix-nio[e2e]==0.26.0'
MAUTRIX_SPECS=('mautrix==0.21.1' 'python-olm==3.2.16' 'pycryptodome' 'unpaddedbase64' 'base58')
nio_check='import nio, vodozemac; from nio.crypto import ENCRYPTION_ENABLED; assert ENCRYPTION_ENABLED'
mautrix_check='import mautrix, olm, Crypto, unpaddedbase64, base58; from mautrix.crypto import OlmMachine; assert mautrix.__version__ == "0.21.1"'
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)

works() { [ -x .venv/bin/python ] && .venv/bin/python -c "$1" 2>/dev/null; }

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "$@" >/dev/null
}

if works "$nio_check; $mautrix_check"; then
  echo "== python: .venv ready (matrix-nio, mautrix)"
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  echo "== python: creating .venv"
  if ! python3 -m venv .venv 2>/dev/null; then
    # Debian splits venv support out of python3.
    apt_install python3-venv
    rm -rf .venv
    python3 -m venv .venv
  fi
  "${PIP[@]}" --upgrade pip
fi

if ! works "$nio_check"; then
  echo "== python: installing $NIO_SPEC"
  "${PIP[@]}" "$NIO_SPEC"
fi

if ! works "$mautrix_check"; then
  echo "== python: installing ${MAUTRIX_SPECS[*]}"
  if ! "${PIP[@]}" --only-binary=python-olm "${MAUTRIX_SPECS[@]}"; then
    echo "== python: no python-olm wheel for this Python; building it (libolm-dev, cmake, g++)"
    apt_install libolm-dev cmake make g++ pkg-config
    "${PIP[@]}" "${MAUTRIX_SPECS[@]}"
  fi
fi

for check in "$nio_check" "$mautrix_check"; do
  if ! .venv/bin/python -c "$check"; then
    echo "== python: .venv is not usable after installing: $check" >&2
    exit 1
  fi
done
echo "== python: .venv ready (matrix-nio, mautrix)"
