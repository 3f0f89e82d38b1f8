#!/usr/bin/env bash
# Property-based API testing of a live `roam serve` against spec/openapi.json with
# Schemathesis: installs it into .venv, builds `roam`, serves on a temporary directory and a
# free port, registers a user for the bearer token, runs Schemathesis (bounded examples per
# operation; the logout operations last, with their own token; `{did}` and `{user_id}` name
# an account created with `roam key new` + `roam account create`), stops the server, and exits
# non-zero on any failure.
#
# Checks: not_a_server_error (no 5xx; on POST /_roam/v1/migrate the hook check
# roam_no_server_error instead, which allows only the documented 502 ROAM_UNREACHABLE of an
# unreachable old server) and response_schema_conformance (every documented answer validates).
#
#   bash scripts/schemathesis.sh [MAX_EXAMPLES]      (default 10 per operation: ~3000 cases,
#                                                    under 2 minutes once roam is built)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

ST_SPEC='schemathesis==4.32.5'
examples=${1:-10}

if ! .venv/bin/python -c 'import schemathesis' 2>/dev/null; then
  echo "== schemathesis: installing $ST_SPEC into .venv"
  if [ ! -x .venv/bin/python ] && ! python3 -m venv .venv 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install -q --disable-pip-version-check "$ST_SPEC"
fi

echo "== schemathesis: building roam"
cargo build -q -p roam-cli --bin roam
roam="${CARGO_TARGET_DIR:-$PWD/target}/debug/roam"

tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
cat >"$tmp/roam.toml" <<TOML
server_name = "st.test"
listen = "127.0.0.1:$port"
data_dir = "$tmp/data"
public_base_url = "$base"
registration = "open"

[rate_limits]
register_per_ip = { per_second = 1000.0, burst = 100000 }
login_per_ip = { per_second = 1000.0, burst = 100000 }
login_per_account = { per_second = 1000.0, burst = 100000 }
challenge_per_ip = { per_second = 1000.0, burst = 100000 }

[op_limits]
per_hour = 100000
per_day = 100000
TOML
"$roam" serve --config "$tmp/roam.toml" >"$tmp/server.log" 2>&1 &
pid=$!
healthy() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
    "$base/health" 2>/dev/null
}
for _ in $(seq 100); do
  healthy && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log"; exit 1; }
  sleep 0.1
done
healthy || { echo "== schemathesis: the server did not start"; cat "$tmp/server.log"; exit 1; }

# A registered user's access token (both UIA round trips).
token() {
  .venv/bin/python - "$base" "$1" <<'PY'
import json, sys, urllib.request, urllib.error
base, user = sys.argv[1], sys.argv[2]
def post(body):
    req = urllib.request.Request(base + "/_matrix/client/v3/register", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)
body = {"username": user, "password": "st-password-1"}
session = post(body)["session"]
body["auth"] = {"type": "m.login.dummy", "session": session}
print(post(body)["access_token"])
PY
}

# An account with a DID (genesis signed by `roam`), so that the `{did}` and `{user_id}` paths
# reach real data instead of 404 (scripts/schemathesis.toml reads these two variables).
export ROAM_PASSPHRASE=st-passphrase ROAM_CACHE="$tmp/cache" ROAM_KEYSTORE="$tmp/keystore.json"
ROAM_ST_DID=$("$roam" key new --no-phrase --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["did"])')
"$roam" account create --homeserver "$base" --user stdid --federation-override "st.test=$base" \
  --allow-private-fetch >/dev/null
export ROAM_ST_DID ROAM_ST_USER_ID="@stdid:st.test"

run_st() {
  local tok=$1
  shift
  # From the temporary directory, so that Hypothesis' example database and any report stay
  # out of the repository.
  (cd "$tmp" && PYTHONPATH="$root/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks \
    "$root/.venv/bin/schemathesis" --no-color --config-file "$root/scripts/schemathesis.toml" \
    run "$root/spec/openapi.json" \
    --url "$base" -H "Authorization: Bearer $tok" \
    --checks not_a_server_error,response_schema_conformance,roam_no_server_error \
    --max-examples "$examples" --seed 1 --workers 1 "$@")
}

rc=0
echo "== schemathesis: every operation but logout ($examples examples each)"
run_st "$(token stuser)" --exclude-path-regex 'logout' || rc=1
echo "== schemathesis: logout and logout/all"
run_st "$(token stlogout)" --include-path-regex 'logout' || rc=1
if grep -q "panicked" "$tmp/server.log"; then
  echo "== schemathesis: the server panicked:"
  grep -A3 "panicked" "$tmp/server.log" | head -20
  rc=1
fi
echo "== schemathesis: $([ "$rc" -eq 0 ] && echo passed || echo FAILED)"
exit "$rc"
