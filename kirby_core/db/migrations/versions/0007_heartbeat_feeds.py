"""Each exchange's state in the collector's heartbeat.

One collector listens to every exchange; `feeds` holds, per exchange, the state of its
connections and polls (starting, running, degraded), why it is degraded, and its counters
(messages, invalid messages, the exchange's own errors, reconnects, outages recorded, the
latest message). `/status`, `/health`, the metrics and the Dagster observations group by it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE stream_heartbeats ADD COLUMN feeds jsonb NOT NULL DEFAULT '{}'")


def downgrade() -> None:
    op.execute("ALTER TABLE stream_heartbeats DROP COLUMN feeds")
