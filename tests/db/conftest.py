import asyncpg
import pytest
import yaml

from kirby_core.catalog import Catalog, load_catalog, parse_catalog
from kirby_core.db import catalog_store
from tests.conftest import REPO


@pytest.fixture
async def catalog(conn: asyncpg.Connection) -> dict[str, int]:
    """The realtime catalog synced; maps 'BTC/1m'-style names and 'BTC' (pair) to ids."""
    await catalog_store.sync_catalog(
        conn, load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
    )
    ids = {
        f"{s.key.coin}/{s.key.interval}": s.id for s in await catalog_store.list_starlistings(conn)
    }
    ids |= {p.key.coin: p.id for p in await catalog_store.list_trading_pairs(conn)}
    return ids


def catalog_with_usdt_perp(exchange: str) -> Catalog:
    """The realtime catalog with `exchange`'s BTC/USDT perp added (a test's own catalog)."""
    raw = yaml.safe_load((REPO / "config" / "starlistings.hyperliquid.yaml").read_text())
    raw["exchanges"].append({"name": exchange, "display_name": exchange.title()})
    raw["quote_currencies"].append({"symbol": "USDT", "name": "Tether USD"})
    raw["starlistings"].append(
        {
            "exchange": exchange,
            "coin": "BTC",
            "quote": "USDT",
            "market_type": "perps",
            "intervals": ["1m"],
        }
    )
    return parse_catalog(raw, f"test catalog with a {exchange} perp")


def bybit_catalog() -> Catalog:
    return catalog_with_usdt_perp("bybit")
