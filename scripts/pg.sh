#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests (and for trying `database_url` by hand).
#
#   eval "$(bash scripts/pg.sh start)"   # prints `export ROAM_TEST_DATABASE_URL=…`
#   bash scripts/pg.sh stop
#   bash scripts/pg.sh discard            # stop and delete the cluster (every test database)
#
# Installs PostgreSQL from the Debian packages when no server binaries are found, creates a
# cluster in target/pg (project-local, never the system cluster), and starts it on a Unix
# socket in that directory plus 127.0.0.1:$ROAM_PG_PORT (default 54329), trust
# authentication, fsync on (the tests exercise real commits). Idempotent: `start` on a
# running cluster only prints the URL again. Root cannot run the server, so as root it runs
# as the `postgres` user (created by the package).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${ROAM_PG_DIR:-$PWD/target/pg}"
PORT="${ROAM_PG_PORT:-54329}"
URL="postgres://roam@127.0.0.1:$PORT/postgres"

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

install_pg() {
  if find_bin >/dev/null; then
    return 0
  fi
  echo "pg.sh: installing PostgreSQL (Debian packages)" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "pg.sh: PostgreSQL is missing and installing it needs root (apt-get install postgresql)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  find_bin >/dev/null || { echo "pg.sh: no PostgreSQL server binaries after install" >&2; exit 1; }
}

# Runs a PostgreSQL tool as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  install_pg
  local bin
  bin=$(find_bin)
  mkdir -p "$DIR"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres "$DIR"
  fi
  if [ ! -f "$DIR/data/PG_VERSION" ]; then
    as_owner "$bin/initdb" -D "$DIR/data" -U roam --auth=trust -E UTF8 --locale=C >&2
  fi
  if ! as_owner "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start \
      -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=400" >&2 || {
      echo "pg.sh: the server did not start; its log:" >&2
      tail -n 30 "$DIR/server.log" >&2
      exit 1
    }
  fi
  echo "export ROAM_TEST_DATABASE_URL=$URL"
}

stop() {
  local bin
  bin=$(find_bin) || return 0
  if [ -f "$DIR/data/PG_VERSION" ]; then
    as_owner "$bin/pg_ctl" -D "$DIR/data" -w -m fast stop >&2 || true
  fi
}

# Every test makes a database of its own; discarding the cluster after a run frees them all.
discard() {
  stop
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  discard) discard ;;
  *)
    echo "usage: scripts/pg.sh start|stop|discard" >&2
    exit 2
    ;;
esac
