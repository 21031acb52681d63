"""Change events: the numbered log behind live fan-out and WebSocket resume.

The stream writes one row per change notification in the transaction that writes the rows
it names, and sends its id with the NOTIFY (`kirby_core.db.notify`). Ids grow in commit
order because one collector writes at a time (the stream run's concurrency tag). API
replicas replay the rows after an id to a WebSocket client that resumes, or to themselves
after their LISTEN connection was lost. The stream deletes events older than
`api_ws_resume_seconds`, keeping the newest.

- `dataset`: the table whose rows changed;
- `payload`: series id -> changed times (epoch ms), the NOTIFY payload format.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE change_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset text NOT NULL CHECK (dataset IN ('candles', 'funding_rates', 'open_interest')),
    payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_events_created_at ON change_events (created_at);
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS change_events")
