"""Fixtures: a simulator on a free loopback port and the adapters pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from kirby_core.exchanges import BinanceHistory, HyperliquidHistory, RetryPolicy
from kirby_core.settings import Settings
from kirby_sim import SimulatorConfig, SimulatorServer

SIM_START = datetime(2025, 1, 6, 12, 0, 30, tzinfo=UTC)
"""Simulated start, 30 s before a minute boundary: at real-time speed a test has that long
before the 5000-candle window Hyperliquid keeps moves on by one candle."""

FAST_RETRIES = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=5.0, timeout=5.0)
"""Short backoffs, so that an ignored Retry-After shows up as a ~0.01 s delay in the log."""


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """A real-time simulator in the test's event loop; BTC trades every minute."""
    config = SimulatorConfig(start=SIM_START, quiet_probability={"BTC": 0.0})
    async with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def settings(sim: SimulatorServer) -> Settings:
    return Settings(
        _env_file=None,
        hyperliquid_rest_url=sim.base_url,
        hyperliquid_ws_url=sim.ws_url,
        binance_spot_url=sim.base_url,
        binance_futures_url=sim.base_url,
        bybit_rest_url=sim.base_url,
        okx_rest_url=sim.base_url,
        coinbase_rest_url=sim.base_url,
        http_timeout_seconds=5.0,
    )


@pytest.fixture
async def hyperliquid(settings: Settings) -> AsyncIterator[HyperliquidHistory]:
    async with HyperliquidHistory(settings, retry=FAST_RETRIES) as client:
        yield client


@pytest.fixture
async def binance(settings: Settings) -> AsyncIterator[BinanceHistory]:
    async with BinanceHistory(settings, retry=FAST_RETRIES) as client:
        yield client
