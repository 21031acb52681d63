#!/usr/bin/env bash
# First start of the timescaledb container only (an empty data volume): the image's own
# entrypoint has created POSTGRES_DB (Kirby's realtime database) and runs this after its
# TimescaleDB scripts. Creates the training and Dagster databases and enables TimescaleDB
# in both Kirby databases, so migration 0001 makes hypertables with compression.
# Idempotent; safe to run by hand: docker compose exec timescaledb \
#   /docker-entrypoint-initdb.d/10-kirby-databases.sh
set -euo pipefail

realtime_db="${POSTGRES_DB:-kirby}"
training_db="${POSTGRES_TRAINING_DB:-kirby_training}"
dagster_db="${POSTGRES_DAGSTER_DB:-kirby_dagster}"
owner="${POSTGRES_USER:-postgres}"

run_psql() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$owner" "$@"
}

create_database() {
    # CREATE DATABASE cannot run in a DO block: build it with format(%I) and \gexec.
    run_psql --dbname postgres -v db="$1" -v owner="$owner" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')
\gexec
SQL
}

for db in "$realtime_db" "$training_db" "$dagster_db"; do
    create_database "$db"
done
for db in "$realtime_db" "$training_db"; do
    run_psql --dbname "$db" -c 'CREATE EXTENSION IF NOT EXISTS timescaledb'
done
echo "kirby: databases $realtime_db, $training_db (TimescaleDB) and $dagster_db ready"
