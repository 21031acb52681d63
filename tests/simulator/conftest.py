"""Fixtures: simulators on free loopback ports, and the real clients pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import ccxt
import pytest
from hyperliquid.info import Info

from kirby_sim import SimulatorConfig, SimulatorServer, run_simulator_in_thread

START = datetime(2025, 1, 6, 12, 0, 30, tzinfo=UTC)
"""A fixed simulated start (a Monday), so data-shape tests do not depend on today."""


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    """A fast simulator in the test's event loop: one simulated minute per real second.
    BTC trades every minute, so tests waiting for a BTC candle never meet a quiet one."""
    config = SimulatorConfig(speed=60, start=START, quiet_probability={"BTC": 0.0})
    async with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def threaded_sim() -> Iterator[SimulatorServer]:
    """A real-time simulator in a background thread, for the synchronous clients."""
    with run_simulator_in_thread(SimulatorConfig(start=START)) as server:
        yield server


@pytest.fixture
def info(threaded_sim: SimulatorServer) -> Iterator[Info]:
    client = Info(threaded_sim.base_url, skip_ws=True)
    yield client
    client.session.close()


def point_binance(exchange: ccxt.binance, base_url: str) -> None:
    """Replace the host of every Binance API URL by the simulator's, keeping the paths."""
    for name, url in exchange.urls["api"].items():
        if isinstance(url, str):
            exchange.urls["api"][name] = base_url + urlsplit(url).path


@pytest.fixture
def binance(threaded_sim: SimulatorServer) -> Iterator[ccxt.binance]:
    exchange = ccxt.binance({"enableRateLimit": False})
    point_binance(exchange, threaded_sim.base_url)
    yield exchange
    exchange.session.close()


@pytest.fixture
def hyperliquid(threaded_sim: SimulatorServer) -> Iterator[ccxt.hyperliquid]:
    exchange = ccxt.hyperliquid({"enableRateLimit": False})
    exchange.urls["api"] = {"public": threaded_sim.base_url, "private": threaded_sim.base_url}
    yield exchange
    exchange.session.close()
