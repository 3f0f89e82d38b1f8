#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs every test.
# Idempotent; safe to run on a fresh machine. `.ci/run` calls this as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real-client test drives the server with matrix-nio from a project venv.
if [ -f .ci/setup-python.sh ]; then
  bash .ci/setup-python.sh
fi

cargo test --workspace --locked "$@"
