"""The collector says how it is: starting, running, degraded with the reason, stopped.

The heartbeat keeps beating while the exchange cannot be reached, and says so; a feed that
sends nothing for the stall time is degraded until data flows again.
"""

from __future__ import annotations

import socket

import asyncpg

from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_sim import SimulatorServer
from tests.stream.helpers import collecting, fast
from tests.stream.test_resilience import healthy


async def beat(conn: asyncpg.Connection, collector_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT state, last_error FROM stream_heartbeats WHERE collector_id = $1", collector_id
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_an_unreachable_exchange_is_degraded_with_its_reason(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    unreachable = fast(settings, hyperliquid_ws_url=f"ws://127.0.0.1:{closed_port()}/ws")
    async with collecting(unreachable, database_urls.realtime, sim) as running:
        collector_id = running.stats.collector_id

        async def degraded() -> asyncpg.Record | None:
            row = await beat(conn, collector_id)
            return row if row is not None and row["state"] == "degraded" else None

        row = await running.until(degraded)
        assert row["last_error"].startswith("hyperliquid: cannot reach 127.0.0.1: ")
        assert running.stats.messages_received == 0
    assert await beat(conn, collector_id) == ("stopped", None)


async def test_a_silent_feed_is_degraded_until_data_flows_again(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with collecting(stream_settings, database_urls.realtime, sim) as running:
        await healthy(running, sim)
        collector_id = running.stats.collector_id
        await running.until(lambda: _state(conn, collector_id, "running"))
        sim.faults.stall(2.5)
        row = await running.until(lambda: _state(conn, collector_id, "degraded"))
        assert row["last_error"] == "hyperliquid: stall: no data from any symbol for 1 s"
        await running.until(lambda: _state(conn, collector_id, "running"), within=15)


async def _state(conn: asyncpg.Connection, collector_id: str, state: str) -> asyncpg.Record | None:
    row = await beat(conn, collector_id)
    return row if row is not None and row["state"] == state else None
