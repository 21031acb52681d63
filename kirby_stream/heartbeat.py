"""The collector's `stream_heartbeats` row: proof of life for the supervisor and for people.

When it starts and then every `stream_heartbeat_seconds` the collector upserts its row (one
per collector id): process, start, state (starting, running, degraded with `last_error`,
stopped), last frame, how far its data is stored (`covered_through`), counters, rows written
per table, buffer sizes, each exchange's state and counters (`feeds`); in the same
transaction it claims its predecessors (`succession`).
`heartbeat_at` is the database's `now()`, so the supervisor compares times from one clock
whatever the hosts' clocks say. A heartbeat that cannot be written (database down) is
skipped, not retried: the next one follows soon. `read_heartbeats` is what the Dagster
supervisor reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from kirby_core.errors import StorageError
from kirby_stream.backoff import pause
from kirby_stream.database import SharedConnection
from kirby_stream.stats import Stats
from kirby_stream.succession import Predecessor, claim_predecessors

log = logging.getLogger(__name__)

_UPSERT = """
INSERT INTO stream_heartbeats AS h (collector_id, hostname, pid, started_at, heartbeat_at,
    last_message_at, messages_received, invalid_messages, dropped_rows, reconnects,
    rows_written, buffer_sizes, state, last_error, covered_through, refused_rows, feeds)
VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12, $13, $14, $15,
    $16::jsonb)
ON CONFLICT (collector_id) DO UPDATE SET
    hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, started_at = EXCLUDED.started_at,
    heartbeat_at = now(), last_message_at = EXCLUDED.last_message_at,
    messages_received = EXCLUDED.messages_received,
    invalid_messages = EXCLUDED.invalid_messages, dropped_rows = EXCLUDED.dropped_rows,
    reconnects = EXCLUDED.reconnects, rows_written = EXCLUDED.rows_written,
    buffer_sizes = EXCLUDED.buffer_sizes, state = EXCLUDED.state,
    last_error = EXCLUDED.last_error, covered_through = EXCLUDED.covered_through,
    refused_rows = EXCLUDED.refused_rows, feeds = EXCLUDED.feeds
"""


@dataclass(frozen=True)
class Heartbeat:
    collector_id: str
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    age: timedelta
    """How long ago the row was refreshed, by the database's clock."""
    state: str
    """starting, running, degraded, or stopped (its collector ended cleanly)."""


async def write_heartbeat(conn: asyncpg.Connection, stats: Stats) -> None:
    await conn.execute(
        _UPSERT,
        stats.collector_id,
        socket.gethostname(),
        os.getpid(),
        stats.started_at,
        stats.last_message_at,
        stats.messages_received,
        stats.invalid_messages,
        stats.dropped_rows,
        stats.reconnects,
        json.dumps(stats.rows_written),
        json.dumps(stats.buffer_sizes),
        stats.state,
        stats.last_error,
        stats.covered_through,
        stats.refused_rows,
        msgspec.json.encode(
            {name: feed.report() for name, feed in sorted(stats.feeds.items())}
        ).decode(),
    )


async def read_heartbeats(
    conn: asyncpg.Connection, fresh_within: timedelta, collector_ids: Sequence[str] = ()
) -> list[Heartbeat]:
    """Heartbeats refreshed within `fresh_within`, plus those of `collector_ids` however old."""
    rows = await conn.fetch(
        """SELECT collector_id, hostname, pid, started_at, heartbeat_at,
                  now() - heartbeat_at AS age, state
           FROM stream_heartbeats
           WHERE heartbeat_at > now() - $1::interval OR collector_id = ANY($2::text[])
           ORDER BY heartbeat_at DESC""",
        fresh_within,
        list(collector_ids),
    )
    return [Heartbeat(**dict(row)) for row in rows]


class HeartbeatWriter:
    def __init__(
        self,
        database: SharedConnection,
        stats: Stats,
        interval: float,
        refresh: Callable[[], None],
        stale_after: timedelta,
        succeed: Callable[[list[Predecessor]], None],
    ) -> None:
        self.database = database
        self.stats = stats
        self.interval = interval
        self.refresh = refresh
        """Brings `stats` up to date (buffer sizes, last message) before each beat."""
        self.stale_after = stale_after
        self.succeed = succeed
        """Takes over from the predecessors a beat claimed."""

    async def run(self, done: asyncio.Event) -> None:
        """Beat now and every interval until `done`, then once more with the final counters."""
        await self.beat()
        while not await pause(done, self.interval):
            await self.beat()
        await self.beat()

    async def beat(self) -> None:
        self.refresh()
        try:
            claimed = await self.database.run(self._write)
        except StorageError as exc:
            log.warning("event=heartbeat_skipped cause=%s", exc)
            return
        if claimed:
            self.succeed(claimed)

    async def _write(self, conn: asyncpg.Connection) -> list[Predecessor]:
        async with conn.transaction():
            await write_heartbeat(conn, self.stats)
            return await claim_predecessors(conn, self.stats.collector_id, self.stale_after)


def wall_time_of(moment: float) -> datetime:
    """The wall-clock time of a `time.monotonic()` reading."""
    return datetime.now(UTC) - timedelta(seconds=time.monotonic() - moment)
