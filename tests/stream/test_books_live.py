"""Order books live, on the simulator and a real PostgreSQL: every book of the catalog is
sampled into `books` (never crossed, exact, best first), integrity is counted per pair and
minute, and a book that stops being trustworthy (a stalled coin, a planted sequence gap) is
detected, resynced, counted and recorded as a `books` outage of that pair only.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_sim import SimulatorServer
from tests.stream.helpers import Running, collecting, fast


@pytest.fixture
def stream_settings(settings: Settings, sim: SimulatorServer) -> Settings:
    return fast(settings, hyperliquid_ws_url=sim.ws_url, books_enabled=True)


async def _stored_books(conn: asyncpg.Connection) -> dict[int, int]:
    rows = await conn.fetch("SELECT trading_pair_id, count(*) AS n FROM books GROUP BY 1")
    return {r["trading_pair_id"]: r["n"] for r in rows}


def _books_of(running: Running, exchange: str):
    feed = running.stats.feeds.get(exchange)
    return None if feed is None else feed.books


async def test_hyperliquid_books_are_sampled_whole_and_never_crossed(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    pairs = {catalog["BTC"], catalog["SOL"]}
    async with collecting(stream_settings, database_urls.realtime, sim) as running:

        async def sampled() -> bool:
            stored = await _stored_books(conn)
            return set(stored) == pairs and min(stored.values()) >= 3

        await running.until(sampled, within=30)
        report = _books_of(running, "hyperliquid")
    assert report is not None
    assert (report.books, report.gaps, report.invalid_messages) == (2, 0, 0)
    assert report.updates > 0 and report.samples >= 6

    rows = await conn.fetch(
        "SELECT trading_pair_id, time, sequence, bid_prices, bid_sizes, ask_prices, ask_sizes"
        " FROM books ORDER BY trading_pair_id, time"
    )
    for row in rows:
        assert row["sequence"] is None  # Hyperliquid numbers no updates
        bids, asks = row["bid_prices"], row["ask_prices"]
        assert 0 < len(bids) <= 20 and 0 < len(asks) <= 20
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert bids[0] < asks[0]
        assert all(isinstance(p, Decimal) and p > 0 for p in [*bids, *row["bid_sizes"]])
        assert row["time"].microsecond == 0
    integrity = await conn.fetch(
        "SELECT trading_pair_id, sum(updates) AS updates, sum(gaps) AS gaps,"
        " sum(crossed) AS crossed FROM book_integrity GROUP BY 1"
    )
    assert {r["trading_pair_id"] for r in integrity} == pairs
    assert all(r["updates"] > 0 and r["gaps"] == 0 and r["crossed"] == 0 for r in integrity)
    outages = await conn.fetchval("SELECT count(*) FROM collection_outages WHERE dataset='books'")
    assert outages == 0


async def test_a_stalled_hyperliquid_book_is_resynced_counted_and_recorded(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with collecting(stream_settings, database_urls.realtime, sim) as running:

        def whole() -> bool:
            report = _books_of(running, "hyperliquid")
            return report is not None and report.whole == 2

        await running.until(whole, within=20)
        sim.faults.stall(2.5, coins=["SOL"])  # SOL's snapshots stop: its book goes stale

        async def recorded() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM collection_outages WHERE dataset = 'books'"
                )
            )

        await running.until(recorded, within=20)
        await running.until(whole, within=20)
        report = _books_of(running, "hyperliquid")
    assert report is not None and report.resyncs >= 1 and report.stale_ms > 0
    outages = await conn.fetch(
        "SELECT series_id, start_time, end_time, reason FROM collection_outages"
        " WHERE dataset = 'books'"
    )
    assert {r["series_id"] for r in outages} == {catalog["SOL"]}
    assert all(r["end_time"] > r["start_time"] for r in outages)
    assert all(r["reason"].startswith("book feed lost: stall") for r in outages), outages
    counted = await conn.fetch(
        "SELECT trading_pair_id, sum(resyncs) AS resyncs, sum(stale_ms) AS stale"
        " FROM book_integrity GROUP BY 1"
    )
    by_pair = {r["trading_pair_id"]: (r["resyncs"], r["stale"]) for r in counted}
    assert by_pair[catalog["SOL"]][0] >= 1 and by_pair[catalog["SOL"]][1] > 0
    assert by_pair[catalog["BTC"]] == (0, 0)
