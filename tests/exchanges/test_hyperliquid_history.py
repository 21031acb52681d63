"""HyperliquidHistory against the simulator: real ccxt and hyperliquid-python-sdk, real HTTP."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from kirby_core.errors import ExchangeProtocolError, ExchangeUnavailable, NotFound
from kirby_core.exchanges import (
    CANDLE_LIMIT,
    FUNDING_PAGE_ROWS,
    HyperliquidHistory,
    RetryPolicy,
    TimeRange,
    candle_coverage,
)
from kirby_core.settings import Settings
from kirby_core.timeutil import datetime_to_ms, floor_time, iter_open_times
from kirby_sim import SimulatorServer
from tests.exchanges.raw import post_info

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def forming_minute(sim: SimulatorServer) -> datetime:
    return floor_time(sim.clock.now(), "1m")


async def test_candles_paginate_past_the_5000_candle_window(
    sim: SimulatorServer, hyperliquid: HyperliquidHistory
) -> None:
    end = forming_minute(sim)  # closed candles only
    start = end - (CANDLE_LIMIT + 100) * MINUTE  # two windows; the oldest 100 are gone
    coverage = candle_coverage("1m", start, end, sim.clock.now())
    assert coverage.unavailable == TimeRange(start, end - CANDLE_LIMIT * MINUTE)
    requests_before = sim.http_requests

    candles = await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", start, end)

    assert coverage.available is not None
    assert [c.time for c in candles] == list(iter_open_times(*coverage.available, "1m"))
    assert len(candles) == CANDLE_LIMIT
    # ccxt's load_markets (4 requests), then one candleSnapshot per window.
    assert sim.http_requests - requests_before == 4 + 2
    # Every digit as the exchange sent it, across the window boundary too.
    boundary = datetime_to_ms(start) + CANDLE_LIMIT * 60_000
    raw = await post_info(
        sim,
        {
            "type": "candleSnapshot",
            "req": {
                "coin": "BTC",
                "interval": "1m",
                "startTime": boundary - 120_000,
                "endTime": boundary + 60_000,
            },
        },
    )
    assert len(raw) == 4
    by_time = {datetime_to_ms(c.time): c for c in candles}
    for row in raw:
        candle = by_time[row["t"]]
        assert [str(v) for v in candle[1:6]] == [row[k] for k in "ohlcv"]
        assert candle.trade_count == row["n"] > 0


async def test_candles_older_than_the_exchange_keeps_are_unavailable_at_source(
    sim: SimulatorServer, hyperliquid: HyperliquidHistory
) -> None:
    now = sim.clock.now()
    oldest = forming_minute(sim) - CANDLE_LIMIT * MINUTE
    start, end = oldest - 2 * HOUR, oldest - HOUR

    coverage = candle_coverage("1m", start, end, now)
    candles = await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", start, end)

    assert coverage.available is None
    assert coverage.unavailable == TimeRange(start, end)
    assert candles == []  # what a backfill must not report as success


async def test_candles_of_an_unlisted_coin_are_not_found(hyperliquid: HyperliquidHistory) -> None:
    end = datetime(2025, 1, 6, 12)
    with pytest.raises(NotFound, match=r"Hyperliquid has no market NOPE/USDC:USDC"):
        await hyperliquid.fetch_candles("NOPE", "USD", "perps", "1m", end - HOUR, end)


async def test_funding_history_pages_by_500_rows(
    sim: SimulatorServer, hyperliquid: HyperliquidHistory
) -> None:
    end = floor_time(sim.clock.now(), "1h")
    start = end - 700 * HOUR
    requests_before = sim.http_requests

    rows = await hyperliquid.fetch_funding_rates("BTC", "USD", start, end)

    # Settlements land a few ms after each hour: the one at `start` is in, at `end` out.
    assert [r.time for r in rows] == [start + i * HOUR for i in range(700)]
    # spotMeta and meta for the SDK's Info, then two pages.
    assert sim.http_requests - requests_before == 2 + 2
    assert FUNDING_PAGE_ROWS < 700
    assert all(r.settled_funding_rate is not None and r.settled_premium is not None for r in rows)
    assert all(r.predicted_funding_rate is None and r.mark_price is None for r in rows)
    raw = await post_info(
        sim,
        {
            "type": "fundingHistory",
            "coin": "BTC",
            "startTime": datetime_to_ms(start + 499 * HOUR),
            "endTime": datetime_to_ms(start + 501 * HOUR),
        },
    )
    assert len(raw) == 2  # the last row of page one and the first of page two
    for item, row in zip(raw, rows[499:501], strict=True):
        assert str(row.settled_funding_rate) == item["fundingRate"]
        assert str(row.settled_premium) == item["premium"]
        assert isinstance(row.settled_funding_rate, Decimal)


async def test_funding_of_an_unlisted_coin_is_not_found(hyperliquid: HyperliquidHistory) -> None:
    end = datetime(2025, 1, 6, 12)
    with pytest.raises(NotFound, match=r"Hyperliquid has no perp 'NOPE'"):
        await hyperliquid.fetch_funding_rates("NOPE", "USD", end - HOUR, end)


async def test_429_with_retry_after_then_success(
    sim: SimulatorServer, hyperliquid: HyperliquidHistory, caplog: pytest.LogCaptureFixture
) -> None:
    end = forming_minute(sim)
    sim.faults.fail_next(1, 429, retry_after=1)  # hits ccxt's load_markets
    with caplog.at_level(logging.WARNING, logger="kirby_core.exchanges.base"):
        candles = await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", end - HOUR, end)
        sim.faults.fail_next(1, 429, retry_after=1)  # hits the SDK's spotMeta
        rows = await hyperliquid.fetch_funding_rates("BTC", "USD", end - 5 * HOUR, end)

    assert len(candles) == 60 and len(rows) == 5
    assert sim.faults.injected["http_429"] == 2
    retries = [r.getMessage() for r in caplog.records if "event=exchange_retry" in r.getMessage()]
    assert len(retries) == 2
    assert all("delay_s=1.000" in line for line in retries)  # Retry-After, not the 0.01 backoff
    assert "call='Hyperliquid load_markets'" in retries[0]
    assert "call='Hyperliquid spotMeta'" in retries[1]


async def test_5xx_is_retried_then_succeeds(
    sim: SimulatorServer, hyperliquid: HyperliquidHistory
) -> None:
    end = forming_minute(sim)
    await hyperliquid.fetch_funding_rates("BTC", "USD", end - HOUR, end)  # SDK client built
    await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", end - MINUTE, end)  # markets

    sim.faults.fail_next(3, 502)
    candles = await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", end - HOUR, end)
    sim.faults.fail_next(3, 503)
    rows = await hyperliquid.fetch_funding_rates("BTC", "USD", end - 5 * HOUR, end)

    assert len(candles) == 60 and len(rows) == 5
    assert sim.faults.injected["http_5xx"] == 6


async def test_retries_exhausted_raise_exchange_unavailable(
    sim: SimulatorServer, settings: Settings
) -> None:
    end = forming_minute(sim)
    policy = RetryPolicy(max_retries=2, base_delay=0.01, timeout=5.0)
    async with HyperliquidHistory(settings, retry=policy) as hyperliquid:
        await hyperliquid.fetch_funding_rates("BTC", "USD", end - HOUR, end)
        await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", end - MINUTE, end)

        sim.faults.fail_next(3, 500)
        with pytest.raises(ExchangeUnavailable) as candles_error:
            await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", end - HOUR, end)
        sim.faults.fail_next(3, 503)
        with pytest.raises(ExchangeUnavailable) as funding_error:
            await hyperliquid.fetch_funding_rates("BTC", "USD", end - HOUR, end)

    assert str(candles_error.value).startswith("Hyperliquid candleSnapshot BTC 1m from ")
    assert "failed after 3 attempt(s)" in str(candles_error.value)
    assert str(funding_error.value).startswith("Hyperliquid fundingHistory BTC from ")
    assert "failed after 3 attempt(s): HTTP 503" in str(funding_error.value)


async def test_unreachable_exchange_is_unavailable() -> None:
    closed_port = Settings(_env_file=None, hyperliquid_rest_url="http://127.0.0.1:9")
    policy = RetryPolicy(max_retries=1, base_delay=0.01, timeout=2.0)
    end = datetime(2025, 1, 6, 12)
    async with HyperliquidHistory(closed_port, retry=policy) as hyperliquid:
        with pytest.raises(ExchangeUnavailable, match="Hyperliquid load_markets failed after 2"):
            await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", end - HOUR, end)
        with pytest.raises(ExchangeUnavailable, match="Hyperliquid spotMeta failed after 2"):
            await hyperliquid.fetch_funding_rates("BTC", "USD", end - HOUR, end)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("non_numeric_price", "field 'c' is not a number: 'not-a-number'"),
        ("high_below_low", "is below low"),
        ("unknown_coin", "got a candle of NOSUCHCOIN 1m"),
        ("bad_json", "expected a list, got"),
    ],
)
async def test_malformed_candles_are_protocol_errors(
    sim: SimulatorServer, hyperliquid: HyperliquidHistory, variant: str, message: str
) -> None:
    end = forming_minute(sim)
    sim.faults.malform_next(1, "http", variant)

    with pytest.raises(ExchangeProtocolError, match=message):
        await hyperliquid.fetch_candles("BTC", "USD", "perps", "1m", end - HOUR, end)


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("non_numeric_price", "field 'fundingRate' is not a number: 'not-a-number'"),
        ("unknown_coin", "got a row of 'NOSUCHCOIN'"),
    ],
)
async def test_malformed_funding_is_a_protocol_error(
    sim: SimulatorServer, hyperliquid: HyperliquidHistory, variant: str, message: str
) -> None:
    end = forming_minute(sim)
    sim.faults.malform_next(1, "http", variant)

    with pytest.raises(ExchangeProtocolError, match=message):
        await hyperliquid.fetch_funding_rates("BTC", "USD", end - 5 * HOUR, end)
