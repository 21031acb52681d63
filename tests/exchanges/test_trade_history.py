"""Trade history through the real ccxt clients against the simulator: Binance aggTrades
(spot and USD-M) and OKX spot history-trades, each against the same exchange's 1m candles;
what each exchange's declaration says it serves; the parsers on recorded payloads."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ccxt
import pytest

from kirby_core.datasets import CANDLES
from kirby_core.errors import ExchangeProtocolError, InvalidRequest
from kirby_core.exchanges import BinanceHistory
from kirby_core.exchanges.base import aggregate_id, trade_id_span
from kirby_core.exchanges.binance import parse_agg_trades
from kirby_core.exchanges.feeds import Trade
from kirby_core.exchanges.okx import OkxHistory, parse_trade
from kirby_core.exchanges.registry import EXCHANGES, TRADES
from kirby_core.settings import Settings
from kirby_core.timeutil import floor_minute
from kirby_core.trade_history import MinuteBar, compare_minutes, id_gaps, rebuild_minutes, trades_in
from tests.exchanges.conftest import FAST_RETRIES, SIM_START

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

START = SIM_START.replace(second=0) - timedelta(hours=2)
END = START + timedelta(minutes=20)


def by_minute(trades: list[Trade], sequential: bool) -> dict[datetime, tuple[int, Decimal]]:
    minutes: dict[datetime, tuple[int, Decimal]] = {}
    for t in trades:
        count, volume = minutes.get(floor_minute(t.time), (0, Decimal(0)))
        minutes[floor_minute(t.time)] = (count + trades_in(t.trade_id, sequential), volume + t.size)
    return minutes


@pytest.mark.parametrize("market_type", ["spot", "perps"])
async def test_binance_aggregate_trades_add_up_to_its_klines(
    binance: BinanceHistory, market_type: str
) -> None:
    trades = await binance.fetch_trades("BTC", "USDT", market_type, START, END)
    candles = await binance.fetch_candles("BTC", "USDT", market_type, "1m", START, END)
    assert trades and all(START <= t.time < END for t in trades)
    assert [t.time for t in trades] == sorted(t.time for t in trades)
    assert by_minute(trades, sequential=True) == {
        c.time: (c.trade_count, c.volume) for c in candles if c.trade_count
    }
    gaps = id_gaps(t.trade_id for t in trades)
    assert (gaps.missing, gaps.repeated) == (0, 0)
    assert gaps.trades == sum(c.trade_count or 0 for c in candles)
    assert any("-" in t.trade_id for t in trades)  # several fills merged: first-last


async def test_binance_trades_page_by_aggregate_id_past_a_full_page(settings: Settings) -> None:
    """Two hours of BTC hold several 1000-aggregate pages: fromId paging joins them."""
    async with BinanceHistory(settings, retry=FAST_RETRIES) as binance:
        end = START + timedelta(hours=2)
        trades = await binance.fetch_trades("BTC", "USDT", "spot", START, end)
        candles = await binance.fetch_candles("BTC", "USDT", "spot", "1m", START, end)
    assert len(trades) > 1000
    gaps = id_gaps(t.trade_id for t in trades)
    assert (gaps.missing, gaps.repeated) == (0, 0)
    assert gaps.trades == sum(c.trade_count or 0 for c in candles)


async def test_okx_spot_trades_add_up_to_its_candles(settings: Settings) -> None:
    async with OkxHistory(settings, retry=FAST_RETRIES) as okx:
        end = START + timedelta(minutes=5)
        trades = await okx.fetch_trades("BTC", "USDT", "spot", START, end)
        candles = await okx.fetch_candles("BTC", "USDT", "spot", "1m", START, end)
        with pytest.raises(InvalidRequest, match="no OKX perps trade history"):
            await okx.fetch_trades("BTC", "USDT", "perps", START, end)
    assert len(trades) > 100  # more than one page of 100
    assert len({t.trade_id for t in trades}) == len(trades)
    assert [t.time for t in trades] == sorted(t.time for t in trades)
    volumes = {m: v for m, (_, v) in by_minute(trades, sequential=False).items()}
    assert volumes == {c.time: c.volume for c in candles if c.volume}


async def test_binance_refuses_an_aggregate_window_of_an_hour(binance: BinanceHistory) -> None:
    exchange = binance._exchange
    with pytest.raises(ccxt.BaseError, match="More than 1 hours"):
        await exchange.publicGetAggTrades(
            {"symbol": "BTCUSDT", "startTime": 0, "endTime": 3_600_000}
        )


def test_each_exchange_declares_what_trade_history_it_serves() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    served = {
        (name, market_type): d.source_window(TRADES, "1m", now, market_type).oldest
        for name, d in EXCHANGES.items()
        for market_type in d.market_types
    }
    assert served == {
        ("hyperliquid", "perps"): now,
        ("binance", "spot"): None,
        ("binance", "perps"): None,
        ("bybit", "perps"): now,
        ("bybit", "spot"): now,
        ("okx", "perps"): now,
        ("okx", "spot"): now - timedelta(days=90),
        ("coinbase", "spot"): now,
    }
    assert "no public trade-history endpoint" in EXCHANGES["hyperliquid"].trade_history.note
    assert "recent trades" in EXCHANGES["bybit"].trade_history.note
    assert "recent trades" in EXCHANGES["coinbase"].trade_history.note
    sequential = {n: d.trade_history.sequential_ids for n, d in EXCHANGES.items()}
    assert sequential == {
        "hyperliquid": (),
        "binance": ("spot", "perps"),
        "bybit": (),
        "okx": (),
        "coinbase": (),
    }


def test_binance_aggregates_parse_with_every_field() -> None:
    payload = [
        {"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27781,
         "T": 1498793709153, "m": True, "M": True},
        {"a": 26130, "p": "0.01633200", "q": "1.00000000", "f": 27782, "l": 27785,
         "T": 1498793709200, "m": False, "M": True},
    ]  # fmt: skip
    moment = datetime(2017, 6, 30, 3, 35, 9, 153000, tzinfo=UTC)
    assert parse_agg_trades(payload, "LTCBTC") == [
        (26129, Trade(moment, "27781", Decimal("0.01633102"), Decimal("4.70443515"), "sell")),
        (
            26130,
            Trade(
                moment + timedelta(milliseconds=47),
                "27782-27785",
                Decimal("0.01633200"),
                Decimal("1.00000000"),
                "buy",
            ),
        ),
    ]
    with pytest.raises(ExchangeProtocolError, match="last trade id 1 before first 2"):
        parse_agg_trades([{**payload[0], "f": 2, "l": 1}], "LTCBTC")
    with pytest.raises(ExchangeProtocolError, match="'m' must be a boolean"):
        parse_agg_trades([{**payload[0], "m": "true"}], "LTCBTC")


def test_okx_history_trades_parse_with_every_field() -> None:
    row = {"instId": "BTC-USDT", "side": "sell", "sz": "0.00001", "px": "29963.2",
           "tradeId": "242720720", "source": "0", "ts": "1654161646974"}  # fmt: skip
    assert parse_trade(row, "OKX history-trades") == Trade(
        datetime(2022, 6, 2, 9, 20, 46, 974000, tzinfo=UTC),
        "242720720",
        Decimal("29963.2"),
        Decimal("0.00001"),
        "sell",
    )
    with pytest.raises(ExchangeProtocolError, match="side must be buy or sell"):
        parse_trade({**row, "side": "B"}, "OKX history-trades")


@pytest.mark.parametrize(
    ("first", "last", "stored", "span"),
    [(5, 5, "5", (5, 5)), (5, 9, "5-9", (5, 9))],
)
def test_aggregate_ids_round_trip(first: int, last: int, stored: str, span: tuple) -> None:
    assert aggregate_id(first, last) == stored
    assert trade_id_span(stored) == span


@pytest.mark.parametrize("text", ["abc", "5-", "-5", "5-x", "d3c5a4e0-1f"])
def test_ids_of_another_form_have_no_span(text: str) -> None:
    assert trade_id_span(text) is None


def test_id_gaps_names_the_missing_runs_and_repeats() -> None:
    gaps = id_gaps(["10", "11-13", "16", "17-18", "18", "x"])
    assert (gaps.first_id, gaps.last_id, gaps.trades) == (10, 18, 8)
    assert (gaps.missing, gaps.repeated, gaps.gaps) == (2, 1, ((14, 15),))


def test_a_rebuilt_minute_has_the_candle_tables_columns() -> None:
    assert tuple(f.name for f in dataclasses.fields(MinuteBar)) == CANDLES.column_names


def bar(o: str, h: str, lo: str, c: str, v: str, n: int | None) -> MinuteBar:
    return MinuteBar(Decimal(o), Decimal(h), Decimal(lo), Decimal(c), Decimal(v), n)


@pytest.mark.parametrize(
    ("candle", "differs"),
    [
        (bar("10", "12", "9", "11", "3.0004", 5), None),
        (bar("10.00", "12.0", "9", "11", "3.000", 5), None),  # volume rounded by the exchange
        (bar("10", "12", "9", "11", "3.001", 5), "volume 3.0004 vs 3.001"),
        (bar("10", "12", "9", "11", "3.000", None), None),  # no trade count published
        (bar("10", "12", "9", "11", "3.000", 6), "trade count 5 vs 6"),
        (bar("10", "12.5", "9", "11", "3.000", 5), "high 12 vs 12.5"),
        (bar("9.5", "12", "9", "11", "3.000", 5), "open 10 vs 9.5"),
    ],
)
def test_minutes_rebuilt_from_trades_against_the_exchanges(
    candle: MinuteBar, differs: str | None
) -> None:
    minute = datetime(2026, 12, 6, 9, tzinfo=UTC)
    rows = [
        (minute + timedelta(seconds=1), "100", Decimal("10"), Decimal("1.000")),
        (minute + timedelta(seconds=2), "101-102", Decimal("12"), Decimal("1.500")),
        (minute + timedelta(seconds=3), "103", Decimal("9"), Decimal("0.250")),
        (minute + timedelta(seconds=59), "104", Decimal("11"), Decimal("0.2504")),
    ]
    rebuilt = rebuild_minutes(rows, sequential=True)
    compared = compare_minutes(rebuilt, {minute: candle})
    assert compared.minutes_compared == 1
    assert compared.disagreeing == ([] if differs is None else [(minute, differs)])
