"""Succession: a collector killed with `kill -9` (or stopped) leaves no silent damage.

The next collector claims it and records an outage for every series, from the dead one's
last stored data (its heartbeat's `covered_through`) to its own first data, so gap repair
refetches the minute that was forming at the kill (stored truncated) and everything after.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_sim import SimulatorConfig, SimulatorServer
from kirby_stream.buffers import Buffers
from kirby_stream.database import SharedConnection
from kirby_stream.flusher import Flusher
from kirby_stream.outages import Outage
from kirby_stream.stats import Stats
from tests.stream.helpers import collecting, fast
from tests.stream.test_resilience import ALL_SERIES, expected_series, healthy
from tests.stream.test_shutdown import start_kirby_stream, stream_environment, wait_for

MINUTE = timedelta(minutes=1)


async def outages(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM collection_outages ORDER BY dataset, series_id")


async def test_a_collector_killed_with_sigkill_is_taken_over_with_its_gap_recorded(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    settings: Settings,
    database_urls: DatabaseUrls,
    tmp_path: Path,
) -> None:
    # real time (speed 1), so the killed `kirby stream` process's wall clock is the data clock
    config = SimulatorConfig(quiet_probability={"BTC": 0.0, "SOL": 0.0})
    async with SimulatorServer(config) as sim:
        env = stream_environment(database_urls.realtime, sim.ws_url, tmp_path)
        process = await start_kirby_stream(env)
        try:

            async def stored() -> bool:
                assert process.returncode is None, (await process.stderr.read()).decode()
                return bool(
                    await conn.fetchval(
                        "SELECT covered_through IS NOT NULL AND state = 'running'"
                        " FROM stream_heartbeats WHERE pid = $1",
                        process.pid,
                    )
                )

            await wait_for(stored)
            await asyncio.sleep(1.5)  # a few more flushes, so the kill lands mid-candle
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        killed_at = sim.clock.now()
        dead = await conn.fetchrow(
            "SELECT collector_id, covered_through FROM stream_heartbeats WHERE pid = $1",
            process.pid,
        )
        last_candle = await conn.fetchval(
            "SELECT max(time) FROM candles WHERE starlisting_id = $1", catalog["BTC/1m"]
        )
        assert await outages(conn) == []  # the killed process recorded nothing itself

        successor = fast(settings, hyperliquid_ws_url=sim.ws_url, stream_stale_seconds=1.0)
        async with collecting(successor, database_urls.realtime, sim) as running:
            rows = await running.until(lambda: _count(conn, ALL_SERIES), within=15)
            successor_id = running.stats.collector_id

    assert {(r["dataset"], r["series_id"]) for r in rows} == expected_series(
        catalog, ["BTC", "SOL"]
    )
    for row in rows:
        assert row["start_time"] == dead["covered_through"]
        assert row["end_time"] >= killed_at  # to the successor's first data
        assert dead["collector_id"] in row["reason"]
    # the window starts no later than the end of the newest stored candle: the candle that
    # was forming at the kill, stored truncated, is inside it (a kill landing just after a
    # minute closed leaves none, and the window starts at that close)
    assert rows[0]["start_time"] <= last_candle + MINUTE
    claimed = await conn.fetchval(
        "SELECT successor_id FROM stream_heartbeats WHERE collector_id = $1", dead["collector_id"]
    )
    assert claimed == successor_id


async def test_a_cleanly_stopped_collector_is_claimed_by_the_next_one(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with collecting(stream_settings, database_urls.realtime, sim) as first:
        await healthy(first, sim)
    before = await conn.fetchrow("SELECT * FROM stream_heartbeats")
    assert before["state"] == "stopped"
    assert before["covered_through"] is not None
    assert await outages(conn) == []  # a clean stop leaves no open gap of its own

    async with collecting(stream_settings, database_urls.realtime, sim) as second:
        rows = await second.until(lambda: _count(conn, ALL_SERIES))
        second_id = second.stats.collector_id
    assert {r["start_time"] for r in rows} == {before["covered_through"]}
    assert all(r["end_time"] > r["start_time"] for r in rows)
    assert "stopped;" in rows[0]["reason"]
    after = await conn.fetchrow(
        "SELECT successor_id FROM stream_heartbeats WHERE collector_id = $1",
        before["collector_id"],
    )
    assert after["successor_id"] == second_id


async def test_a_predecessor_is_claimed_once(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    await conn.execute(
        """INSERT INTO stream_heartbeats (collector_id, hostname, pid, started_at, heartbeat_at,
               state, covered_through, successor_id)
           VALUES ('gone', 'h', 1, now(), now(), 'stopped', now(), 'someone-else')"""
    )
    async with collecting(stream_settings, database_urls.realtime, sim) as running:
        await healthy(running, sim)
        await running.until(lambda: running.stats.flushes > 3)
    assert await outages(conn) == []


async def _count(conn: asyncpg.Connection, expected: int) -> list[asyncpg.Record] | None:
    rows = await outages(conn)
    return rows if len(rows) >= expected else None


async def test_coverage_does_not_pass_an_outage_claimed_during_a_flush(
    conn: asyncpg.Connection, settings: Settings, database_urls: DatabaseUrls
) -> None:
    """A predecessor claimed while a flush waits for the connection: that flush must not
    advance `covered_through` past the claimed window, which is stored only by the next."""
    start = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
    database = SharedConnection(database_urls.realtime, 5.0)
    buffers, stats = Buffers(100), Stats("me", start)
    stats.covered_through = start  # lowered by the claim
    buffers.received_through = start + 10 * MINUTE
    flusher = Flusher(settings, buffers, database, stats, lambda: start + 10 * MINUTE)
    buffers.outages.append(Outage("candles", 1, start - MINUTE, start, "earlier gap"))
    try:
        async with database._lock:  # the heartbeat holds the connection, claiming
            flush = asyncio.create_task(flusher.flush())
            await asyncio.sleep(0)  # the flush has taken its batch and waits
            buffers.outages.append(Outage("candles", 1, start, start + MINUTE, "claimed"))
        assert await flush
        assert stats.covered_through == start
        assert await flusher.flush()  # the claimed window is stored: coverage moves on
        assert stats.covered_through == start + 10 * MINUTE
    finally:
        await database.close()
