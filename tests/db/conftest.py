import asyncpg
import pytest

from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from tests.conftest import REPO


@pytest.fixture
async def catalog(conn: asyncpg.Connection) -> dict[str, int]:
    """The realtime catalog synced; maps 'BTC/1m'-style names and 'BTC' (pair) to ids."""
    await catalog_store.sync_catalog(conn, load_catalog(REPO / "config" / "starlistings.yaml"))
    ids = {
        f"{s.key.coin}/{s.key.interval}": s.id for s in await catalog_store.list_starlistings(conn)
    }
    ids |= {p.key.coin: p.id for p in await catalog_store.list_trading_pairs(conn)}
    return ids
