"""The feed going wrong: dropped connections, stalls, malformed frames, idle timeouts.

Each failure must be survived, and each loss of data recorded as outage rows for exactly
the series it affected, with a window from the last data before it to the first after.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import asyncpg
import pytest

from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_minute
from kirby_sim import MALFORMED_VARIANTS, SimulatorConfig, SimulatorServer
from tests.stream.conftest import SPEED, START
from tests.stream.helpers import Running, collecting, fast, minutes

ALL_SERIES = 12  # BTC and SOL: 4 candle starlistings + funding + open interest each


async def outages(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM collection_outages ORDER BY dataset, series_id")


def expected_series(catalog: dict[str, int], coins: list[str]) -> set[tuple[str, int]]:
    return {
        (dataset, catalog[name])
        for coin in coins
        for dataset, name in [
            *(("candles", f"{coin}/{i}") for i in ("1m", "15m", "4h", "1d")),
            ("funding_rates", coin),
            ("open_interest", coin),
        ]
    }


async def healthy(running: Running, sim: SimulatorServer) -> None:
    """Subscribed to everything and some rows committed."""
    await running.until(
        lambda: (
            sim.state()["subscriptions"] == 10 and running.stats.tables["candles"].rows_flushed > 0
        )
    )


async def test_dropped_connection_reconnects_resubscribes_and_records_the_gap(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with collecting(stream_settings, database_urls.realtime, sim) as running:
        await healthy(running, sim)
        sim.faults.drop_connections()
        rows = await running.until(lambda: _count(conn, ALL_SERIES))
        assert running.stats.reconnects == 1
        state = sim.state()
        assert (state["connections"], state["subscriptions"]) == (1, 10)
        end = max(r["end_time"] for r in rows)
        # data flows again after the gap
        await running.until(
            lambda: conn.fetchval("SELECT count(*) FROM candles WHERE time > $1", end)
        )
    assert {(r["dataset"], r["series_id"]) for r in rows} == expected_series(
        catalog, ["BTC", "SOL"]
    )
    for row in rows:
        assert row["reason"].startswith("connection closed")
        # the window: last data before the drop to first data after (reconnect backoff
        # <= 0.5 s real, i.e. < 40 simulated seconds at 60x)
        assert timedelta(0) < row["end_time"] - row["start_time"] < timedelta(seconds=60)
    assert len(await outages(conn)) == ALL_SERIES


async def test_stall_of_every_coin_replaces_the_connection(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    stall = 2.5  # real seconds; the watchdog fires after 1 s without data
    async with collecting(stream_settings, database_urls.realtime, sim) as running:
        await healthy(running, sim)
        sim.faults.stall(stall)
        rows = await running.until(lambda: _count(conn, ALL_SERIES), within=10)
        assert running.stats.reconnects >= 1
    assert {(r["dataset"], r["series_id"]) for r in rows} == expected_series(
        catalog, ["BTC", "SOL"]
    )
    for row in rows:
        assert row["reason"] == "stall: no data from any symbol for 1 s"
        # the whole stall is inside the window (minus scheduling slack)
        assert row["end_time"] - row["start_time"] >= timedelta(seconds=(stall - 0.3) * SPEED)


async def test_stall_of_one_coin_resubscribes_that_coin_only(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with collecting(stream_settings, database_urls.realtime, sim) as running:
        await healthy(running, sim)
        stalled_at = sim.clock.now()
        sim.faults.stall(2.5, coins=["SOL"])
        rows = await running.until(lambda: _count(conn, 6), within=10)
        assert running.stats.reconnects == 0
        btc_during_stall = await conn.fetchval(
            "SELECT count(*) FROM funding_rates WHERE trading_pair_id = $1 AND time >= $2",
            catalog["BTC"],
            stalled_at,
        )
    assert {(r["dataset"], r["series_id"]) for r in rows} == expected_series(catalog, ["SOL"])
    assert all(r["reason"] == "stall: no data for 1 s" for r in rows)
    assert btc_during_stall >= 1
    assert len(await outages(conn)) == 6


async def test_malformed_frames_are_counted_never_written_never_fatal(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with collecting(stream_settings, database_urls.realtime, sim) as running:
        await healthy(running, sim)
        for variant in MALFORMED_VARIANTS:  # bad JSON, non-numeric price, high<low, unknown coin
            sim.faults.malform_next(2, "ws", variant)
        await running.until(lambda: sim.faults.injected["malformed_ws"] == 8)
        await running.until(lambda: running.stats.invalid_messages == 8)
        flushed = running.stats.tables["candles"].rows_flushed
        await running.until(lambda: running.stats.tables["candles"].rows_flushed > flushed)

        async def heartbeat_counted() -> bool:
            return await conn.fetchval("SELECT invalid_messages FROM stream_heartbeats") == 8

        await running.until(heartbeat_counted)
        assert running.stats.reconnects == 0
    assert await outages(conn) == []


async def test_pings_keep_an_idle_connection_open(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    config = SimulatorConfig(speed=SPEED, start=START, ws_idle_timeout=0.8)
    async with SimulatorServer(config) as sim:
        # without pings the server closes the connection after 0.8 s of client silence...
        silent = fast(settings, hyperliquid_ws_url=sim.ws_url, stream_ping_seconds=60)
        async with collecting(silent, database_urls.realtime, sim) as running:
            await running.until(lambda: running.stats.reconnects >= 1, within=5)
        # ...with pings every 0.3 s it stays open
        pinging = fast(settings, hyperliquid_ws_url=sim.ws_url, stream_ping_seconds=0.3)
        async with collecting(pinging, database_urls.realtime, sim) as running:
            await asyncio.sleep(2.5)  # an observation window: three idle timeouts
            assert running.stats.reconnects == 0
            assert sim.state()["connections"] == 1


async def _count(conn: asyncpg.Connection, expected: int) -> list[asyncpg.Record] | None:
    rows = await outages(conn)
    return rows if len(rows) >= expected else None


async def test_a_pause_of_the_whole_process_is_not_a_stall(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A host pause (a VM's CPU stolen, SIGSTOP) stops the collector and, here, the simulator
    in its event loop with it. What the exchange sent meanwhile waits in the socket, so the
    silence is the process's own: no reconnect, no outage, every minute kept."""
    btc_1m = catalog["BTC/1m"]
    async with collecting(stream_settings, database_urls.realtime, sim) as running:
        await healthy(running, sim)
        paused_at = sim.clock.now()
        time.sleep(2.5)  # noqa: ASYNC251 - the point: the whole process stops
        after = floor_minute(sim.clock.now()) + timedelta(minutes=1)
        await running.until(
            lambda: conn.fetchval(
                "SELECT max(time) >= $2 FROM candles WHERE starlisting_id = $1", btc_1m, after
            )
        )
        assert running.stats.reconnects == 0
    assert await outages(conn) == []
    assert "event=feed_watch_restarted exchange=hyperliquid" in caplog.text
    expected = minutes(floor_minute(paused_at), after)
    kept = await conn.fetch(
        "SELECT time FROM candles WHERE starlisting_id = $1 AND time >= $2 AND time < $3",
        btc_1m,
        expected[0],
        after,
    )
    assert sorted(r["time"] for r in kept) == expected
