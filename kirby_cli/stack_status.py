"""The one-screen status `kirby demo` / `kirby run` refresh while the stack runs.

Read straight from the databases and the lake folder (not through the API), so it still
tells what is going on when the API is the part that is down.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import asyncpg

from kirby_cli.stack import Stack
from kirby_core.datasets import DATASETS
from kirby_core.db.connection import connect
from kirby_core.models import feed_reports

STATUS_QUERY_TIMEOUT_SECONDS = 3.0
REALTIME_TABLES = tuple(DATASETS)


@dataclass
class StackSnapshot:
    processes: list[tuple[str, int, bool]]
    """(name, pid, alive) of each child."""
    counts: dict[str, int | None] = field(default_factory=dict)
    """Rows by table (`training_candles`: the training database's candles)."""
    heartbeat_age: float | None = None
    collector: str | None = None
    collector_state: str | None = None
    collector_error: str | None = None
    """Why the collector is degraded (it cannot reach the exchange, or receives nothing)."""
    last_candle: datetime | None = None
    exchanges: dict[str, tuple[str, str | None, int]] = field(default_factory=dict)
    """Exchange -> (its feed's state in the newest heartbeat, why degraded, candles stored)."""
    backfills: dict[str, str] = field(default_factory=dict)
    backfill_failures: dict[str, str] = field(default_factory=dict)
    """Title -> root cause of a failed backfill."""
    lake_files: int = 0
    model_files: int = 0


def snapshot(stack: Stack) -> StackSnapshot:
    snap = StackSnapshot([(c.name, c.pid, c.alive()) for c in stack.children])
    if stack.databases is not None:
        unreadable = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
        with contextlib.suppress(*unreadable):  # counts then show as unknown
            asyncio.run(_read(stack, snap))
    if stack.backfills is not None:
        snap.backfills = dict(stack.backfills.status)
        snap.backfill_failures = dict(stack.backfills.failures)
    lake = Path(stack.config.settings.lake_dir).resolve()  # counted on a local lake only
    files = list(lake.rglob("*.parquet")) if lake.is_dir() else []
    snap.model_files = sum(1 for f in files if (lake / "models") in f.parents)
    snap.lake_files = len(files) - snap.model_files
    return snap


async def _read(stack: Stack, snap: StackSnapshot) -> None:
    assert stack.databases is not None
    async with asyncio.timeout(STATUS_QUERY_TIMEOUT_SECONDS):
        conn = await connect(stack.databases.realtime)
        try:
            for table in REALTIME_TABLES:
                snap.counts[table] = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608
            beat = await conn.fetchrow(
                "SELECT collector_id, extract(epoch FROM now() - heartbeat_at)::float AS age,"
                " state, last_error, feeds FROM stream_heartbeats"
                " ORDER BY heartbeat_at DESC LIMIT 1"
            )
            if beat is not None:
                snap.collector, snap.heartbeat_age = beat["collector_id"], beat["age"]
                snap.collector_state, snap.collector_error = beat["state"], beat["last_error"]
            snap.last_candle = await conn.fetchval("SELECT max(time) FROM candles")
            snap.exchanges = await _exchanges(conn, beat["feeds"] if beat is not None else None)
        finally:
            await conn.close()
        conn = await connect(stack.databases.training)
        try:
            snap.counts["training_candles"] = await conn.fetchval("SELECT count(*) FROM candles")
        finally:
            await conn.close()


async def _exchanges(
    conn: asyncpg.Connection, feeds: str | None
) -> dict[str, tuple[str, str | None, int]]:
    """Per exchange of the catalog: its feed's state and the candles stored for it."""
    reports = feed_reports(feeds)
    rows = await conn.fetch(
        """SELECT e.name, (SELECT count(*) FROM candles c JOIN starlistings s
                             ON s.id = c.starlisting_id WHERE s.exchange_id = e.id) AS candles
           FROM exchanges e ORDER BY e.name"""
    )
    found: dict[str, tuple[str, str | None, int]] = {}
    for row in rows:
        report = reports.get(row["name"])
        state = "not collected" if report is None else report.state
        found[row["name"]] = (state, None if report is None else report.last_error, row["candles"])
    return found


def render(snap: StackSnapshot, now: datetime, refresh_seconds: float, lake_dir: Path) -> str:
    def count(table: str) -> str:
        value = snap.counts.get(table)
        return "?" if value is None else f"{value:,}"

    procs = "  ".join(f"{name} {'up' if alive else 'DOWN'}" for name, _, alive in snap.processes)
    if snap.heartbeat_age is None:
        stream = "no heartbeat yet (the supervisor launches the stream run within a minute)"
    else:
        stream = f"heartbeat {snap.heartbeat_age:.0f} s ago ({snap.collector})"
        if snap.collector_state == "degraded":
            stream = f"DEGRADED: {snap.collector_error} ({stream})"
    if snap.last_candle is not None:
        stream += f", latest candle opened {snap.last_candle:%H:%M} UTC"
    lines = [
        f"status at {now:%H:%M:%S} (every {refresh_seconds:g} s; Ctrl-C stops everything)",
        f"  processes  {procs}",
        f"  stream     {stream}",
        f"  realtime   candles {count('candles')}  funding {count('funding_rates')}"
        f"  open interest {count('open_interest')}",
        f"  training   candles {count('training_candles')}",
    ]
    for i, (name, (state, error, candles)) in enumerate(snap.exchanges.items()):
        why = f": {error}" if error else ""
        lines.append(
            f"  {'exchanges' if i == 0 else '':<9}  {name:<12} {state}{why}, {candles:,} candles"
        )
    for i, (title, status) in enumerate(snap.backfills.items()):
        lines.append(f"  {'backfills' if i == 0 else '':<9}  {status:<17} {title}")
        if title in snap.backfill_failures:
            lines.append(f"  {'':<9}  {'':<17} {snap.backfill_failures[title]}")
    lines.append(
        f"  lake       {snap.lake_files} Parquet files, merged dataset and models "
        f"{snap.model_files} files ({lake_dir})"
    )
    return "\n".join(lines)
