"""Order books live, on the simulator and a real PostgreSQL: every book of the catalog is
sampled into `books` (never crossed, exact, best first), integrity is counted per pair and
minute, and a book that stops being trustworthy (a stalled coin, a planted sequence gap) is
detected, resynced, counted and recorded as a `books` outage of that pair only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
import yaml

from kirby_core.catalog import parse_catalog
from kirby_core.db import catalog_store
from kirby_core.db.urls import DatabaseUrls
from kirby_core.settings import Settings
from kirby_sim import SimulatorConfig, SimulatorServer, okx
from kirby_sim.depth import IDS_PER_STEP
from kirby_sim.okx_depth import depth_of
from tests.conftest import REPO
from tests.stream.conftest import START
from tests.stream.helpers import Running, collecting, fast
from tests.stream.test_catalog_changes import catalog_of
from tests.stream.test_five_exchanges import COINS, on_sim

FIVE_SPEED = 10
DEPTH_MS = 2000
"""A book state every 2 simulated s (0.2 s real): the simulator, the collector and its five
exchanges' books share this test's one event loop and a busy machine."""


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


# --- every exchange of the catalog, on the simulator's depth streams ---


@pytest.fixture
async def five(conn: asyncpg.Connection) -> dict[int, str]:
    """The five-exchange catalog's BTC pairs (every exchange and market type, 1m only)
    synced; trading pair id -> exchange. One coin: the simulator renders every book it
    serves in this test's event loop, and deep books (Binance's 1000-level snapshots, OKX's
    400 levels) cost it far more than they cost Kirby."""
    raw = yaml.safe_load((REPO / "config" / "starlistings.yaml").read_text())
    raw["starlistings"] = [
        {**entry, "intervals": ["1m"]} for entry in raw["starlistings"] if entry["coin"] == "BTC"
    ]
    await catalog_store.sync_catalog(conn, parse_catalog(raw, "five exchanges, BTC"))
    return {p.id: p.key.exchange for p in await catalog_store.list_trading_pairs(conn)}


@pytest.fixture
async def five_sim() -> AsyncIterator[SimulatorServer]:
    config = SimulatorConfig(
        speed=FIVE_SPEED, start=START, quiet_probability=COINS, depth_update_ms=DEPTH_MS
    )
    async with SimulatorServer(config) as server:
        yield server


def _five_settings(settings: Settings, sim: SimulatorServer) -> Settings:
    return on_sim(settings, sim, books_enabled=True)


async def _whole(running: Running, exchanges: set[str]) -> bool:
    feeds = running.stats.feeds
    return all(
        (report := feeds[name].books if name in feeds else None) is not None
        and report.books > 0
        and report.whole == report.books
        for name in exchanges
    )


async def test_books_of_every_exchange_are_stored_whole_and_never_crossed(
    conn: asyncpg.Connection,
    database_urls: DatabaseUrls,
    settings: Settings,
    five_sim: SimulatorServer,
    five: dict[int, str],
) -> None:
    async with collecting(
        _five_settings(settings, five_sim), database_urls.realtime, five_sim
    ) as running:

        async def sampled() -> bool:
            stored = await _stored_books(conn)
            return set(stored) == set(five) and min(stored.values()) >= 2

        await running.until(sampled, within=60)
        stats = running.stats
    reports = {name: feed.books for name, feed in stats.feeds.items()}
    assert set(reports) == set(five.values())
    for name, report in reports.items():
        assert report is not None, name
        assert (report.gaps, report.crossed, report.invalid_messages) == (0, 0, 0), (name, report)
        assert report.updates > 0 and report.samples > 0, (name, report)
    crossed = await conn.fetchval(
        "SELECT count(*) FROM books WHERE bid_prices[1] >= ask_prices[1]"
        " OR cardinality(bid_prices) = 0 OR cardinality(ask_prices) = 0"
    )
    assert crossed == 0
    sequenced = await conn.fetch(
        "SELECT DISTINCT trading_pair_id FROM books WHERE sequence IS NOT NULL"
    )
    assert {r["trading_pair_id"] for r in sequenced} == {
        pair for pair, name in five.items() if name != "hyperliquid"
    }
    assert (
        await conn.fetchval("SELECT count(*) FROM collection_outages WHERE dataset = 'books'") == 0
    )


@pytest.fixture
async def okx_btc(conn: asyncpg.Connection) -> dict[int, str]:
    """OKX's BTC pairs of the catalog (spot and swap) synced; trading pair id -> market type."""
    raw = yaml.safe_load((REPO / "config" / "starlistings.yaml").read_text())
    raw["starlistings"] = [
        {**entry, "intervals": ["1m"]}
        for entry in raw["starlistings"]
        if (entry["exchange"], entry["coin"]) == ("okx", "BTC")
    ]
    await catalog_store.sync_catalog(conn, parse_catalog(raw, "OKX BTC"))
    return {p.id: p.key.market_type for p in await catalog_store.list_trading_pairs(conn)}


