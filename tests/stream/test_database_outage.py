"""PostgreSQL going away under the collector: it keeps reading, keeps its rows, and writes
them all once the database is back; past its memory bound it drops the oldest rows and
records them as outages."""

from __future__ import annotations

import time
from datetime import timedelta

import asyncpg

from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_minute
from kirby_sim import SimulatorServer
from tests.stream.conftest import START
from tests.stream.helpers import candle_snapshot, collecting, fast, minutes
from tests.stream.proxy import PostgresProxy

OUTAGE_SECONDS = 20.0
"""Real seconds the database stays unreachable (20 simulated minutes at 60x)."""


async def test_a_database_outage_of_tens_of_seconds_loses_nothing(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with PostgresProxy(database_urls.realtime) as proxy:
        async with collecting(stream_settings, proxy.url, sim) as running:
            await running.until(lambda: running.stats.tables["candles"].rows_flushed > 0)
            proxy.cut()
            cut_at, cut_at_sim = time.monotonic(), sim.clock.now()
            before = running.stats
            beat_before = await conn.fetchval("SELECT heartbeat_at FROM stream_heartbeats")
            await running.until(
                lambda: time.monotonic() - cut_at >= OUTAGE_SECONDS, within=OUTAGE_SECONDS + 5
            )
            during = running.stats
            # the feed was read all along; rows piled up in memory, none dropped
            assert during.messages_received > before.messages_received + 1000
            assert during.failed_flushes >= 3
            assert during.buffer_sizes["funding_rates"] >= 2 * 15
            assert during.dropped_rows == 0
            assert await conn.fetchval("SELECT heartbeat_at FROM stream_heartbeats") == beat_before
            proxy.restore()
            restored_at_sim = sim.clock.now()
            await running.until(lambda: running.stats.flushes > during.flushes)
        stopped_at = sim.clock.now()

    closed_before = floor_minute(stopped_at) - timedelta(minutes=1)
    for coin in ("BTC", "SOL"):
        served = await candle_snapshot(sim, coin, "1m", floor_minute(START), closed_before)
        stored = await conn.fetch(
            "SELECT * FROM candles WHERE starlisting_id = $1 AND time < $2",
            catalog[f"{coin}/1m"],
            closed_before,
        )
        assert {r["time"]: tuple(r)[2:] for r in stored} == {
            t: v for t, v in served.items() if t < closed_before
        }
        # every minute the database was away for is there (and equal to the exchange's)
        away = minutes(floor_minute(cut_at_sim), min(floor_minute(restored_at_sim), closed_before))
        assert len(away) >= OUTAGE_SECONDS - 2  # a simulated minute per real second
        assert {r["time"] for r in stored} >= set(away)
        for table in ("funding_rates", "open_interest"):
            times = [
                r["time"]
                for r in await conn.fetch(
                    f"SELECT time FROM {table} WHERE trading_pair_id = $1 ORDER BY time",
                    catalog[coin],
                )
            ]
            assert times == minutes(times[0], times[-1] + timedelta(minutes=1))
    assert await conn.fetchval("SELECT count(*) FROM collection_outages") == 0


async def test_past_its_memory_bound_it_drops_the_oldest_rows_and_records_them(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    bounded = fast(settings, hyperliquid_ws_url=sim.ws_url, stream_max_buffered_rows=20)
    async with (
        PostgresProxy(database_urls.realtime) as proxy,
        collecting(bounded, proxy.url, sim) as running,
    ):
        await running.until(lambda: running.stats.tables["candles"].rows_flushed > 0)
        proxy.cut()
        await running.until(lambda: running.stats.dropped_rows >= 10)
        sizes = running.stats.buffer_sizes
        assert sizes["candles"] + sizes["funding_rates"] + sizes["open_interest"] <= 20
        proxy.restore()

        async def recorded() -> list[asyncpg.Record]:
            return await conn.fetch("SELECT * FROM collection_outages")

        rows = await running.until(recorded)
        dropped = running.stats.dropped_rows

        async def heartbeat_counts() -> bool:
            beat = await conn.fetchval("SELECT dropped_rows FROM stream_heartbeats")
            return beat == running.stats.dropped_rows

        await running.until(heartbeat_counts)
    assert dropped >= 10
    series = {("candles", sid) for name, sid in catalog.items() if "/" in name} | {
        (t, catalog[c]) for t in ("funding_rates", "open_interest") for c in ("BTC", "SOL")
    }
    for row in rows:
        assert row["reason"].startswith("buffer full (bound 20 rows")
        assert (row["dataset"], row["series_id"]) in series
        assert row["start_time"] <= row["end_time"]
