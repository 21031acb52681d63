"""Backfill reports: what the exchange served for one series and UTC day at its last backfill.

One row per (dataset, series, day), replaced by each backfill of that day, so coverage
(`kirby_core.db.coverage`) can tell "no trades" (the exchange served no row for a time it
still serves: `absent_times`) and "unavailable at source" (`unavailable_start` ..
`unavailable_end`: the part of the day the exchange no longer has, or never had) from gaps
nobody explained, without Dagster's event log.

- `dataset`: the table the rows went to (`candles` in both databases, `funding_rates`);
- `backfilled_at`: when the report was written (an outage recorded after it is newer news);
- `expected`, `fetched`: rows the day should hold (up to then), rows the exchange served;
- `first_time`, `last_time`: the first and last row served.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE backfill_reports (
    dataset text NOT NULL CHECK (dataset IN ('candles', 'funding_rates', 'open_interest')),
    series_id integer NOT NULL,
    day date NOT NULL,
    backfilled_at timestamptz NOT NULL DEFAULT now(),
    expected integer NOT NULL CHECK (expected >= 0),
    fetched integer NOT NULL CHECK (fetched >= 0),
    first_time timestamptz,
    last_time timestamptz,
    absent_times timestamptz[] NOT NULL DEFAULT '{}',
    unavailable_start timestamptz,
    unavailable_end timestamptz,
    PRIMARY KEY (dataset, series_id, day),
    CONSTRAINT backfill_reports_unavailable_window CHECK (
        (unavailable_start IS NULL) = (unavailable_end IS NULL)
        AND (unavailable_end IS NULL OR unavailable_end >= unavailable_start))
);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS backfill_reports")
