"""Bybit, OKX and Coinbase history, and Binance's funding and open interest, against the
simulator: real ccxt, real HTTP, compared value by value with the simulator's own market."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from kirby_core.errors import ExchangeProtocolError, InvalidRequest, NotFound
from kirby_core.exchanges import BinanceHistory, BybitHistory, CoinbaseHistory, OkxHistory
from kirby_core.exchanges.registry import EXCHANGES
from kirby_core.models import Candle, FundingRate
from kirby_core.settings import Settings
from kirby_core.timeutil import (
    datetime_to_ms,
    floor_minute,
    floor_time,
    interval_delta,
    ms_to_datetime,
)
from kirby_sim import SimulatorServer
from kirby_sim.derivatives import RATE_DECIMALS
from kirby_sim.perp_stats import PerpStats
from kirby_sim.universe import (
    BINANCE_USDM_VENUE,
    BYBIT_LINEAR_VENUE,
    BYBIT_SPOT_VENUE,
    COINBASE_VENUE,
    OKX_SPOT_VENUE,
    OKX_SWAP_VENUE,
)
from tests.exchanges.conftest import FAST_RETRIES

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


@pytest.fixture
async def bybit(settings: Settings) -> AsyncIterator[BybitHistory]:
    async with BybitHistory(settings, retry=FAST_RETRIES) as client:
        yield client


@pytest.fixture
async def okx(settings: Settings) -> AsyncIterator[OkxHistory]:
    async with OkxHistory(settings, retry=FAST_RETRIES) as client:
        yield client


@pytest.fixture
async def coinbase(settings: Settings) -> AsyncIterator[CoinbaseHistory]:
    async with CoinbaseHistory(settings, retry=FAST_RETRIES) as client:
        yield client


CLIENTS: dict[str, type[BybitHistory | OkxHistory | CoinbaseHistory | BinanceHistory]] = {
    "bybit": BybitHistory,
    "okx": OkxHistory,
    "coinbase": CoinbaseHistory,
    "binance": BinanceHistory,
}
"""Each exchange's history client, by the name its declaration has."""


def simulated_candles(
    sim: SimulatorServer, venue: str, symbol: str, interval: str, start: datetime, end: datetime
) -> list[Candle]:
    """The simulator's own candles opening in [start, end), as exact decimals."""
    book = sim.market.book(venue, symbol)
    assert book is not None
    inst = book.instrument
    now = sim.clock.now_ms()
    bars = book.bars(interval, datetime_to_ms(start), datetime_to_ms(end) - 1, now)

    def price(units: int) -> Decimal:
        return Decimal(units).scaleb(-inst.price_decimals)

    return [
        Candle(
            ms_to_datetime(bar.open_ms),
            price(bar.open),
            price(bar.high),
            price(bar.low),
            price(bar.close),
            Decimal(bar.volume).scaleb(-inst.size_decimals),
        )
        for bar in bars
    ]


def perp(sim: SimulatorServer, venue: str, symbol: str) -> PerpStats:
    stats = sim.market.perp(venue, symbol)
    assert stats is not None
    return stats


def simulated_funding(stats: PerpStats, start: datetime, end: datetime) -> list[FundingRate]:
    rows = stats.funding_rows(datetime_to_ms(start), datetime_to_ms(end) - 1)
    return [
        FundingRate(
            floor_minute(ms_to_datetime(row.time_ms)),
            settled_funding_rate=Decimal(row.rate).scaleb(-RATE_DECIMALS),
        )
        for row in rows
    ]


def closed_range(sim: SimulatorServer, interval: str, count: int) -> tuple[datetime, datetime]:
    end = floor_time(sim.clock.now(), interval)
    return end - count * interval_delta(interval), end


CANDLE_CASES = [
    # client fixture, market type, venue, symbol, quote, interval, candles, requests
    ("bybit", "perps", BYBIT_LINEAR_VENUE, "BTCUSDT", "USDT", "1m", 2400, 3),
    ("bybit", "spot", BYBIT_SPOT_VENUE, "ETHUSDT", "USDT", "15m", 1500, 2),
    ("okx", "perps", OKX_SWAP_VENUE, "BTC-USDT-SWAP", "USDT", "1m", 250, 3),
    ("okx", "spot", OKX_SPOT_VENUE, "ETH-USDT", "USDT", "4h", 150, 2),
    ("okx", "perps", OKX_SWAP_VENUE, "SOL-USDT-SWAP", "USDT", "1d", 120, 2),
    ("coinbase", "spot", COINBASE_VENUE, "BTC-USD", "USD", "1m", 700, 3),
    ("coinbase", "spot", COINBASE_VENUE, "ETH-USD", "USD", "1d", 400, 2),
]


