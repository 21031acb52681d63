"""Collector succession: a heartbeat says what state its collector is in, how far its data is
stored, and which collector took over after it.

- `state`: starting (no healthy connection yet), running, degraded (`last_error` says why:
  the exchange cannot be reached, or nothing arrived for the stall time), stopped (clean).
- `covered_through`: every message received before this data time is stored (its last
  committed flush); a successor records outages from here to its own first data.
- `successor_id`: the collector that claimed this one (once it stopped, or its heartbeat went
  stale); a row is claimed once. Rows already there when this revision runs are marked as
  claimed by it, so an upgrade does not invent outages back to old collectors' starts.
- `refused_rows`: rows the database refused (bad data, a constraint): rejected, logged and
  counted, the rest of their batch stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE stream_heartbeats
    ADD COLUMN state text NOT NULL DEFAULT 'running'
        CHECK (state IN ('starting', 'running', 'degraded', 'stopped')),
    ADD COLUMN last_error text,
    ADD COLUMN covered_through timestamptz,
    ADD COLUMN successor_id text,
    ADD COLUMN refused_rows bigint NOT NULL DEFAULT 0;
UPDATE stream_heartbeats SET successor_id = 'migration 0003';
CREATE INDEX ix_stream_heartbeats_unclaimed
    ON stream_heartbeats (heartbeat_at) WHERE successor_id IS NULL;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(
        "DROP INDEX IF EXISTS ix_stream_heartbeats_unclaimed;"
        " ALTER TABLE stream_heartbeats DROP COLUMN state, DROP COLUMN last_error,"
        " DROP COLUMN covered_through, DROP COLUMN successor_id, DROP COLUMN refused_rows"
    )
