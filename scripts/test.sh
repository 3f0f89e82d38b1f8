#!/usr/bin/env bash
# The project's test command (README): installs what the tests need, then runs every test.
# Idempotent; safe to run on a fresh machine. `.ci/run` calls this as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real-client tests drive the server with matrix-nio and mautrix-python from a project venv.
if [ -f .ci/setup-python.sh ]; then
  bash .ci/setup-python.sh
fi
# The credential test checks Roam's credentials with an independent Data Integrity verifier,
# and the matrix-js-sdk test drives the server with Node.js (tests/js-sdk, npm ci).
bash .ci/setup-node.sh

# The store and integration tests run on redb and on PostgreSQL: a throwaway cluster in
# target/pg (scripts/pg.sh installs the Debian packages when missing), stopped and deleted on
# exit (each test makes a database of its own).
trap 'bash scripts/pg.sh discard' EXIT
# An assignment, not `eval "$(…)"`: a cluster that does not start stops the run here.
pg_env=$(bash scripts/pg.sh start)
eval "$pg_env"

cargo test --workspace --locked "$@"

# The integration tests again, with every server they start in process on PostgreSQL instead
# of redb (tests/tests/common: `Backend::for_dir`); the tests that choose a store themselves
# (the crash test, two nodes, the `*_on_postgres` ones) run as they did. The binaries are the
# ones just built (`cargo test -p roam-tests` would unify features differently and build much
# of the graph a second time), run from the package directory as cargo runs them.
mapfile -t integration < <(cargo test --workspace --locked --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable")
            and m["target"]["kind"] == ["test"] and "#roam-tests@" in m["package_id"]):
        print(m["executable"])
')
if [ "${#integration[@]}" -lt 10 ]; then
  echo "test.sh: found ${#integration[@]} integration test binaries of roam-tests, expected more" >&2
  exit 1
fi
for bin in "${integration[@]}"; do
  echo "== on PostgreSQL: $(basename "$bin")"
  (cd tests && ROAM_TEST_STORE=postgres "$bin")
done

# ssi's build graph (vc-ssi/, excluded from the workspace, its own Cargo.lock): ssi turns on
# serde_json's `arbitrary_precision` there. Its tests check that ssi verifies Roam's
# credentials (and proves them with eddsa-rdfc-2022), and run identity-core's and roam-vc's
# own tests and vectors in that graph; the conformance runner below runs every vector through
# its `roam-ssi-conformance` too. Same target directory: what the graphs share is built once.
target="${CARGO_TARGET_DIR:-target}"
cargo test --locked --manifest-path vc-ssi/Cargo.toml --target-dir "$target"

# The conformance runner (spec/conformance/run.py), with the Rust implementation's command:
# every vector in spec/vectors, answered by `roam verify --conformance`.
cargo build --quiet --locked -p roam-cli --bin roam
python3 spec/conformance/run.py -- "$target/debug/roam" verify --conformance
# The same answers from the build with `arbitrary_precision` on (built by the vc-ssi tests).
python3 spec/conformance/run.py -- "$target/debug/roam-ssi-conformance"
