"""TimescaleDB: measured chunk intervals, and the per-interval candle retention job's procedure.

Only where the market tables are hypertables (plain tables: nothing to do).

- Chunk intervals (`CHUNK_INTERVALS`), chosen by `bench/api/timescale.py` with a year of
  history (see bench/README.md): with 1-day chunks a read planned 366 chunks per table
  (35x a plain table without a time bound; 10x for multi-series latest with one). The rule:
  a year of history is about a dozen chunks (hot reads within 1.5x of a plain table) while
  the newest chunk of each table stays well inside memory (a month of a 1m series: 7 MB).
  `set_chunk_time_interval` applies to chunks created from now on; existing chunks keep
  their 1 day.
- `kirby_drop_expired_candles(job_id, config)`: deletes each candle interval's rows older
  than its days (`config`: {"intervals": {"1m": 30}}), run as a TimescaleDB job that
  `kirby_core.db.retention` adds, changes or removes on every `kirby db migrate`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from alembic import op
from sqlalchemy import text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CHUNK_INTERVALS = {
    "candles": "30 days",
    "funding_rates": "30 days",
    "open_interest": "30 days",
}
FORMER_INTERVAL = "1 day"

DELETE_PROCEDURE = """
CREATE OR REPLACE PROCEDURE kirby_drop_expired_candles(job_id integer, config jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    rule record;
BEGIN
    FOR rule IN SELECT key AS name, value::integer AS days
                FROM jsonb_each_text(config -> 'intervals') LOOP
        DELETE FROM candles c
        USING starlistings s JOIN intervals i ON i.id = s.interval_id
        WHERE c.starlisting_id = s.id AND i.name = rule.name
          AND c.time < now() - make_interval(days => rule.days);
    END LOOP;
END
$$
"""


def _hypertables() -> bool:
    bind = op.get_bind()
    return bool(
        bind.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
                " AND to_regclass('timescaledb_information.hypertables') IS NOT NULL"
            )
        ).scalar_one()
        and bind.execute(
            text(
                "SELECT count(*) FROM timescaledb_information.hypertables"
                " WHERE hypertable_schema = 'public' AND hypertable_name = 'candles'"
            )
        ).scalar_one()
    )


def upgrade() -> None:
    if not _hypertables():
        return
    for table, interval in CHUNK_INTERVALS.items():
        op.execute(f"SELECT set_chunk_time_interval('{table}', interval '{interval}')")
    op.execute(DELETE_PROCEDURE)


def downgrade() -> None:
    if not _hypertables():
        return
    op.execute(
        "SELECT delete_job(job_id) FROM timescaledb_information.jobs"
        " WHERE proc_name = 'kirby_drop_expired_candles'"
    )
    op.execute("DROP PROCEDURE IF EXISTS kirby_drop_expired_candles(integer, jsonb)")
    for table in CHUNK_INTERVALS:
        op.execute(f"SELECT set_chunk_time_interval('{table}', interval '{FORMER_INTERVAL}')")
