"""BinanceHistory against the simulator: real ccxt, real HTTP."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from kirby_core.errors import ExchangeProtocolError, ExchangeUnavailable, InvalidRequest, NotFound
from kirby_core.exchanges import BinanceHistory, RetryPolicy
from kirby_core.settings import Settings
from kirby_core.timeutil import datetime_to_ms, floor_time, iter_open_times
from kirby_sim import SimulatorServer
from tests.exchanges.raw import get_json

MINUTE = timedelta(minutes=1)


def closed_range(sim: SimulatorServer, minutes: int) -> tuple[datetime, datetime]:
    end = floor_time(sim.clock.now(), "1m")
    return end - minutes * MINUTE, end


@pytest.mark.parametrize(
    ("market_type", "path", "pages"),
    [("spot", "/api/v3/klines", 3), ("perps", "/fapi/v1/klines", 2)],
)
async def test_klines_paginate_and_keep_trade_counts(
    sim: SimulatorServer, binance: BinanceHistory, market_type: str, path: str, pages: int
) -> None:
    start, end = closed_range(sim, 2400)
    requests_before = sim.http_requests

    candles = await binance.fetch_candles("BTC", "USDT", market_type, "1m", start, end)

    assert [c.time for c in candles] == list(iter_open_times(start, end, "1m"))
    assert sim.http_requests - requests_before == pages  # 1000 (spot) / 1500 (perps) a page
    # Compare every field Kirby keeps with the raw rows, across a page boundary.
    boundary = datetime_to_ms(start) + 1000 * 60_000
    raw = await get_json(
        sim,
        path,
        {"symbol": "BTCUSDT", "interval": "1m", "startTime": boundary - 120_000, "limit": 4},
    )
    by_time = {datetime_to_ms(c.time): c for c in candles}
    for row in raw:
        candle = by_time[row[0]]
        assert [str(v) for v in candle[1:6]] == row[1:6]
        assert candle.trade_count == row[8]
        assert isinstance(candle.trade_count, int)
    assert any(c.trade_count for c in candles)


async def test_unaligned_range_keeps_candles_opening_inside(
    sim: SimulatorServer, binance: BinanceHistory
) -> None:
    start, end = closed_range(sim, 600)
    start, end = start + timedelta(seconds=30), end - timedelta(seconds=30)

    candles = await binance.fetch_candles("ETH", "USDT", "perps", "1h", start, end)

    assert [c.time for c in candles] == list(iter_open_times(start, end, "1h"))
    assert candles and candles[0].time > start


async def test_unknown_symbol_is_not_found(sim: SimulatorServer, binance: BinanceHistory) -> None:
    start, end = closed_range(sim, 10)
    with pytest.raises(NotFound, match=r"Binance spot klines NOPEUSDT 1m .*Invalid symbol"):
        await binance.fetch_candles("NOPE", "USDT", "spot", "1m", start, end)


@pytest.mark.parametrize(
    ("market_type", "interval", "message"),
    [
        ("futures", "1m", "unknown market type 'futures'; allowed: spot, perps"),
        ("spot", "1M", "Binance has no '1M' klines"),
    ],
)
async def test_bad_arguments(
    binance: BinanceHistory, market_type: str, interval: str, message: str
) -> None:
    end = datetime(2025, 1, 6, 12)
    with pytest.raises(InvalidRequest, match=message):
        await binance.fetch_candles("BTC", "USDT", market_type, interval, end - MINUTE, end)


async def test_429_with_retry_after_and_5xx_are_retried(
    sim: SimulatorServer, binance: BinanceHistory, caplog: pytest.LogCaptureFixture
) -> None:
    start, end = closed_range(sim, 60)
    sim.faults.fail_next(1, 429, retry_after=1)
    sim.faults.fail_next(1, 503)  # gateway: plain text
    sim.faults.fail_next(1, 500)  # Binance's own {"code":-1000,...}, ccxt's OperationFailed

    with caplog.at_level(logging.WARNING, logger="kirby_core.exchanges.base"):
        candles = await binance.fetch_candles("SOL", "USDT", "spot", "1m", start, end)

    assert len(candles) == 60
    assert (sim.faults.injected["http_429"], sim.faults.injected["http_5xx"]) == (1, 2)
    retries = [r.getMessage() for r in caplog.records if "event=exchange_retry" in r.getMessage()]
    assert len(retries) == 3
    assert "retry=1/3 delay_s=1.000" in retries[0]  # Retry-After
    assert " 503 " in retries[1]
    assert "-1000" in retries[2]


async def test_retries_exhausted_raise_exchange_unavailable(
    sim: SimulatorServer, settings: Settings
) -> None:
    start, end = closed_range(sim, 60)
    sim.faults.fail_next(5, 502)
    policy = RetryPolicy(max_retries=2, base_delay=0.01, timeout=5.0)

    async with BinanceHistory(settings, retry=policy) as binance:
        with pytest.raises(ExchangeUnavailable) as caught:
            await binance.fetch_candles("BTC", "USDT", "perps", "1m", start, end)

    message = str(caught.value)
    assert message.startswith("Binance perps klines BTCUSDT 1m from ")
    assert "failed after 3 attempt(s)" in message
    assert sim.faults.injected["http_5xx"] == 3


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        ("non_numeric_price", "field 'close' is not a number: 'not-a-number'"),
        ("high_below_low", "is below low"),
        ("bad_json", "expected a list, got"),
    ],
)
async def test_malformed_klines_are_protocol_errors(
    sim: SimulatorServer, binance: BinanceHistory, variant: str, message: str
) -> None:
    start, end = closed_range(sim, 60)
    sim.faults.malform_next(1, "http", variant)

    with pytest.raises(ExchangeProtocolError, match=message):
        await binance.fetch_candles("BTC", "USDT", "spot", "1m", start, end)