async def test_okx_swap_book_sizes_are_stored_in_the_base_coin(
    conn: asyncpg.Connection,
    database_urls: DatabaseUrls,
    settings: Settings,
    five_sim: SimulatorServer,
    okx_btc: dict[int, str],
) -> None:
    """OKX swap books count contracts; every stored size is the coin's: contracts x ctVal
    (the value the trades use, read from public/instruments). Each stored sample is checked
    level by level against the simulator's book at the sample's sequence."""
    assert sorted(okx_btc.values()) == ["perps", "spot"]
    async with collecting(
        _five_settings(settings, five_sim), database_urls.realtime, five_sim
    ) as running:

        async def sampled() -> bool:
            stored = await _stored_books(conn)
            return set(stored) == set(okx_btc) and min(stored.values()) >= 3

        await running.until(sampled, within=60)
        contracts = running.collector.contracts.known["okx"]
    assert contracts["BTC-USDT-SWAP"] == Decimal("0.01")  # the simulator's ctVal
    rows = await conn.fetch(
        "SELECT trading_pair_id, sequence, bid_prices, bid_sizes, ask_prices, ask_sizes"
        " FROM books ORDER BY trading_pair_id, time"
    )
    checked = dict.fromkeys(okx_btc.values(), 0)
    for row in rows:
        market_type = okx_btc[row["trading_pair_id"]]
        symbol = "BTC-USDT-SWAP" if market_type == "perps" else "BTC-USDT"
        depth = depth_of(five_sim.market, symbol)
        assert depth is not None
        inst = depth.instrument
        view = depth.view(row["sequence"] // IDS_PER_STEP, len(row["bid_prices"]))
        for prices, sizes, levels in (
            (row["bid_prices"], row["bid_sizes"], view.bids),
            (row["ask_prices"], row["ask_sizes"], view.asks),
        ):
            assert prices == [Decimal(okx.price(inst, p)) for p, _ in levels]
            # the coin's size, exactly; on the swap that is the size OKX sent x ctVal
            assert sizes == [Decimal(okx.coin_size(inst, lots)) for _, lots in levels]
            if market_type == "perps":
                sent = [Decimal(okx.size(inst, lots)) for _, lots in levels]
                assert sizes == [size * Decimal("0.01") for size in sent]
                assert sizes != sent
        checked[market_type] += 1
    assert min(checked.values()) >= 3


async def test_a_planted_sequence_gap_is_detected_resynced_counted_and_recorded(
    conn: asyncpg.Connection,
    database_urls: DatabaseUrls,
    settings: Settings,
    five_sim: SimulatorServer,
    five: dict[int, str],
) -> None:
    gapped = {"binance", "bybit", "okx", "coinbase"}
    async with collecting(
        _five_settings(settings, five_sim), database_urls.realtime, five_sim
    ) as running:
        await running.until(lambda: _whole(running, gapped), within=60)
        for name in sorted(gapped):
            five_sim.faults.skip_book_updates(1, exchange=name)

        def resynced() -> bool:
            feeds = running.stats.feeds
            return all(
                feeds[name].books.gaps >= 1 and feeds[name].books.resyncs >= 1 for name in gapped
            )

        await running.until(resynced, within=60)
        await running.until(lambda: _whole(running, gapped), within=60)

        async def recorded() -> set[str]:
            rows = await conn.fetch(
                "SELECT DISTINCT series_id FROM collection_outages WHERE dataset = 'books'"
            )
            return {five[r["series_id"]] for r in rows} == gapped

        await running.until(recorded, within=30)

        async def counted() -> bool:
            rows = await conn.fetch(
                "SELECT trading_pair_id FROM book_integrity GROUP BY 1"
                " HAVING sum(gaps) > 0 AND sum(resyncs) > 0"
            )
            return {five[r["trading_pair_id"]] for r in rows} == gapped

        await running.until(counted, within=30)
    outages = await conn.fetch(
        "SELECT series_id, start_time, end_time, reason FROM collection_outages"
        " WHERE dataset = 'books'"
    )
    assert all(r["end_time"] > r["start_time"] for r in outages)
    assert all(r["reason"].startswith("book sequence gap: ") for r in outages), outages
    # the gap cost only the books of the exchange it was planted on: Hyperliquid's are whole
    assert all(five[r["series_id"]] != "hyperliquid" for r in outages)
    crossed = await conn.fetchval("SELECT count(*) FROM books WHERE bid_prices[1] >= ask_prices[1]")
    assert crossed == 0


async def test_a_bybit_restart_overwrites_the_book_and_is_no_gap(
    conn: asyncpg.Connection,
    database_urls: DatabaseUrls,
    settings: Settings,
    five_sim: SimulatorServer,
    five: dict[int, str],
) -> None:
    async with collecting(
        _five_settings(settings, five_sim), database_urls.realtime, five_sim
    ) as running:
        await running.until(lambda: _whole(running, {"bybit"}), within=60)
        five_sim.faults.restart_books()  # each subscription's next push: a snapshot, u = 1

        def bybit_books() -> list:
            lanes = running.collector.books.lanes.values()
            return [
                s for _, lane, _ in lanes if lane.exchange == "bybit" for s in lane.books.values()
            ]

        def restarted() -> bool:
            return all(s.book.counters.restarts + s.carried.restarts >= 1 for s in bybit_books())

        await running.until(restarted, within=30)
        await running.until(lambda: _whole(running, {"bybit"}), within=30)
        before = await _stored_books(conn)
        bybit = [pair for pair, name in five.items() if name == "bybit"]

        async def sampled_after() -> bool:
            stored = await _stored_books(conn)
            return all(stored.get(pair, 0) > before.get(pair, 0) for pair in bybit)

        await running.until(sampled_after, within=30)
        report = running.stats.feeds["bybit"].books
    assert report is not None and report.gaps == 0
    assert (
        await conn.fetchval("SELECT count(*) FROM collection_outages WHERE dataset = 'books'") == 0
    )


async def test_books_follow_catalog_changes_without_a_reconnect(
    conn: asyncpg.Connection,
    catalog: dict[str, int],
    sim: SimulatorServer,
    stream_settings: Settings,
    database_urls: DatabaseUrls,
) -> None:
    async with collecting(stream_settings, database_urls.realtime, sim) as running:

        def kept() -> set[str]:
            lanes = running.collector.books.lanes.values()
            return {symbol for _, lane, _ in lanes for symbol in lane.books}

        async def newest(coin: str):
            return await conn.fetchval(
                "SELECT max(b.time) FROM books b JOIN trading_pairs t ON t.id = b.trading_pair_id"
                " JOIN coins c ON c.id = t.coin_id WHERE c.symbol = $1",
                coin,
            )

        await running.until(lambda: newest("SOL"), within=30)
        await catalog_store.sync_catalog(conn, catalog_of(["BTC", "ETH"]))  # SOL out, ETH in
        await running.until(lambda: kept() == {"BTC", "ETH"}, within=30)
        await running.until(lambda: newest("ETH"), within=30)
        sol_last = await newest("SOL")
        btc_seen = await newest("BTC")
        await running.until(
            lambda: _later_than(conn, newest, "BTC", btc_seen), within=30
        )  # BTC goes on
        assert await newest("SOL") == sol_last  # SOL is no longer sampled
        report = running.stats.feeds["hyperliquid"].books
    assert report is not None and report.books == 2 and report.gaps == 0
    assert running.stats.reconnects == 0
    assert (
        await conn.fetchval("SELECT count(*) FROM collection_outages WHERE dataset = 'books'") == 0
    )


async def _later_than(conn: asyncpg.Connection, newest, coin: str, seen) -> bool:
    latest = await newest(coin)
    return latest is not None and latest > seen
