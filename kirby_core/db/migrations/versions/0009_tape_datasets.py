"""Outages, backfill reports and change events may name the trade tape and the order books.

`collection_outages`, `backfill_reports` and `change_events` held a CHECK listing the three
minute datasets. Trades (`trades`) and order-book samples (`books`) are recorded, backfilled
and announced the same way, so each table's check now lists all five names
(`kirby_core.datasets.RECORDED_DATASETS`, which `tests/db/test_datasets.py` compares with
these checks).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = ("collection_outages", "backfill_reports", "change_events")
BEFORE = ("candles", "funding_rates", "open_interest")
AFTER = (*BEFORE, "trades", "books")


def _check(names: tuple[str, ...]) -> None:
    listed = ", ".join(f"'{name}'" for name in names)
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_dataset_check")
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_dataset_check"
            f" CHECK (dataset IN ({listed}))"
        )


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    _check(BEFORE)
