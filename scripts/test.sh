#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs every test.
# Idempotent; safe to run on a fresh machine. `.ci/run` calls this as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real-client test drives the server with matrix-nio from a project venv.
if [ -f .ci/setup-python.sh ]; then
  bash .ci/setup-python.sh
fi
# The matrix-js-sdk test drives it with Node.js from tests/js-sdk/node_modules (npm ci).
bash .ci/setup-node.sh

cargo test --workspace --locked "$@"

# The conformance runner (spec/conformance/run.py), with the Rust implementation's command:
# every vector in spec/vectors, answered by `roam verify --conformance`.
cargo build --quiet --locked -p roam-cli --bin roam
python3 spec/conformance/run.py -- "${CARGO_TARGET_DIR:-target}/debug/roam" verify --conformance
