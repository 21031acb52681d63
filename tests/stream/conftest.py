"""Fixtures for the collector's tests: the realtime catalog, a fast simulator, fast settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from kirby_core.catalog import load_catalog
from kirby_core.db import catalog_store
from kirby_core.settings import Settings
from kirby_sim import SimulatorConfig, SimulatorServer
from tests.conftest import REPO
from tests.stream.helpers import fast

START = datetime(2025, 1, 6, 12, 12, 30, tzinfo=UTC)
"""Simulated start: 2.5 simulated minutes before a 15m candle closes."""
SPEED = 60
"""Simulated seconds per real second: a simulated minute per second."""


@pytest.fixture
async def catalog(conn: asyncpg.Connection) -> dict[str, int]:
    """The realtime catalog (BTC, SOL x 1m/15m/4h/1d) synced; 'BTC/1m' and 'BTC' -> ids."""
    await catalog_store.sync_catalog(
        conn, load_catalog(REPO / "config" / "starlistings.hyperliquid.yaml")
    )
    ids = {
        f"{s.key.coin}/{s.key.interval}": s.id for s in await catalog_store.list_starlistings(conn)
    }
    ids |= {p.key.coin: p.id for p in await catalog_store.list_trading_pairs(conn)}
    return ids


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """A simulator at 60x whose BTC and SOL trade every minute (a final candle per minute)."""
    config = SimulatorConfig(speed=SPEED, start=START, quiet_probability={"BTC": 0.0, "SOL": 0.0})
    async with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def stream_settings(settings: Settings, sim: SimulatorServer) -> Settings:
    return fast(settings, hyperliquid_ws_url=sim.ws_url)