@pytest.mark.parametrize(
    ("client", "market_type", "venue", "symbol", "quote", "interval", "count", "requests"),
    CANDLE_CASES,
)
async def test_candles_page_and_equal_the_simulators(
    sim: SimulatorServer,
    settings: Settings,
    client: str,
    market_type: str,
    venue: str,
    symbol: str,
    quote: str,
    interval: str,
    count: int,
    requests: int,
) -> None:
    start, end = closed_range(sim, interval, count)
    coin = symbol[:3].rstrip("-")
    before = sim.http_requests

    async with CLIENTS[client](settings, retry=FAST_RETRIES) as history:
        candles = await history.fetch_candles(coin, quote, market_type, interval, start, end)

    assert sim.http_requests - before == requests  # more than one page each
    expected = simulated_candles(sim, venue, symbol, interval, start, end)
    assert candles == expected and len(expected) > count // 2
    assert all(isinstance(c.open, Decimal) and c.trade_count is None for c in candles)
    assert start <= candles[0].time and candles[-1].time <= end - interval_delta(interval)
    declared = EXCHANGES[client]
    assert market_type in declared.market_types and interval in declared.intervals


async def test_okx_days_open_at_utc_midnight(sim: SimulatorServer, okx: OkxHistory) -> None:
    start, end = closed_range(sim, "1d", 3)
    candles = await okx.fetch_candles("BTC", "USDT", "spot", "1d", start, end)
    assert [c.time.hour for c in candles] == [0, 0, 0]


async def test_okx_leaves_out_the_unconfirmed_forming_candle(
    sim: SimulatorServer, okx: OkxHistory
) -> None:
    start = floor_time(sim.clock.now(), "1m") - 5 * MINUTE
    candles = await okx.fetch_candles("BTC", "USDT", "perps", "1m", start, start + 10 * MINUTE)
    forming = floor_time(sim.clock.now(), "1m")
    assert [c.time for c in candles] == [start + i * MINUTE for i in range(len(candles))]
    assert len(candles) >= 5 and candles[-1].time < forming


async def test_bad_arguments_name_the_value(
    bybit: BybitHistory, okx: OkxHistory, coinbase: CoinbaseHistory, sim: SimulatorServer
) -> None:
    start, end = closed_range(sim, "1m", 10)
    with pytest.raises(InvalidRequest, match=r"'4h'.*allowed: 1m"):
        await coinbase.fetch_candles("BTC", "USD", "spot", "4h", start, end)
    with pytest.raises(InvalidRequest, match="market type 'perps'"):
        await coinbase.fetch_candles("BTC", "USD", "perps", "1m", start, end)
    with pytest.raises(InvalidRequest, match="market type 'inverse'"):
        await bybit.fetch_candles("BTC", "USD", "inverse", "1m", start, end)
    with pytest.raises(InvalidRequest, match="'1M'"):
        await okx.fetch_candles("BTC", "USDT", "spot", "1M", start, end)


async def test_unknown_symbol_is_refused_clearly(sim: SimulatorServer, bybit: BybitHistory) -> None:
    start, end = closed_range(sim, "1m", 10)
    with pytest.raises((ExchangeProtocolError, NotFound), match="NOPEUSDT"):
        await bybit.fetch_candles("NOPE", "USDT", "perps", "1m", start, end)


FUNDING_CASES = [
    # client fixture, venue, symbol, days, requests (8-hourly settlements)
    ("bybit", BYBIT_LINEAR_VENUE, "BTCUSDT", 100, 2),  # 300 rows, 200 a page
    ("okx", OKX_SWAP_VENUE, "ETH-USDT-SWAP", 50, 2),  # 150 rows, 100 a page
    ("binance", BINANCE_USDM_VENUE, "SOLUSDT", 400, 2),  # 1200 rows, 1000 a page
]


@pytest.mark.parametrize(("client", "venue", "symbol", "days", "requests"), FUNDING_CASES)
async def test_funding_history_pages_and_equals_the_simulators(
    sim: SimulatorServer,
    settings: Settings,
    client: str,
    venue: str,
    symbol: str,
    days: int,
    requests: int,
) -> None:
    end = floor_time(sim.clock.now(), "1h")
    start = end - days * DAY
    coin = symbol.removesuffix("USDT").split("-")[0]
    before = sim.http_requests

    async with CLIENTS[client](settings, retry=FAST_RETRIES) as history:
        assert not isinstance(history, CoinbaseHistory)
        rates = await history.fetch_funding_rates(coin, "USDT", start, end)

    assert sim.http_requests - before == requests
    assert rates == simulated_funding(perp(sim, venue, symbol), start, end)
    assert len(rates) == days * 3
    assert EXCHANGES[client].funding_history is CLIENTS[client]


OPEN_INTEREST_CASES = [
    # client fixture, venue, symbol, hours, requests (5-minute points)
    ("bybit", BYBIT_LINEAR_VENUE, "BTCUSDT", 48, 3),  # 576 points, 200 a page
    ("okx", OKX_SWAP_VENUE, "BTC-USDT-SWAP", 24, 3),  # 288 points, 100 a page
    ("binance", BINANCE_USDM_VENUE, "ETHUSDT", 72, 2),  # 864 points, 500 a page
]


