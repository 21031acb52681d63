"""Collector succession: what a collector that was killed (or stopped) leaves to the next one.

Every collector keeps `covered_through` in its heartbeat row: the data time before which
everything it received is stored. On each heartbeat a collector claims, in one UPDATE,
the rows of collectors that stopped cleanly or whose heartbeat went stale
(`stream_stale_seconds`) and that nobody claimed yet, so each predecessor is claimed by
exactly one successor, whether it was started by hand, by `kirby run` or relaunched by the
Dagster supervisor. For every series the successor collects, the window from the
predecessor's `covered_through` to the successor's first data of that coin becomes a
`collection_outages` row (through the intake's feed gaps), so gap repair refetches exactly
those minutes, the candle that was forming at the kill included. A successor starts with the
coverage it inherited, so a chain of collectors killed before their first flush still
reaches back to the last data stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

_CLAIM = """
UPDATE stream_heartbeats SET successor_id = $1
WHERE successor_id IS NULL AND collector_id <> $1
  AND (state = 'stopped' OR heartbeat_at < now() - $2::interval)
RETURNING collector_id, state, coalesce(covered_through, started_at) AS covered_through
"""


@dataclass(frozen=True)
class Predecessor:
    collector_id: str
    state: str
    """Its last reported state: `stopped` when it ended cleanly."""
    covered_through: datetime
    """Its last stored data time (its start when it never stored anything)."""

    @property
    def reason(self) -> str:
        how = "stopped" if self.state == "stopped" else "stopped beating (killed or hung)"
        return f"collector {self.collector_id} {how}; not collected until its successor's data"


async def claim_predecessors(
    conn: asyncpg.Connection, collector_id: str, stale_after: timedelta
) -> list[Predecessor]:
    rows = await conn.fetch(_CLAIM, collector_id, stale_after)
    return [Predecessor(**dict(row)) for row in rows]
