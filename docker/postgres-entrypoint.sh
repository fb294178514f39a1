#!/bin/sh
# growsearch-postgres: entrypoint of docker/Dockerfile.postgres (PostgreSQL from Debian's packages).
#
# Honours what compose.yaml gives the official postgres image:
#   POSTGRES_USER            superuser to create (default postgres)
#   POSTGRES_PASSWORD        its password, or
#   POSTGRES_PASSWORD_FILE   a file holding it (a Docker secret: /run/secrets/...)
#   POSTGRES_DB              database to create (default: $POSTGRES_USER)
#   PGDATA                   data directory (default /var/lib/postgresql/data, a volume)
# On an empty data directory: initdb with that user and password (scram-sha-256), then the
# database; on a non-empty one the settings above are ignored, as with the official image.
# Connections over TCP need the password; only local socket connections inside the container
# (pg_isready, this script) are trusted. Runs `postgres ...` as user postgres, never as root.
set -eu

die() { echo "growsearch-postgres: $*" >&2; exit 1; }

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "${1:-}" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  # a fresh volume (or a host folder) may belong to root: hand it to postgres, then drop root
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  # the password file may be readable by root only (a secret): read it here
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    [ -r "$POSTGRES_PASSWORD_FILE" ] || die "POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE: cannot read it"
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
    export POSTGRES_PASSWORD
    unset POSTGRES_PASSWORD_FILE
  fi
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  [ -r "$POSTGRES_PASSWORD_FILE" ] || die "POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE: cannot read it"
  POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
fi

user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -n "${POSTGRES_PASSWORD:-}" ] || die "the data directory is empty and no password is set: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
         --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null || { rm -f "$pwfile"; die "initdb failed"; }
  rm -f "$pwfile"
  # (PostgreSQL 15 stores passwords as scram-sha-256 by default)
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    # single-user mode: no server, no socket, nothing reachable before the database exists
    ident=$(printf '%s' "$db" | sed 's/"/""/g')
    echo "CREATE DATABASE \"$ident\";" | postgres --single -j -D "$PGDATA" postgres >/dev/null \
      || die "cannot create database $db"
  fi
  echo "growsearch-postgres: initialised $PGDATA (user $user, database $db)" >&2
fi
unset POSTGRES_PASSWORD

exec "$@"