@pytest.mark.parametrize(("client", "venue", "symbol", "hours", "requests"), OPEN_INTEREST_CASES)
async def test_open_interest_history_pages_and_equals_the_simulators(
    sim: SimulatorServer,
    settings: Settings,
    client: str,
    venue: str,
    symbol: str,
    hours: int,
    requests: int,
) -> None:
    end = floor_time(sim.clock.now(), "1h")
    start = end - timedelta(hours=hours)
    coin = symbol.removesuffix("USDT").split("-")[0]
    stats = perp(sim, venue, symbol)
    decimals = stats.instrument.size_decimals
    before = sim.http_requests

    async with CLIENTS[client](settings, retry=FAST_RETRIES) as history:
        assert not isinstance(history, CoinbaseHistory)
        points = await history.fetch_open_interest(coin, "USDT", start, end)

    assert sim.http_requests - before == requests
    expected_times = [start + i * 5 * MINUTE for i in range(hours * 12)]
    assert [p.time for p in points] == expected_times
    for point in points:
        lots = stats.open_interest(datetime_to_ms(point.time))
        assert point.open_interest == Decimal(lots).scaleb(-decimals)
    assert EXCHANGES[client].open_interest_history is CLIENTS[client]


async def test_binance_open_interest_beyond_30_days_is_unavailable_at_source(
    sim: SimulatorServer, binance: BinanceHistory
) -> None:
    now = sim.clock.now()
    window = EXCHANGES["binance"].source_window("open_interest", "1m", now)
    assert window.oldest == now - timedelta(days=30)
    inside = await binance.fetch_open_interest("BTC", "USDT", window.oldest + DAY, now)
    assert inside and inside[0].time >= window.oldest
    with pytest.raises(ExchangeProtocolError, match="startTime"):
        await binance.fetch_open_interest(
            "BTC", "USDT", window.oldest - DAY, window.oldest - DAY / 2
        )


async def test_okx_open_interest_beyond_its_1440_periods_is_unavailable_at_source(
    sim: SimulatorServer, okx: OkxHistory
) -> None:
    now = sim.clock.now()
    window = EXCHANGES["okx"].source_window("open_interest", "1m", now)
    assert window.oldest == now - timedelta(days=5)
    assert await okx.fetch_open_interest("BTC", "USDT", now - 7 * DAY, now - 6 * DAY) == []


async def test_request_limits_are_respected_without_a_refusal(
    sim: SimulatorServer,
    okx: OkxHistory,
    coinbase: CoinbaseHistory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """OKX's statistics endpoint allows 5 requests per 2 s, Coinbase 10 a second: pages that
    come faster wait on the budget (whether they do depends on how fast this machine sends
    them, so the waits are not counted here), and the simulator, which answers 429 beyond
    the limits, never refuses one: no request is retried."""
    caplog.set_level(logging.DEBUG, logger="kirby_core.exchanges")
    now = floor_time(sim.clock.now(), "1h")
    statistics = okx.budgets["rubik/stat/contracts/open-interest-history"]
    candles = coinbase.budget

    points = await okx.fetch_open_interest("SOL", "USDT", now - 4 * DAY, now)
    minutes = await coinbase.fetch_candles("BTC", "USD", "spot", "1m", now - 60 * 60 * MINUTE, now)

    assert len(points) == 4 * 288 and len(minutes) == 3600
    assert statistics.spent == 12 and candles.spent == 12
    retries = [r for r in caplog.records if "event=exchange_retry" in r.getMessage()]
    assert retries == []


@pytest.mark.parametrize("client", ["bybit", "okx", "coinbase"])
async def test_rate_limits_answered_the_exchanges_way_are_retried(
    sim: SimulatorServer, settings: Settings, client: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each exchange says "too many requests" its own way (Bybit 403, OKX 429 code 50011,
    Coinbase 429 RATE_LIMIT_EXCEEDED, which ccxt maps to no rate-limit error): all of them
    are rate limits, waited out and retried, never a refusal."""
    end = floor_minute(sim.clock.now())
    sim.faults.fail_next(2, 429, retry_after=None)
    with caplog.at_level(logging.WARNING, logger="kirby_core.exchanges.base"):
        async with CLIENTS[client](settings, retry=FAST_RETRIES) as history:
            candles = await history.fetch_candles(
                "BTC",
                "USD" if client == "coinbase" else "USDT",
                "spot",
                "1m",
                end - 10 * MINUTE,
                end,
            )
    assert [c.time for c in candles] == [end - (10 - i) * MINUTE for i in range(10)]
    assert sim.faults.injected["http_429"] == 2
    retries = [r.getMessage() for r in caplog.records if "event=exchange_retry" in r.getMessage()]
    assert len(retries) == 2, retries
