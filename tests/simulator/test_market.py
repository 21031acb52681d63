"""The simulated market itself: determinism, random access, OHLC invariants, aggregation."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from kirby_core.timeutil import datetime_to_ms
from kirby_sim import Market
from kirby_sim.candles import Bar, merge
from kirby_sim.intervals import floor_open, next_open, shift_open
from kirby_sim.universe import (
    BINANCE_SPOT_VENUE,
    BINANCE_USDM_VENUE,
    HYPERLIQUID_VENUE,
    OKX_SWAP_VENUE,
    SYMBOL_FORMATS,
    synthetic_listings,
)
from kirby_sim.wire import fixed_decimal, hl_decimal

NOW = datetime_to_ms(datetime(2025, 1, 6, 12, 0, 30, tzinfo=UTC))
MINUTE = NOW // 60_000


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(7)


def test_same_seed_same_data_other_seed_other_data(market: Market) -> None:
    again, other = Market(7), Market(8)
    for venue, symbol in [
        (HYPERLIQUID_VENUE, "BTC"),
        (BINANCE_SPOT_VENUE, "ETHUSDT"),
        (BINANCE_USDM_VENUE, "SOLUSDT"),
    ]:
        bars = market.book(venue, symbol).bars("5m", NOW - 86_400_000, NOW, NOW)
        assert again.book(venue, symbol).bars("5m", NOW - 86_400_000, NOW, NOW) == bars
        assert other.book(venue, symbol).bars("5m", NOW - 86_400_000, NOW, NOW) != bars
    rows = market.derivatives("ETH").funding_rows(NOW - 86_400_000, NOW)
    assert again.derivatives("ETH").funding_rows(NOW - 86_400_000, NOW) == rows


def test_any_range_is_computed_on_its_own(market: Market) -> None:
    series = market.book(HYPERLIQUID_VENUE, "SOL").series
    wide = series.frame(MINUTE - 3000, MINUTE)
    narrow = series.frame(MINUTE - 1234, MINUTE - 1000)
    for column in ("open", "high", "low", "close", "volume", "trades", "traded"):
        assert np.array_equal(getattr(narrow, column), getattr(wide, column)[1766:2000]), column
    far = series.frame(MINUTE - 2_000_000, MINUTE - 1_999_990)
    assert len(far) == 10
    assert (far.close > 0).all()


@pytest.mark.parametrize(
    ("venue", "symbol"),
    [
        (HYPERLIQUID_VENUE, "BTC"),
        (HYPERLIQUID_VENUE, "kPEPE"),
        (HYPERLIQUID_VENUE, "CFX"),
        (BINANCE_SPOT_VENUE, "DOGEUSDT"),
        (BINANCE_USDM_VENUE, "BTCUSDT"),
    ],
)
def test_ohlc_invariants_hold_for_every_minute(market: Market, venue: str, symbol: str) -> None:
    frame = market.book(venue, symbol).series.frame(MINUTE - 20_000, MINUTE)
    assert (frame.low <= np.minimum(frame.open, frame.close)).all()
    assert (frame.high >= np.maximum(frame.open, frame.close)).all()
    assert (frame.low > 0).all()
    assert (frame.volume >= 0).all() and (frame.trades >= 0).all()
    assert (frame.open[1:] == frame.close[:-1]).all(), "open is the previous close"
    assert (frame.trades[frame.traded] >= frame.events[frame.traded]).all()
    quiet = ~frame.traded
    assert (frame.volume[quiet] == 0).all() and (frame.trades[quiet] == 0).all()
    assert (frame.high[quiet] == frame.open[quiet]).all()
    assert (frame.low[quiet] == frame.close[quiet]).all()


def test_small_coins_have_more_quiet_minutes_and_quietness_is_configurable() -> None:
    market = Market(7, quiet_probability={"BTC": 0.5})
    default = Market(7)
    quiet_share = {
        coin: 1
        - default.book(HYPERLIQUID_VENUE, coin).series.frame(MINUTE - 5000, MINUTE).traded.mean()
        for coin in ("BTC", "CFX")
    }
    assert quiet_share["BTC"] < 0.01 < 0.08 < quiet_share["CFX"]
    tuned = market.book(HYPERLIQUID_VENUE, "BTC").series.frame(MINUTE - 5000, MINUTE).traded.mean()
    assert 0.4 < tuned < 0.6


@pytest.mark.parametrize(
    ("fine", "coarse"), [("1m", "15m"), ("1m", "4h"), ("1h", "1d"), ("1d", "1w")]
)
def test_intervals_aggregate_the_same_minutes(market: Market, fine: str, coarse: str) -> None:
    book = market.book(HYPERLIQUID_VENUE, "ETH")
    first = shift_open(coarse, floor_open(coarse, NOW), -3)
    coarse_bars = book.bars(coarse, first, NOW, NOW)
    fine_bars = book.bars(fine, first, NOW, NOW)
    assert len(coarse_bars) == 4
    for bar in coarse_bars:
        end = next_open(coarse, bar.open_ms)
        merged: Bar | None = None
        for part in fine_bars:
            if bar.open_ms <= part.open_ms < end:
                merged = merge(merged, part)
        assert merged is not None
        assert merged._replace(open_ms=bar.open_ms) == bar


def test_months_and_weeks_open_on_calendar_boundaries(market: Market) -> None:
    book = market.book(BINANCE_SPOT_VENUE, "BTCUSDT")
    months = book.bars("1M", datetime_to_ms(datetime(2024, 10, 1, tzinfo=UTC)), NOW, NOW)
    assert [datetime.fromtimestamp(b.open_ms / 1000, UTC).date().isoformat() for b in months] == [
        "2024-10-01",
        "2024-11-01",
        "2024-12-01",
        "2025-01-01",
    ]
    weeks = book.bars("1w", NOW - 30 * 86_400_000, NOW, NOW)
    assert {datetime.fromtimestamp(b.open_ms / 1000, UTC).weekday() for b in weeks} == {0}


def test_no_candles_before_listing(market: Market) -> None:
    book = market.book(BINANCE_USDM_VENUE, "SOLUSDT")
    listed = book.instrument.listed_ms
    bars = book.bars("1d", listed - 10 * 86_400_000, listed + 2 * 86_400_000, NOW)
    assert [bar.open_ms for bar in bars] == [listed, listed + 86_400_000, listed + 2 * 86_400_000]


def test_replayed_trade_events_end_in_the_minute_candle(market: Market) -> None:
    book = market.book(HYPERLIQUID_VENUE, "BTC")
    for minute in range(MINUTE - 50, MINUTE):
        events = book.series.events_of(minute)
        closed = book.minute_bars(minute, minute + 1)[0]
        replayed = book.forming_minute(minute * 60_000 + 59_999)
        assert replayed == closed
        gaps = np.diff(events.offsets_ms)
        assert (gaps >= 3000).all() and (gaps <= 12_000).all(), "BTC trades 3-12 s apart"
        partial = [book.forming_minute(minute * 60_000 + offset) for offset in events.offsets_ms]
        assert [bar.volume for bar in partial] == events.cum_volume
        assert all(a.high <= b.high and a.low >= b.low for a, b in itertools.pairwise(partial))


def test_hyperliquid_prices_have_five_significant_figures_and_bounded_decimals(
    market: Market,
) -> None:
    for inst in market.perps:
        frame = market.book(HYPERLIQUID_VENUE, inst.symbol).series.frame(MINUTE - 500, MINUTE)
        for units in np.concatenate([frame.open, frame.high, frame.low, frame.close]).tolist():
            text = hl_decimal(units, inst.price_decimals)
            digits = text.replace(".", "").lstrip("0").rstrip("0")
            whole = text.split(".")[0]
            assert len(digits) <= max(5, len(whole)), (inst.symbol, text)
            assert len(text.split(".")[1]) <= 6 - inst.size_decimals, (inst.symbol, text)


@pytest.mark.parametrize(
    ("units", "decimals", "text"),
    [
        (671230, 1, "67123.0"),
        (1604, 6, "0.001604"),
        (520665683, 0, "520665683.0"),
        (14523, 2, "145.23"),
        (-61334, 8, "-0.00061334"),
        (0, 8, "0.0"),
    ],
)
def test_hyperliquid_number_format(units: int, decimals: int, text: str) -> None:
    assert hl_decimal(units, decimals) == text
    assert Decimal(text) == Decimal(units).scaleb(-decimals)


@pytest.mark.parametrize(
    ("units", "decimals", "shown", "text"),
    [
        (6712345, 2, 8, "67123.45000000"),
        (671234, 1, 2, "67123.40"),
        (5, 0, 0, "5"),
        (12, 5, 8, "0.00012000"),
    ],
)
def test_binance_number_format(units: int, decimals: int, shown: int, text: str) -> None:
    assert fixed_decimal(units, decimals, shown) == text


def test_synthetic_coins_are_listed_on_every_venue_only_when_asked() -> None:
    plain = Market(7)
    loaded, again = Market(7, venue_extra_coins=2), Market(7, venue_extra_coins=2)
    for venue, symbol in SYMBOL_FORMATS.items():
        assert not any(i.coin.startswith("SYN") for i in plain.instruments[venue])
        listed = [i.symbol for i in loaded.instruments[venue]]
        names = [symbol.format(coin=coin) for coin in ("SYN001", "SYN002")]
        assert listed[-2:] == names and listed[:-2] == [i.symbol for i in plain.instruments[venue]]
        bars = loaded.book(venue, names[1]).bars("1m", NOW - 3_600_000, NOW, NOW)
        assert bars == again.book(venue, names[1]).bars("1m", NOW - 3_600_000, NOW, NOW)
        assert bars and all(bar.low <= bar.close <= bar.high for bar in bars)
    # the same profile as Hyperliquid's synthetic perps; perps have funding and open interest
    (perp,) = [i for i in Market(7, extra_coins=1).perps if i.coin == "SYN001"]
    (swap,) = [i for i in loaded.instruments[OKX_SWAP_VENUE] if i.coin == "SYN001"]
    profile = (perp.base_price, perp.daily_vol, perp.tier)
    assert (swap.base_price, swap.daily_vol, swap.tier) == profile
    assert loaded.perp(OKX_SWAP_VENUE, "SYN001-USDT-SWAP") is not None
    with pytest.raises(ValueError, match="no synthetic listings on 'hyperliquid'"):
        synthetic_listings(HYPERLIQUID_VENUE, 1)
