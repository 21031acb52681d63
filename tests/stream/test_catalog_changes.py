"""Catalog changes reach a running collector within its poll interval, without a restart."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import yaml

from kirby_core.catalog import parse_catalog
from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_minute
from kirby_sim import SimulatorServer
from tests.conftest import REPO
from tests.stream.helpers import collecting


def catalog_of(coins: list[str]):
    raw = yaml.safe_load((REPO / "config" / "starlistings.hyperliquid.yaml").read_text())
    raw["coins"] = [{"symbol": coin} for coin in coins]
    template = raw["starlistings"][0]
    raw["starlistings"] = [{**template, "coin": coin} for coin in coins]
    return parse_catalog(raw, source="test")


async def newest(conn: asyncpg.Connection, coin: str):
    return await conn.fetchval(
        """SELECT max(f.time) FROM funding_rates f JOIN trading_pairs t ON t.id = f.trading_pair_id
           JOIN coins c ON c.id = t.coin_id WHERE c.symbol = $1""",
        coin,
    )


async def test_deactivated_and_added_starlistings_are_picked_up_live(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with collecting(stream_settings, database_urls.realtime, sim) as running:
        await running.until(lambda: sim.state()["subscriptions"] == 10)
        await running.until(lambda: newest(conn, "SOL"))

        # SOL leaves the catalog, ETH joins it
        await catalog_store.sync_catalog(conn, catalog_of(["BTC", "ETH"]))
        changed_at = sim.clock.now()
        await running.until(lambda: sim.state()["subscriptions"] == 10 and _has_eth(sim))
        await running.until(lambda: newest(conn, "ETH"))
        btc_seen = await newest(conn, "BTC")
        await running.until(lambda: _later(conn, "BTC", btc_seen + timedelta(minutes=2)))

        # and SOL comes back
        await catalog_store.sync_catalog(conn, catalog_of(["BTC", "SOL"]))
        back_at = sim.clock.now()
        await running.until(lambda: _later(conn, "SOL", back_at))
        assert running.stats.reconnects == 0

    # while SOL was out of the catalog nothing of it was written (give or take a poll
    # interval, 18 simulated seconds, at either end)
    sol_minutes = [
        r["time"]
        for r in await conn.fetch(
            "SELECT time FROM funding_rates WHERE trading_pair_id = $1 ORDER BY time",
            catalog["SOL"],
        )
    ]
    gap = [t for t in sol_minutes if changed_at + timedelta(minutes=1) < t < floor_minute(back_at)]
    assert floor_minute(back_at) - changed_at > timedelta(minutes=3)
    assert gap == []
    eth_candles = await conn.fetchval(
        """SELECT count(*) FROM candles k JOIN starlistings s ON s.id = k.starlisting_id
           JOIN coins c ON c.id = s.coin_id WHERE c.symbol = 'ETH'"""
    )
    assert eth_candles > 0
    assert await conn.fetchval("SELECT count(*) FROM collection_outages") == 0


def _has_eth(sim: SimulatorServer) -> bool:
    return any(("activeAssetCtx", "ETH") in c.subscriptions for c in sim.stream.connections)


async def _later(conn: asyncpg.Connection, coin: str, moment) -> bool:
    latest = await newest(conn, coin)
    return latest is not None and latest > moment
