#!/bin/sh
# PostgreSQL for docker-compose.yml's shiploop-postgres:local image
# (scripts/images.sh): on first start initialise $PGDATA with the superuser
# $POSTGRES_USER / $POSTGRES_PASSWORD and create $POSTGRES_DB, as the
# official postgres image does; then run the server on every address.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
sock=/tmp

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
  "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" -E UTF8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != postgres ]; then
    "$bin/pg_ctl" -D "$PGDATA" -w -o "-c listen_addresses='' -k $sock" start >/dev/null
    "$bin/psql" -h "$sock" -U "$POSTGRES_USER" -d postgres -v ON_ERROR_STOP=1 -q \
      -c "CREATE DATABASE \"$POSTGRES_DB\""
    "$bin/pg_ctl" -D "$PGDATA" -w -m fast stop >/dev/null
  fi
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -k "$sock"
