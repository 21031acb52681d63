"""Pure parts of the adapters: symbols, coverage, Binance kline rows, host replacement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges import (
    CANDLE_LIMIT,
    HAS_OPEN_INTEREST_HISTORY,
    SourceCoverage,
    TimeRange,
    binance_symbol,
    candle_coverage,
    ccxt_symbol,
    open_interest_coverage,
    parse_klines,
)
from kirby_core.exchanges.binance import replace_hosts
from kirby_core.models import Candle

NOW = datetime(2024, 7, 1, 12, 34, 56, tzinfo=UTC)
OLDEST_1M = datetime(2024, 7, 1, 12, 34, tzinfo=UTC) - timedelta(minutes=CANDLE_LIMIT)


def at(minutes: int) -> datetime:
    """OLDEST_1M shifted by `minutes`."""
    return OLDEST_1M + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (at(-100), at(-10), SourceCoverage(None, TimeRange(at(-100), at(-10)))),
        (at(-100), at(0), SourceCoverage(None, TimeRange(at(-100), at(0)))),
        (at(-100), at(50), SourceCoverage(TimeRange(at(0), at(50)), TimeRange(at(-100), at(0)))),
        (at(0), at(50), SourceCoverage(TimeRange(at(0), at(50)), None)),
        (at(10), NOW, SourceCoverage(TimeRange(at(10), NOW), None)),
    ],
)
def test_candle_coverage_1m(start: datetime, end: datetime, expected: SourceCoverage) -> None:
    assert candle_coverage("1m", start, end, NOW) == expected


def test_candle_coverage_scales_with_the_interval() -> None:
    # 5000 daily candles reach back ~13.7 years: all of 2012 onwards is there.
    oldest = datetime(2024, 7, 1, tzinfo=UTC) - timedelta(days=CANDLE_LIMIT)
    start = datetime(2010, 1, 1, tzinfo=UTC)

    coverage = candle_coverage("1d", start, NOW, NOW)

    assert coverage == SourceCoverage(TimeRange(oldest, NOW), TimeRange(start, oldest))


def test_candle_coverage_refuses_bad_input() -> None:
    with pytest.raises(InvalidRequest, match="no '1M' candles"):
        candle_coverage("1M", at(0), at(1), NOW)
    with pytest.raises(InvalidRequest, match="empty time range"):
        candle_coverage("1m", at(1), at(1), NOW)


def test_open_interest_has_no_history_at_source() -> None:
    assert HAS_OPEN_INTEREST_HISTORY is False
    assert open_interest_coverage(at(0), at(60)) == SourceCoverage(None, TimeRange(at(0), at(60)))


@pytest.mark.parametrize(
    ("coin", "quote", "market_type", "symbol"),
    [
        ("BTC", "USD", "perps", "BTC/USDC:USDC"),
        ("SOL", "USDC", "perps", "SOL/USDC:USDC"),
        ("kPEPE", "USD", "perps", "KPEPE/USDC:USDC"),
        ("PURR", "USD", "spot", "PURR/USDC"),
    ],
)
def test_ccxt_symbol(coin: str, quote: str, market_type: str, symbol: str) -> None:
    assert ccxt_symbol(coin, quote, market_type) == symbol


@pytest.mark.parametrize(
    ("quote", "market_type", "message"),
    [
        ("USDT", "perps", "Hyperliquid perps settle in USDC; quote 'USDT' is not USD"),
        ("USD", "futures", "unknown market type 'futures'; allowed: perps, spot"),
    ],
)
def test_ccxt_symbol_refuses(quote: str, market_type: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        ccxt_symbol("BTC", quote, market_type)
    assert str(caught.value) == message


# Binance's documented kline row (GET /api/v3/klines).
KLINE = [
    1499040000000,
    "0.01634790",
    "0.80000000",
    "0.01575800",
    "0.01577100",
    "148976.11427815",
    1499644799999,
    "2434.19055334",
    308,
    "1756.87402397",
    "28.46694368",
    "0",
]


def test_parse_klines_keeps_digits_and_trade_count() -> None:
    second = [1499040060000, "0.01577100", "0.01600000", "0.01570000", "0.01590000",
              "12.00000000", 1499040119999, "0.19", 0, "6.0", "0.09", "0"]  # fmt: skip

    candles = parse_klines([KLINE, second], "ETHBTC", "1m")

    assert candles == [
        Candle(
            time=datetime(2017, 7, 3, tzinfo=UTC),
            open=Decimal("0.01634790"),
            high=Decimal("0.80000000"),
            low=Decimal("0.01575800"),
            close=Decimal("0.01577100"),
            volume=Decimal("148976.11427815"),
            trade_count=308,
        ),
        Candle(
            time=datetime(2017, 7, 3, 0, 1, tzinfo=UTC),
            open=Decimal("0.01577100"),
            high=Decimal("0.01600000"),
            low=Decimal("0.01570000"),
            close=Decimal("0.01590000"),
            volume=Decimal("12.00000000"),
            trade_count=0,
        ),
    ]
    assert str(candles[0].high) == "0.80000000"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"code": -1121}, "Binance klines BTCUSDT 1m: expected a list, got {'code': -1121}"),
        ([KLINE[:11]], "Binance klines BTCUSDT 1m: expected a 12-field row"),
        ([[*KLINE[:2], "x", *KLINE[3:]]], "field 'high' is not a number: 'x'"),
        (
            [[*KLINE[:4], 0.015771, *KLINE[5:]]],
            "field 'close' must be a decimal string, got 0.015771",
        ),
        ([[*KLINE[:8], "308", *KLINE[9:]]], "field 'numberOfTrades' must be an integer, got '308'"),
        ([[*KLINE[:2], "0.01", *KLINE[3:]]], "high 0.01 is below low 0.01575800"),
        ([[*KLINE[:5], "-1", *KLINE[6:]]], "negative volume -1"),
    ],
)
def test_parse_klines_refuses(payload: object, message: str) -> None:
    with pytest.raises(ExchangeProtocolError) as caught:
        parse_klines(payload, "BTCUSDT", "1m")
    assert message in str(caught.value)


def test_binance_symbol() -> None:
    assert binance_symbol("BTC", "USDT") == "BTCUSDT"
    assert binance_symbol("sol", "usdt") == "SOLUSDT"


def test_replace_hosts_keeps_paths() -> None:
    urls = {
        "public": "https://api.binance.com/api/v3",
        "fapiPublic": "https://fapi.binance.com/fapi/v1",
        "dapiPublic": "https://dapi.binance.com/dapi/v1",
        "sapi": "https://api.binance.com/sapi/v1",
    }

    replaced = replace_hosts(urls, "http://127.0.0.1:9000/", "http://127.0.0.1:9001")

    assert replaced == {
        "public": "http://127.0.0.1:9000/api/v3",
        "fapiPublic": "http://127.0.0.1:9001/fapi/v1",
        "dapiPublic": "http://127.0.0.1:9000/dapi/v1",
        "sapi": "http://127.0.0.1:9000/sapi/v1",
    }
