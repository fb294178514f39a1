#!/usr/bin/env bash
# Start a throw-away PostgreSQL server from Debian's packages on 127.0.0.1 for the tests.
# Usage: export GROWSEARCH_TEST_POSTGRES_URL=$(bash .ci/postgres.sh)   (prints the URL on stdout)
# Stop:  .ci/postgres.sh stop
set -euo pipefail
PGPORT=${GROWSEARCH_PG_PORT:-55432}
PGDATA=${GROWSEARCH_PG_DATA:-/tmp/growsearch-pg}
PGUSER_NAME=growsearch
PGPASS=${GROWSEARCH_PG_PASSWORD:-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}

bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ "${1:-}" = "stop" ]; then
  [ -d "$PGDATA" ] && runuser -u postgres -- "$(bin_dir)/pg_ctl" -D "$PGDATA" -m fast stop || true
  exit 0
fi

if [ -z "$(bin_dir)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
BIN=$(bin_dir)
if runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null
fi
rm -rf "$PGDATA"; mkdir -p "$PGDATA"; chown postgres:postgres "$PGDATA"
PWFILE=$(mktemp); echo "$PGPASS" > "$PWFILE"; chown postgres "$PWFILE"
runuser -u postgres -- "$BIN/initdb" -D "$PGDATA" -A scram-sha-256 -U postgres --pwfile="$PWFILE" >/dev/null
rm -f "$PWFILE"
runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA -c max_connections=200" start >/dev/null
PGPASSWORD=$PGPASS psql -h 127.0.0.1 -p "$PGPORT" -U postgres -q -c "CREATE ROLE $PGUSER_NAME LOGIN PASSWORD '$PGPASS'" -c "CREATE DATABASE growsearch OWNER $PGUSER_NAME" >/dev/null
echo "postgresql+psycopg://$PGUSER_NAME:$PGPASS@127.0.0.1:$PGPORT/growsearch"
echo "PostgreSQL ready on 127.0.0.1:$PGPORT (database growsearch)" >&2
