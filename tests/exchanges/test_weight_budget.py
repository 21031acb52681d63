"""Request weights enforced client-side: each request spends its declared weight first.

`FakeTime` moves only when someone waits, and the simulator's weight limits read it too, so
waits are counted exactly and nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest

from kirby_core.errors import ExchangeUnavailable
from kirby_core.exchanges import BinanceHistory, HyperliquidHistory
from kirby_core.exchanges.binance import WEIGHTS
from kirby_core.exchanges.hyperliquid import CANDLE_LIMIT, INFO_WEIGHT, WEIGHT
from kirby_core.exchanges.weights import ARRIVAL_MARGIN_SECONDS, Burst, WeightBudget
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_time
from kirby_sim import SimulatorConfig, SimulatorServer
from tests.exchanges.conftest import FAST_RETRIES, SIM_START

MINUTE = timedelta(minutes=1)
LIMIT = 300
"""The simulator's Hyperliquid weight per minute in these tests: three candle pages."""


class FakeTime:
    """A monotonic clock that advances only by what is slept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_spending_within_the_minute_does_not_wait() -> None:
    time = FakeTime()
    budget = WeightBudget("x", 100, time)
    for weight in (60, 30, 10):
        await budget.spend(weight)
    assert (budget.spent, budget.used(), budget.waits, time.slept) == (100, 100, 0, [])


async def test_a_burst_window_is_counted_besides_the_minute() -> None:
    """OKX-style: 5 per 2 s within 12 a minute. The sixth request waits for the first to
    leave the 2 s window (and the arrival margin), not the minute; the minute's allowance
    still applies."""
    time = FakeTime()
    budget = WeightBudget("x", 12, time, Burst(weight=5, seconds=2.0))
    for _ in range(6):
        await budget.spend(1)
    assert (time.slept, budget.used(2.0), budget.used()) == ([2.0 + ARRIVAL_MARGIN_SECONDS], 1, 6)
    for _ in range(6):
        await budget.spend(1)
    assert budget.used() == 12
    await budget.spend(1)  # the minute is full: wait for its first request to leave it
    assert time.now - 1000.0 >= 60.0 and budget.spent == 13


def test_a_burst_window_must_be_shorter_than_the_minute() -> None:
    with pytest.raises(ValueError, match="0 < seconds < 60"):
        WeightBudget("x", 100, FakeTime(), Burst(weight=5, seconds=60.0))


async def test_a_request_waits_until_enough_weight_leaves_the_minute() -> None:
    time = FakeTime()
    budget = WeightBudget("x", 100, time)
    await budget.spend(60)
    time.now += 10
    await budget.spend(30)
    await budget.spend(40)  # 130 > 100: waits for the 60 spent 50 s ago to leave
    assert time.slept == [50.0]
    assert (budget.spent, budget.used(), budget.waits, budget.waited_seconds) == (130, 70, 1, 50)


async def test_a_request_heavier_than_the_minute_waits_for_an_empty_one() -> None:
    time = FakeTime()
    budget = WeightBudget("x", 100, time)
    await budget.spend(10)
    await budget.spend(150)
    assert (time.slept, budget.used()) == ([60.0], 150)


def test_a_budget_needs_a_positive_allowance() -> None:
    with pytest.raises(ValueError, match="x: weight per minute must be positive, got 0"):
        WeightBudget("x", 0)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def tight_sim(time: FakeTime) -> AsyncIterator[SimulatorServer]:
    """A simulator allowing `LIMIT` weight a minute, counted on `time`."""
    config = SimulatorConfig(
        start=SIM_START, quiet_probability={"BTC": 0.0}, weight_per_minute=LIMIT
    )
    async with SimulatorServer(config, rate_clock=time.monotonic) as server:
        yield server


def tight_settings(sim: SimulatorServer) -> Settings:
    return Settings(_env_file=None, hyperliquid_rest_url=sim.base_url, http_timeout_seconds=5.0)


async def fetch_latest_candles(
    client: HyperliquidHistory, sim: SimulatorServer, times: int
) -> None:
    """The latest `CANDLE_LIMIT` 1m candles, `times` times: one full page each."""
    end = floor_time(sim.clock.now(), "1m")
    for _ in range(times):
        candles = await client.fetch_candles(
            "BTC", "USD", "perps", "1m", end - CANDLE_LIMIT * MINUTE, end
        )
        assert len(candles) == CANDLE_LIMIT


async def test_without_a_budget_the_exchange_refuses(
    tight_sim: SimulatorServer, time: FakeTime
) -> None:
    unlimited = replace(WEIGHT, per_minute=10**9)
    async with HyperliquidHistory(
        tight_settings(tight_sim), retry=FAST_RETRIES, weight=unlimited, clock=time
    ) as client:
        # markets (4 x 20) + two pages (2 x 103) = 286: the third page's request is refused
        with pytest.raises(ExchangeUnavailable, match="rate limited: Retry-After 60 s"):
            await fetch_latest_candles(client, tight_sim, 3)
    assert time.slept == []


async def test_the_declared_budget_waits_instead_of_being_refused(
    tight_sim: SimulatorServer, time: FakeTime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="kirby_core.exchanges.weights")
    requests_before = tight_sim.http_requests
    async with HyperliquidHistory(
        tight_settings(tight_sim),
        retry=FAST_RETRIES,
        weight=replace(WEIGHT, per_minute=LIMIT),
        clock=time,
    ) as client:
        await fetch_latest_candles(client, tight_sim, 6)
        budget = client.budget

    # minute 1: markets 80 + pages 103 + 103; minute 2: pages 3 and 4; minute 3: 5 and 6
    assert budget.spent == 4 * INFO_WEIGHT + 6 * WEIGHT.candle_page == 4 * 20 + 6 * 103
    assert (budget.waits, time.slept) == (2, [60.0, 60.0])
    assert tight_sim.http_requests - requests_before == 4 + 6  # nothing refused, nothing retried
    waits = [
        r.getMessage() for r in caplog.records if "event=exchange_weight_wait" in r.getMessage()
    ]
    assert len(waits) == 2
    assert "exchange='hyperliquid' weight=103 used=286 per_minute=300 delay_s=60.000" in waits[0]
    assert not [r for r in caplog.records if "event=exchange_retry" in r.getMessage()]


async def test_a_short_page_spends_what_its_rows_weigh(
    sim: SimulatorServer, hyperliquid: HyperliquidHistory
) -> None:
    end = floor_time(sim.clock.now(), "1m")
    await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", end - 600 * MINUTE, end)
    # markets, then one page of 600 candles: 20 + 600 / 60, not a full page's 103
    assert hyperliquid.budget.spent == 4 * INFO_WEIGHT + INFO_WEIGHT + 600 // 60 == 110


async def test_clients_of_one_host_spend_one_budget(
    tight_sim: SimulatorServer, time: FakeTime
) -> None:
    """Backfill runs one after another in one process open a client each."""
    settings, weight = tight_settings(tight_sim), replace(WEIGHT, per_minute=LIMIT)
    async with HyperliquidHistory(settings, retry=FAST_RETRIES, weight=weight, clock=time) as a:
        await fetch_latest_candles(a, tight_sim, 2)  # markets 80 + two pages: 286
    async with HyperliquidHistory(settings, retry=FAST_RETRIES, weight=weight, clock=time) as b:
        await fetch_latest_candles(b, tight_sim, 1)  # its first markets request waits

    assert b.budget is a.budget
    assert (b.budget.spent, time.slept) == (2 * (80 + 103) + 103, [60.0])


async def test_binance_spends_per_market_type(
    sim: SimulatorServer, binance: BinanceHistory
) -> None:
    end = floor_time(sim.clock.now(), "1m")
    for market_type in ("spot", "perps"):
        await binance.fetch_candles("BTC", "USDT", market_type, "1m", end - 2400 * MINUTE, end)
    spent = {market_type: budget.spent for market_type, budget in binance.budgets.items()}
    # 1000-row spot pages weigh 2, 1500-row USD-M pages 10
    assert spent == {
        "spot": 3 * WEIGHTS["spot"].candle_page,
        "perps": 2 * WEIGHTS["perps"].candle_page,
    }
    assert spent == {"spot": 6, "perps": 20}
