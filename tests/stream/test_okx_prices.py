"""OKX swaps' funding rows carry the mark price of OKX's `mark-price` channel and the
index of `index-tickers`, merged with its `funding-rate` channel, as the live collector
stores them from the simulator; a malformed price push is refused, naming the field, and
nothing else is lost.

The catalog is OKX's swaps alone (1m candles): the simulator's `non_numeric_price` fault
goes to the first push it fits, and here only the price pushes fit it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
import yaml

from kirby_core.catalog import parse_catalog
from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_core.timeutil import datetime_to_ms, floor_minute
from kirby_sim import SimulatorConfig, SimulatorServer
from kirby_sim import okx as sim_okx
from kirby_sim.universe import OKX_SWAP_VENUE
from tests.conftest import REPO
from tests.stream.conftest import START
from tests.stream.helpers import Running, collecting, fast

MINUTE = timedelta(minutes=1)
SPEED = 20


@pytest.fixture
async def swaps(conn: asyncpg.Connection) -> dict[str, int]:
    """The realtime catalog's OKX swaps (1m only) synced: instId -> trading pair id."""
    raw = yaml.safe_load((REPO / "config" / "starlistings.yaml").read_text())
    raw["starlistings"] = [
        {**entry, "intervals": ["1m"]}
        for entry in raw["starlistings"]
        if entry["exchange"] == "okx" and entry["market_type"] == "perps"
    ]
    await catalog_store.sync_catalog(conn, parse_catalog(raw, "okx swaps"))
    return {
        f"{p.key.coin}-{p.key.quote}-SWAP": p.id
        for p in await catalog_store.list_trading_pairs(conn)
    }


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    quiet = {"BTC": 0.0, "ETH": 0.0, "SOL": 0.0}
    async with SimulatorServer(
        SimulatorConfig(speed=SPEED, start=START, quiet_probability=quiet)
    ) as server:
        yield server


def on_sim(settings: Settings, sim: SimulatorServer) -> Settings:
    return fast(settings, ws_origins=sim.ws_origins, okx_rest_url=sim.base_url)


def okx_running(running: Running) -> bool:
    feed = running.stats.feeds.get("okx")
    return feed is not None and feed.state == "running"


def pushed_prices(sim: SimulatorServer, inst_id: str, at: datetime) -> tuple[Decimal, Decimal]:
    """The mark and index the simulator pushes for the second starting at `at`."""
    perp = sim.market.perp(OKX_SWAP_VENUE, inst_id)
    assert perp is not None
    at_ms = datetime_to_ms(at)
    mark = sim_okx.mark_price(perp, at_ms)["markPx"]
    return Decimal(mark), Decimal(sim_okx.index_ticker(sim.market, perp, at_ms)["idxPx"])


async def funding_rows(
    conn: asyncpg.Connection, pair: int, start: datetime, end: datetime
) -> dict[datetime, asyncpg.Record]:
    rows = await conn.fetch(
        "SELECT time, mark_price, oracle_price, predicted_funding_rate, next_funding_time"
        " FROM funding_rates"
        " WHERE trading_pair_id = $1 AND time >= $2 AND time < $3",
        pair,
        start,
        end,
    )
    return {row["time"]: row for row in rows}


async def test_swap_funding_rows_carry_the_last_mark_and_index_of_their_minute(
    conn: asyncpg.Connection,
    database_urls: DatabaseUrls,
    settings: Settings,
    sim: SimulatorServer,
    swaps: dict[str, int],
) -> None:
    settings = on_sim(settings, sim)
    async with collecting(settings, database_urls.realtime, sim) as running:
        await running.until(lambda: okx_running(running), within=30)
        started = floor_minute(sim.clock.now())
        wanted = [started + MINUTE, started + 2 * MINUTE]
        end = wanted[-1] + MINUTE

        async def stored() -> bool:
            for pair in swaps.values():
                if len(await funding_rows(conn, pair, wanted[0], end)) < len(wanted):
                    return False
            return True

        await running.until(stored, within=40)
        stats = running.stats
    assert stats.invalid_messages == 0 and stats.feeds["okx"].outages == 0, stats
    assert sorted(swaps) == ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "SOL-USDT-SWAP"]
    for inst_id, pair in swaps.items():
        rows = await funding_rows(conn, pair, wanted[0], end)
        for minute in wanted:
            row = rows[minute]
            # the minute's last pushes: its 59th second's
            mark, index = pushed_prices(sim, inst_id, minute + timedelta(seconds=59))
            assert (row["mark_price"], row["oracle_price"]) == (mark, index), (inst_id, minute)
            # the funding-rate channel's state, merged into the same row
            assert row["predicted_funding_rate"] is not None, (inst_id, minute)
            assert row["next_funding_time"] > minute


async def test_a_malformed_price_push_is_refused_and_nothing_else_is_lost(
    conn: asyncpg.Connection,
    database_urls: DatabaseUrls,
    settings: Settings,
    sim: SimulatorServer,
    swaps: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = on_sim(settings, sim)
    caplog.set_level(logging.WARNING, logger="kirby_stream")
    async with collecting(settings, database_urls.realtime, sim) as running:
        await running.until(lambda: okx_running(running), within=30)
        sim.faults.malform_next(1, "ws", "non_numeric_price")
        await running.until(lambda: running.stats.invalid_messages > 0)
        broken_at = floor_minute(sim.clock.now())
        before = running.stats
        after_minute = broken_at + MINUTE

        async def stored() -> bool:
            for pair in swaps.values():
                if after_minute not in await funding_rows(
                    conn, pair, broken_at, after_minute + MINUTE
                ):
                    return False
            return True

        await running.until(stored, within=30)
        stats = running.stats
    assert sim.faults.injected["malformed_ws"] == 1
    assert stats.invalid_messages == 1, "one push refused, nothing more"
    feed = stats.feeds["okx"]
    assert feed.invalid_messages == 1 and feed.outages == 0
    assert feed.reconnects == before.feeds["okx"].reconnects, "the connection stays"
    refused = [r.getMessage() for r in caplog.records if "event=invalid_message" in r.getMessage()]
    assert len(refused) == 1
    assert re.search(
        r"OKX WS (mark-price \S+-SWAP: field 'markPx'|index-tickers \S+: field 'idxPx') "
        "is not a number: 'not-a-number'",
        refused[0],
    ), refused[0]
    # every swap's funding row of the minute and the next: stored, with both prices
    for pair in swaps.values():
        rows = await funding_rows(conn, pair, broken_at, after_minute + MINUTE)
        assert set(rows) == {broken_at, after_minute}
        assert all(row["mark_price"] and row["oracle_price"] for row in rows.values())
