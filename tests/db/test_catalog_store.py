import asyncpg
import pytest
import yaml

from kirby_core.catalog import StarlistingKey, TradingPairKey, load_catalog, parse_catalog
from kirby_core.db import catalog_store
from kirby_core.errors import NotFound
from tests.conftest import REPO

REALTIME = load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
TRAINING = load_catalog(REPO / "config" / "training_stars.yaml")


async def test_sync_creates_then_changes_nothing(conn: asyncpg.Connection) -> None:
    first = await catalog_store.sync_catalog(conn, REALTIME)
    assert (first.starlistings_created, first.trading_pairs_created) == (8, 2)
    assert first.changed
    stars = await catalog_store.list_starlistings(conn)
    assert [str(s.key) for s in stars[:4]] == [
        "hyperliquid/BTC/USD/perps/1m",
        "hyperliquid/BTC/USD/perps/15m",
        "hyperliquid/BTC/USD/perps/4h",
        "hyperliquid/BTC/USD/perps/1d",
    ]
    assert {s.interval_seconds for s in stars} == {60, 900, 14400, 86400}

    snapshot = await conn.fetch("SELECT * FROM starlistings ORDER BY id")
    second = await catalog_store.sync_catalog(conn, REALTIME)
    assert not second.changed
    assert (second.active_starlistings, second.active_trading_pairs) == (8, 2)
    assert await conn.fetch("SELECT * FROM starlistings ORDER BY id") == snapshot


async def test_training_catalog(training_conn: asyncpg.Connection) -> None:
    report = await catalog_store.sync_catalog(training_conn, TRAINING)
    assert (report.active_starlistings, report.active_trading_pairs) == (24, 4)
    pairs = await catalog_store.list_trading_pairs(training_conn)
    assert {str(p.key) for p in pairs} == {
        "binance/BTC/USDT/perps",
        "binance/BTC/USDT/spot",
        "binance/ETH/USDT/perps",
        "binance/SOL/USDT/perps",
    }


async def test_removed_entries_are_deactivated_then_reactivated(conn: asyncpg.Connection) -> None:
    await catalog_store.sync_catalog(conn, REALTIME)
    raw = yaml.safe_load((REPO / "config" / "starlistings.hyperliquid.yaml").read_text())
    raw["starlistings"] = [raw["starlistings"][0]]  # only BTC left
    raw["starlistings"][0]["intervals"] = ["1m", "15m"]
    report = await catalog_store.sync_catalog(conn, parse_catalog(raw, "edited"))
    assert (report.starlistings_deactivated, report.trading_pairs_deactivated) == (6, 1)
    assert await conn.fetchval("SELECT count(*) FROM starlistings") == 8  # never deleted
    assert [str(s.key) for s in await catalog_store.list_starlistings(conn)] == [
        "hyperliquid/BTC/USD/perps/1m",
        "hyperliquid/BTC/USD/perps/15m",
    ]

    back = await catalog_store.sync_catalog(conn, REALTIME)
    assert (back.starlistings_reactivated, back.trading_pairs_reactivated) == (6, 1)
    assert back.starlistings_created == 0
    assert len(await catalog_store.list_starlistings(conn)) == 8


async def test_lookup_by_key(conn: asyncpg.Connection) -> None:
    await catalog_store.sync_catalog(conn, REALTIME)
    found = await catalog_store.get_starlisting(
        conn, StarlistingKey("hyperliquid", "SOL", "USD", "perps", "4h")
    )
    pair = await catalog_store.get_trading_pair(
        conn, TradingPairKey("hyperliquid", "SOL", "USD", "perps")
    )
    assert found.trading_pair_id == pair.id
    with pytest.raises(NotFound, match="unknown starlisting hyperliquid/ETH/USD/perps/1m"):
        await catalog_store.get_starlisting(
            conn, StarlistingKey("hyperliquid", "ETH", "USD", "perps", "1m")
        )
