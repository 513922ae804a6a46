#!/bin/sh
# First start of the postgres container: the warehouse database beside Dagster's own.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -c "CREATE DATABASE \"${OPTRADER_WAREHOUSE_DB:-optrader}\" OWNER \"$POSTGRES_USER\""
